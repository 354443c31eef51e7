"""Reading and checking images and masks. Every problem becomes an ObjaudioError that says what to do.

Both are read the way an image viewer shows them: the EXIF orientation is applied (a phone photo
and a mask drawn on it as displayed agree), 16-bit and 32-bit greyscale are scaled from their
full range (65535 is white), palette, CMYK, YCbCr and HSV images are converted to RGB, and an
image with transparency is shown over white. A mask whose alpha channel varies (a cut-out, the
usual export of image editors) is its alpha; otherwise a mask is its brightness: each pixel's
brightest channel / the mode's white (a soft mask stays soft). Modes that cannot be shown
faithfully (LAB, float images outside [0, 1]) are refused.

One reader for every way an image arrives: a path (the command line, Python), a file's bytes (an
upload to the service), a PIL image or an array; the same limits and the same messages.
"""
from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from .errors import ObjaudioError, check

MIN_SIDE = 32          # pixels; smaller images carry too little for a 7x7 patch grid
MAX_SIDE = 8192        # pixels; larger images are refused rather than resized silently
MAX_PIXELS = 40_000_000
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")       # integer greyscale, white = 65535
_REFUSED = ("LAB",)
_FILE_BYTES = (bytes, bytearray, memoryview)


class TooLarge(ObjaudioError):
    """An image over a pixel or byte limit (the service answers it with 413)."""


def _as_array(x) -> np.ndarray | None:
    """An array, or a torch tensor's values as one; None for anything else. torch is not imported for
    this (a tensor exists only once it is): the command line checks its files before loading torch."""
    if isinstance(x, np.ndarray):
        return x
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return None


def check_file(path: str | os.PathLike, what: str, wanted: str) -> Path:
    """`path` as a Path if it is a regular file (or a link to one); else an ObjaudioError that says
    which of folder, missing, or neither (a named pipe, a device: reading one could block forever) it is."""
    path = Path(path)
    check(not path.is_dir(), f"{what} {path} is a folder: give {wanted}")
    check(path.exists(), f"{what} file not found: {path}")
    check(path.is_file(), f"{what} {path} is not a regular file (a named pipe, a device or a socket): give {wanted}")
    return path


def _open(source, what: str, max_pixels: int = MAX_PIXELS):
    """Open an image file (a path, or the file's bytes) with its EXIF orientation applied and its
    pixel count checked before decoding. Returns (the PIL image, the name messages use)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, _FILE_BYTES):
        name, fp = what, io.BytesIO(source)
    else:
        path = check_file(source, what, "an image file")
        name, fp = f"{what} {path}", path
    limit = f"at most {max_pixels} pixels ({max_pixels / 1e6:.1f} megapixels) are accepted; resize it first"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # we refuse by our own limit
            im = Image.open(fp)
            w, h = im.size
            if w * h > max_pixels:
                raise TooLarge(f"{name} is {w}x{h} = {w * h} pixels: {limit}")
            im.load()
            return ImageOps.exif_transpose(im), name
    except Image.DecompressionBombError:
        raise TooLarge(f"{name} is too large: {limit}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ObjaudioError):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ObjaudioError(f"cannot read {name}: the file is not a readable image ({reason})") from None


def _has_alpha(im) -> bool:
    return "A" in im.getbands() or "a" in im.getbands() or "transparency" in im.info


def _grey_unit(im, where: str) -> np.ndarray | None:
    """(H, W) float32 in [0, 1] for the wide greyscale modes (16/32-bit integer, float); None otherwise."""
    if im.mode in _WIDE_GREY:
        arr = np.asarray(im).astype(np.float64)
        check(arr.min() >= 0 and arr.max() <= 65535,
              f"{where}: 32-bit integer pixels must be in [0, 65535] (16-bit), got [{arr.min():g}, {arr.max():g}]")
        return (arr / 65535.0).astype(np.float32)
    if im.mode == "F":
        arr = np.asarray(im).astype(np.float32)
        check(bool(np.isfinite(arr).all()), f"{where} contains NaN or inf values")
        check(arr.min() >= 0.0 and arr.max() <= 1.0, f"{where}: a float image must hold values in [0, 1]")
        return arr
    return None


def _check_mode(im, where: str) -> None:
    check(im.mode not in _REFUSED, f"{where} is in {im.mode} mode, which is not read here: save it as RGB")


def pil_to_rgb(im, where: str = "image") -> np.ndarray:
    """A PIL image of any mode -> (H, W, 3) uint8 RGB as a viewer shows it (transparency over white)."""
    from PIL import Image

    _check_mode(im, where)
    grey = _grey_unit(im, where)
    if grey is not None:
        return np.repeat((grey * 255.0 + 0.5).astype(np.uint8)[..., None], 3, axis=2)
    try:
        if _has_alpha(im):
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.array(Image.alpha_composite(white, rgba).convert("RGB"))
        return np.array(im.convert("RGB"))
    except ValueError as exc:
        raise ObjaudioError(f"{where} is in {im.mode} mode, which cannot be converted to RGB ({exc}): "
                            "save it as RGB") from None


def pil_to_mask(im, where: str = "mask") -> np.ndarray:
    """A PIL image of any mode -> (H, W) float32 in [0, 1]: the alpha channel where it varies,
    else each pixel's brightest channel (see the module docstring)."""
    _check_mode(im, where)
    grey = _grey_unit(im, where)
    if grey is not None:
        return grey
    try:
        if _has_alpha(im):
            alpha = np.asarray(im.convert("RGBA"))[..., 3]
            if alpha.min() != alpha.max():
                return alpha.astype(np.float32) / 255.0
        if im.mode == "1":
            return np.asarray(im, dtype=np.float32)
        if im.mode == "L":
            return np.asarray(im).astype(np.float32) / 255.0
        return np.asarray(im.convert("RGB")).max(axis=2).astype(np.float32) / 255.0
    except ValueError as exc:
        raise ObjaudioError(f"{where} is in {im.mode} mode, which cannot be read as a mask ({exc}): "
                            "save it as a greyscale PNG") from None


def load_image(image, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A path, an image file's bytes, a PIL image, an (H, W, 3) array or a tensor -> (H, W, 3) uint8 RGB,
    with its size checked (a file's pixel count, at most `max_pixels`, before it is decoded)."""
    from PIL import Image, ImageOps

    if isinstance(image, (str, os.PathLike, *_FILE_BYTES)):
        im, name = _open(image, "image", max_pixels)
        with im:
            arr = pil_to_rgb(im, name)
    elif isinstance(image, Image.Image):
        arr = pil_to_rgb(ImageOps.exif_transpose(image))
    elif (arr := _as_array(image)) is not None:
        check(arr.ndim == 3 and arr.shape[2] in (3, 4),
              f"image array must be (H, W, 3) RGB, got shape {arr.shape}")
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            check(np.issubdtype(arr.dtype, np.floating), f"image array must be uint8 or float, got {arr.dtype}")
            check(bool(np.isfinite(arr).all()), "image contains NaN or inf values")
            check(arr.min() >= 0.0 and arr.max() <= 1.0, "a float image must hold values in [0, 1]")
            arr = (arr * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ObjaudioError(f"cannot use {type(image).__name__} as an image: pass a path, PIL image or array")
    h, w = arr.shape[:2]
    check(min(h, w) >= MIN_SIDE, f"image is {w}x{h}: each side must be at least {MIN_SIDE} pixels")
    check(max(h, w) <= MAX_SIDE, f"image is {w}x{h}: each side must be at most {MAX_SIDE} pixels; resize it first")
    return np.ascontiguousarray(arr)


def load_mask(mask, size_hw: tuple[int, int], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A path, an image file's bytes, a PIL image, an array or a tensor -> (H, W) float32 in [0, 1]
    matching the image size.

    Files and PIL images are read as the module docstring says; bool arrays count True as 1,
    integer arrays value / 255 (or 0/1 as is), float arrays must be in [0, 1]. The mask must
    have the image's size: it is never resized silently.
    """
    from PIL import Image, ImageOps

    if isinstance(mask, (str, os.PathLike, *_FILE_BYTES)):
        im, where = _open(mask, "mask", max_pixels)
        with im:
            arr = pil_to_mask(im, where)
    elif isinstance(mask, Image.Image):
        arr, where = pil_to_mask(ImageOps.exif_transpose(mask)), "mask"
    elif (arr := _as_array(mask)) is not None:
        where = "mask"
    else:
        raise ObjaudioError(f"cannot use {type(mask).__name__} as a mask: pass a path, PIL image or array")
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    check(arr.ndim == 2, f"{where} must be a 2-D image, got shape {arr.shape}")
    h, w = size_hw
    check(arr.shape == (h, w), f"{where} is {arr.shape[1]}x{arr.shape[0]} but the image is {w}x{h}: "
                               "make the mask the same size as the image")
    if arr.dtype == bool:
        out = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.float32) / (255.0 if arr.max() > 1 else 1.0)
    else:
        out = arr.astype(np.float32)
        check(bool(np.isfinite(out).all()), f"{where} contains NaN or inf values")
        check(out.min() >= 0.0 and out.max() <= 1.0, f"{where}: a float mask must hold values in [0, 1]")
    out = np.clip(out, 0.0, 1.0)
    check(out.max() > 0, f"{where} is empty (all zero): it selects nothing; draw the object's region")
    return out
