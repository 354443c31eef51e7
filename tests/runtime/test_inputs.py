"""Images and masks of every PIL mode are read the way a viewer shows them, or refused in one line."""
import io

import numpy as np
import pytest
from PIL import Image

from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.images import MAX_PIXELS, load_image, load_mask


def _save(tmp_path, name, im, **kw):
    path = tmp_path / name
    im.save(path, **kw)
    return path


def test_16_bit_greyscale_png_is_scaled_not_white(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (48, 1))       # (48, 64) 16-bit ramp
    path = _save(tmp_path, "g16.png", Image.fromarray(ramp))
    assert Image.open(path).mode.startswith("I")
    rgb = load_image(path)
    expected = (ramp / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    assert np.array_equal(rgb[..., 0], expected) and np.array_equal(rgb[..., 2], expected)
    mask = load_mask(path, (48, 64))
    np.testing.assert_allclose(mask, ramp / 65535.0, atol=1e-6)


def test_float_and_32_bit_images(tmp_path):
    f = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (40, 1))
    path = _save(tmp_path, "f.tif", Image.fromarray(f))
    np.testing.assert_allclose(load_mask(path, (40, 40)), f, atol=1e-6)
    path = _save(tmp_path, "bad.tif", Image.fromarray(f * 3))
    with pytest.raises(ObjaudioError, match=r"\[0, 1\]"):
        load_image(path)


def test_rgba_cut_out_mask_uses_alpha(tmp_path):
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., :3] = 200                                    # the colour is everywhere
    rgba[5:20, 10:30, 3] = 255                             # the object is in alpha
    mask = load_mask(_save(tmp_path, "cut.png", Image.fromarray(rgba, "RGBA")), (40, 50))
    assert mask[5:20, 10:30].min() == 1.0 and mask.sum() == 15 * 20
    opaque = rgba.copy()
    opaque[..., 3] = 255
    opaque[..., :3] = 0
    opaque[0:4, 0:4, :3] = 255                             # constant alpha: the colour is the mask
    mask = load_mask(_save(tmp_path, "opaque.png", Image.fromarray(opaque, "RGBA")), (40, 50))
    assert mask.sum() == 16


def test_transparent_image_is_shown_over_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:20, :, :] = (255, 0, 0, 255)
    rgb = load_image(_save(tmp_path, "t.png", Image.fromarray(rgba, "RGBA")))
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[30, 0]) == (255, 255, 255)


def test_exif_orientation_applied_to_images_and_masks(tmp_path):
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:10, :20] = 255                                    # top-left block as stored
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6                                       # "rotate 90 CW to display"
    path = _save(tmp_path, "phone.jpg", im, exif=exif.tobytes(), quality=100)
    shown = load_image(path)
    assert shown.shape == (60, 40, 3)                      # displayed upright: 40 wide, 60 high
    mask_path = _save(tmp_path, "phone_mask.png", Image.fromarray(arr[..., 0]), exif=exif.tobytes())
    mask = load_mask(mask_path, (60, 40))
    assert mask[:20, 30:].mean() > 0.9 and mask[30:].max() == 0


@pytest.mark.parametrize("mode", ["P", "LA", "CMYK", "YCbCr", "1", "HSV", "PA", "RGBX"])
def test_other_modes_read_as_shown(tmp_path, mode):
    base = Image.fromarray(np.full((40, 40, 3), (10, 200, 30), np.uint8))
    im = base.convert(mode)
    rgb = load_image(im)
    assert rgb.shape == (40, 40, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - np.asarray(im.convert("RGB")).astype(int)).max() <= 2


def test_lab_is_refused_in_one_line():
    with pytest.raises(ObjaudioError, match="LAB mode"):
        load_image(Image.new("LAB", (40, 40)))


def test_a_folder_is_a_folder_not_missing(tmp_path):
    with pytest.raises(ObjaudioError, match="is a folder"):
        load_image(tmp_path)
    with pytest.raises(ObjaudioError, match="is a folder"):
        load_mask(tmp_path, (40, 40))


def test_decompression_bomb_is_one_line_without_warnings(tmp_path, recwarn):
    """PIL warns above 89 megapixels and raises above 179; both are refused by our 40-megapixel cap
    from the header alone, with no warning printed."""
    for side in (10000, 20000):
        buf = io.BytesIO()
        Image.new("1", (side, side)).save(buf, format="PNG")
        path = tmp_path / f"big{side}.png"
        path.write_bytes(buf.getvalue())
        with pytest.raises(ObjaudioError, match="megapixels") as exc:
            load_image(path)
        assert "\n" not in str(exc.value) and str(MAX_PIXELS // 1_000_000) in str(exc.value)
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


def test_a_file_reads_the_same_from_its_path_and_from_its_bytes(tmp_path):
    """The service reads an upload's bytes with the reader the command line uses on the path: a float32
    TIFF is grey, not black; NaN and LAB are refused with the same message."""
    f = np.tile(np.linspace(0, 1, 48, dtype=np.float32), (40, 1))
    good = _save(tmp_path, "f.tif", Image.fromarray(f))
    rgb = load_image(good)
    assert np.array_equal(load_image(good.read_bytes()), rgb) and rgb.max() == 255 and rgb[0, 24, 0] > 100
    np.testing.assert_array_equal(load_mask(good.read_bytes(), (40, 48)), load_mask(good, (40, 48)))
    f[3, 3] = np.nan
    nan = _save(tmp_path, "nan.tif", Image.fromarray(f))
    lab = _save(tmp_path, "lab.tif", Image.new("LAB", (40, 40)))
    for path, match in ((nan, "contains NaN"), (lab, "LAB mode")):
        with pytest.raises(ObjaudioError, match=match):
            load_image(path)
        with pytest.raises(ObjaudioError, match=match):
            load_image(path.read_bytes())
    with pytest.raises(ObjaudioError, match="at most 100 pixels"):
        load_image(good.read_bytes(), max_pixels=100)


def test_a_named_pipe_is_not_a_missing_file(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.png")
    for read in (load_image, lambda p: load_mask(p, (40, 40))):
        with pytest.raises(ObjaudioError, match="is not a regular file"):
            read(tmp_path / "pipe.png")
