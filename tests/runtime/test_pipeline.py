"""The pipeline end to end on the random-weight tiny preset."""
import numpy as np
import pytest
import torch

from objaudio_rt import Box, Mask, ModelConfig, ObjaudioError, Points, Text, Whole
from objaudio_rt.core.pipeline import Pipeline

OPTS = dict(steps=3, progress=False)


def test_presets_have_the_documented_sizes():
    with torch.device("meta"):
        unet = ModelConfig.from_name("audioldm-s").unet.build()
    assert round(sum(p.numel() for p in unet.parameters()) / 1e6, 1) == 185.0
    cfg = ModelConfig.from_name("audioldm-s")
    assert cfg.image.num_patches == 49 and cfg.grounding.num_patches == 49
    assert cfg.vae.downsample_factor == 4


def test_unknown_preset():
    with pytest.raises(ObjaudioError, match="unknown preset"):
        ModelConfig.from_name("audioldm-xl")


def test_latent_shape_follows_audioldm(tiny_pipe):
    assert tiny_pipe.latent_shape(10.24) == ((8, 256, 16), 163840)
    assert tiny_pipe.latent_shape(1.0) == ((8, 25, 16), 16000)
    assert tiny_pipe.latent_shape(1.01) == ((8, 26, 16), 16160)       # 101 frames -> 104


@pytest.mark.parametrize("duration", [0.5, 1.28, 2.0])
def test_waveform_length_and_finiteness(tiny_pipe, scene_image, square_mask, duration):
    scene = tiny_pipe.encode_image(scene_image)
    wave = tiny_pipe.generate(scene, Mask(square_mask), duration=duration, **OPTS)
    assert wave.shape == (int(duration * 16000),)
    assert torch.isfinite(wave).all()


def test_same_seed_same_waveform_and_other_seed_differs(tiny_pipe, scene_image, square_mask):
    scene = tiny_pipe.encode_image(scene_image)
    a = tiny_pipe.generate(scene, Mask(square_mask), seed=7, **OPTS)
    b = tiny_pipe.generate(tiny_pipe.encode_image(scene_image), Mask(square_mask), seed=7, **OPTS)
    c = tiny_pipe.generate(scene, Mask(square_mask), seed=8, **OPTS)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_batch_items_do_not_depend_on_the_batch(tiny_pipe, scene_image, square_mask, disc_mask):
    scene = tiny_pipe.encode_image(scene_image)
    batch = tiny_pipe.generate_many(scene, [Mask(square_mask), Mask(disc_mask)], seed=3, **OPTS)
    single = tiny_pipe.generate(scene, Mask(disc_mask), seed=3, **OPTS)
    torch.testing.assert_close(batch[1].wave, single, atol=1e-5, rtol=1e-4)


def test_different_objects_give_different_conditions(tiny_pipe, scene_image, square_mask, disc_mask):
    scene = tiny_pipe.encode_image(scene_image)
    wa, _ = tiny_pipe.select(scene, Mask(square_mask))
    wb, _ = tiny_pipe.select(scene, Mask(disc_mask))
    assert (tiny_pipe.condition(scene, wa) - tiny_pipe.condition(scene, wb)).abs().max() > 1e-4


def test_union_covers_both_masks(tiny_pipe, scene_image, square_mask, disc_mask):
    scene = tiny_pipe.encode_image(scene_image)
    _, pixel = tiny_pipe.select(scene, Mask(square_mask) | Mask(disc_mask))
    np.testing.assert_array_equal(pixel > 0, square_mask | disc_mask)


def test_whole_scene_is_uniform(tiny_pipe, scene_image):
    scene = tiny_pipe.encode_image(scene_image)
    for sel in (None, Whole()):
        w, _ = tiny_pipe.select(scene, sel)
        torch.testing.assert_close(w, torch.full_like(w, 1 / w.shape[-1]))


def test_text_selection_uses_the_learned_attention(tiny_pipe, scene_image):
    scene = tiny_pipe.encode_image(scene_image)
    w, pixel = tiny_pipe.select(scene, Text("a dog barking"))
    q = tiny_pipe.model.text_encoder.encode(["a dog barking"])
    expected = tiny_pipe.model.grounding.attention(q, scene.tokens)[0]
    assert pixel is None
    torch.testing.assert_close(w, expected)


def test_text_union_mask_is_a_valid_weighting(tiny_pipe, scene_image, square_mask):
    scene = tiny_pipe.encode_image(scene_image)
    w, pixel = tiny_pipe.select(scene, Mask(square_mask) | Text("a bird chirping"))
    assert pixel is not None and torch.all(w >= 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[0]))


@pytest.mark.parametrize("bad,match", [
    (dict(duration=0), "duration"), (dict(duration=-1.0), "duration"), (dict(duration=1e4), "duration"),
    (dict(duration=float("nan")), "duration"), (dict(steps=0), "steps"), (dict(steps=-5), "steps"),
    (dict(cfg=float("inf")), "cfg"), (dict(cfg=0.5), "cfg"), (dict(sampler="euler"), "sampler"),
    (dict(seed=-1), "seed"),
])
def test_bad_generation_options(tiny_pipe, scene_image, bad, match):
    scene = tiny_pipe.encode_image(scene_image)
    with pytest.raises(ObjaudioError, match=match):
        tiny_pipe.generate(scene, None, **{**OPTS, **bad})


def test_bad_masks(tiny_pipe, scene_image):
    scene = tiny_pipe.encode_image(scene_image)
    with pytest.raises(ObjaudioError, match="same size"):
        tiny_pipe.select(scene, Mask(np.ones((10, 10), bool)))
    with pytest.raises(ObjaudioError, match="empty"):
        tiny_pipe.select(scene, Mask(np.zeros((80, 96), bool)))
    nan = np.ones((80, 96), np.float32)
    nan[0, 0] = np.nan
    with pytest.raises(ObjaudioError, match="NaN"):
        tiny_pipe.select(scene, Mask(nan))


def test_points_and_boxes_need_sam(tiny_pipe, scene_image):
    scene = tiny_pipe.encode_image(scene_image)
    with pytest.raises(ObjaudioError, match="sam-checkpoint"):
        tiny_pipe.select(scene, Points(((20, 20),)))
    with pytest.raises(ObjaudioError, match="sam-checkpoint"):
        tiny_pipe.select(scene, Box((5, 5, 30, 30)))


@pytest.mark.parametrize("image,match", [
    (np.zeros((10, 10, 3), np.uint8), "at least"), (np.zeros((9000, 40, 3), np.uint8), "at most"),
    (np.full((40, 40, 3), np.nan, np.float32), "NaN"), (np.zeros((40, 40), np.uint8), "RGB"),
    ("/does/not/exist.png", "not found"),
])
def test_bad_images(tiny_pipe, image, match):
    with pytest.raises(ObjaudioError, match=match):
        tiny_pipe.encode_image(image)


def test_corrupt_image_file(tiny_pipe, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ObjaudioError, match="not a readable image"):
        tiny_pipe.encode_image(path)


def test_cuda_request_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ObjaudioError, match="CUDA is not available"):
        Pipeline.from_pretrained("random:tiny", device="cuda")


# ---- unions: composed (one condition per part) and the paper's single union mask ----------------

def test_union_modes(tiny_pipe, scene_image, square_mask, disc_mask):
    scene = tiny_pipe.encode_image(scene_image)
    both = Mask(square_mask) | Mask(disc_mask)
    paper = tiny_pipe.generate_many(scene, [Mask(square_mask | disc_mask)], seed=2, **OPTS)[0]
    as_mask = tiny_pipe.generate_many(scene, [both], seed=2, union="mask", **OPTS)[0]
    composed = tiny_pipe.generate_many(scene, [both], seed=2, union="compose", **OPTS)[0]
    assert torch.equal(as_mask.wave, paper.wave)                  # "mask": the pixel union, one condition
    assert (composed.mel - paper.mel).abs().max() > 1e-3 * paper.mel.abs().max()     # (random weights: tiny waves)
    np.testing.assert_array_equal(composed.mask > 0, square_mask | disc_mask)
    # a single part is the same in both modes
    one = [tiny_pipe.generate_many(scene, [Mask(disc_mask)], seed=2, union=u, **OPTS)[0].wave
           for u in ("compose", "mask", "mix")]
    assert torch.equal(one[0], one[1]) and torch.equal(one[0], one[2])
    with pytest.raises(ObjaudioError, match="union mode"):
        tiny_pipe.generate_many(scene, [both], union="sum", **OPTS)


def test_mixed_union_is_its_parts_alone_played_together(tiny_pipe, scene_image, square_mask, disc_mask):
    from objaudio_rt.core.pipeline import mix_parts

    scene = tiny_pipe.encode_image(scene_image)
    both = Mask(square_mask) | Mask(disc_mask)
    mixed = tiny_pipe.generate_many(scene, [Mask(disc_mask), both, None], seed=2, union="mix", **OPTS)
    alone = tiny_pipe.generate_many(scene, [Mask(square_mask), Mask(disc_mask), None], seed=2, **OPTS)
    # each item's noise comes from the seed alone, so a part in the mix is the part generated alone (up to
    # the rounding of another batch: 1e-4 of the waves' scale, as the composed-union batch test allows)
    def close(got, ref):
        torch.testing.assert_close(got, ref, atol=1e-4 * float(ref.abs().max()), rtol=1e-4)
    close(mixed[0].wave, alone[1].wave)
    close(mixed[2].wave, alone[2].wave)
    close(mixed[1].wave, alone[0].wave + alone[1].wave)
    close(mixed[1].mel, torch.logsumexp(torch.stack([alone[0].mel, alone[1].mel]), dim=0))
    np.testing.assert_array_equal(mixed[1].mask > 0, square_mask | disc_mask)
    composed = tiny_pipe.generate_many(scene, [both], seed=2, union="compose", **OPTS)[0]
    assert not torch.equal(mixed[1].wave, composed.wave)
    default = tiny_pipe.generate_many(scene, [both], seed=2, **OPTS)[0]
    assert torch.equal(default.wave, mixed[1].wave)                                 # "mix" is the default
    assert mix_parts([both, None, Mask(disc_mask)])[1] == [0, 0, 1, 2]
    with pytest.raises(ObjaudioError, match="mix_parts"):
        tiny_pipe.conditions(scene, [both], union="mix")


def test_composed_union_in_a_batch_matches_it_alone(tiny_pipe, scene_image, square_mask, disc_mask):
    """Items with fewer parts are padded with zero-weight copies: batch neighbours do not change them."""
    scene = tiny_pipe.encode_image(scene_image)
    both = Mask(square_mask) | Mask(disc_mask)
    batch = tiny_pipe.generate_many(scene, [Mask(disc_mask), both], seed=4, **OPTS)
    alone = [tiny_pipe.generate_many(scene, [s], seed=4, **OPTS)[0].wave for s in (Mask(disc_mask), both)]
    for got, ref in zip(batch, alone):
        torch.testing.assert_close(got.wave, ref, atol=1e-5, rtol=1e-4)
