"""The pipeline end to end on the random-weight tiny preset."""
import numpy as np
import pytest
import torch

from objaudio_rt import Box, Mask, ModelConfig, ObjaudioError, Points, Text, Whole
from objaudio_rt.denoise import Conditions, denoise
from objaudio_rt.pipeline import Pipeline

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
        Pipeline.from_pretrained("tiny", device="cuda")


# ---- unions: composed (one condition per part) and the paper's single union mask ----------------

def _backend_inputs(pipe, scene, *masks):
    conds = torch.cat([pipe.condition(scene, pipe.select(scene, Mask(m))[0]) for m in masks])   # (K, cond)
    shape, _ = pipe.latent_shape(1.28)
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(5))
    from objaudio_rt.samplers import SamplerPlan

    return conds, x, SamplerPlan.build("dpmpp", 4, pipe.config.schedule)


def test_composed_denoise_with_one_part_is_denoise_exactly(tiny_pipe, scene_image, square_mask):
    scene = tiny_pipe.encode_image(scene_image)
    conds, x, plan = _backend_inputs(tiny_pipe, scene, square_mask)
    ref = _single_part_loop(tiny_pipe.backend, x, conds, plan, 3.0)
    out = denoise(tiny_pipe.backend, x, Conditions.single(conds), plan, 3.0, progress=False)
    assert torch.equal(out, ref)


def _single_part_loop(backend, x, cond, plan, cfg):
    """The loop for one condition per item as written before the composed form: eps of [null, cond]."""
    from objaudio_rt.samplers import reference_step

    cond2 = torch.cat([backend.null_condition.expand_as(cond), cond])
    x0 = None
    for i in range(plan.steps):
        eps2 = backend.unet_eps(torch.cat([x, x]), plan.timesteps[i], cond2)
        x, x0 = reference_step(plan.coefs[i], x, eps2, cfg, x0)
    return x


def test_composed_denoise_averages_the_guidance_directions(tiny_pipe, scene_image, square_mask, disc_mask):
    """One DDIM step by hand: eps = eps_u + cfg * (w_a eps_a + w_b eps_b - eps_u)."""
    from objaudio_rt.samplers import SamplerPlan, reference_step

    scene = tiny_pipe.encode_image(scene_image)
    conds, x, _ = _backend_inputs(tiny_pipe, scene, square_mask, disc_mask)
    plan = SamplerPlan.build("ddim", 1, tiny_pipe.config.schedule)
    be, cfg, owner = tiny_pipe.backend, 2.5, torch.zeros(2, dtype=torch.int64)
    t = plan.timesteps[0]
    eps_u = be.unet_eps(x, t, be.null_condition[None])
    eps_a, eps_b = be.unet_eps(x, t, conds[:1]), be.unet_eps(x, t, conds[1:])
    expected, _ = reference_step(plan.coefs[0], x, torch.cat([eps_u, 0.25 * eps_a + 0.75 * eps_b]), cfg, None)
    out = denoise(be, x, Conditions.composed(conds, owner, torch.tensor([0.25, 0.75]), 1), plan, cfg, progress=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    other = denoise(be, x, Conditions.composed(conds, owner, torch.tensor([0.75, 0.25]), 1), plan, cfg,
                    progress=False)
    assert (other - out).abs().max() > 1e-4                       # the weights matter


@pytest.mark.parametrize("owner,weights,match", [
    ([0, 0], [0.5, 0.6], "sum to 1"), ([0, 0], [1.5, -0.5], "non-negative"),
    ([0, 1], [1.0, 1.0], "owner"), ([0, 0], [1.0], "owner and weights"),
])
def test_composed_denoise_rejects_bad_parts(tiny_pipe, scene_image, square_mask, disc_mask, owner, weights, match):
    scene = tiny_pipe.encode_image(scene_image)
    conds, x, plan = _backend_inputs(tiny_pipe, scene, square_mask, disc_mask)
    with pytest.raises(ObjaudioError, match=match):
        Conditions.composed(conds, torch.tensor(owner), torch.tensor(weights), 1)


def test_union_modes(tiny_pipe, scene_image, square_mask, disc_mask):
    scene = tiny_pipe.encode_image(scene_image)
    both = Mask(square_mask) | Mask(disc_mask)
    paper = tiny_pipe.generate_many(scene, [Mask(square_mask | disc_mask)], seed=2, **OPTS)[0]
    as_mask = tiny_pipe.generate_many(scene, [both], seed=2, union="mask", **OPTS)[0]
    composed = tiny_pipe.generate_many(scene, [both], seed=2, **OPTS)[0]          # the default
    assert torch.equal(as_mask.wave, paper.wave)                  # "mask": the pixel union, one condition
    assert (composed.mel - paper.mel).abs().max() > 1e-3 * paper.mel.abs().max()     # (random weights: tiny waves)
    np.testing.assert_array_equal(composed.mask > 0, square_mask | disc_mask)
    # a single part is the same in both modes
    one = [tiny_pipe.generate_many(scene, [Mask(disc_mask)], seed=2, union=u, **OPTS)[0].wave
           for u in ("compose", "mask")]
    assert torch.equal(*one)
    with pytest.raises(ObjaudioError, match="union mode"):
        tiny_pipe.generate_many(scene, [both], union="sum", **OPTS)


def test_composed_union_in_a_batch_matches_it_alone(tiny_pipe, scene_image, square_mask, disc_mask):
    """Items with fewer parts are padded with zero-weight copies: batch neighbours do not change them."""
    scene = tiny_pipe.encode_image(scene_image)
    both = Mask(square_mask) | Mask(disc_mask)
    batch = tiny_pipe.generate_many(scene, [Mask(disc_mask), both], seed=4, **OPTS)
    alone = [tiny_pipe.generate_many(scene, [s], seed=4, **OPTS)[0].wave for s in (Mask(disc_mask), both)]
    for got, ref in zip(batch, alone):
        torch.testing.assert_close(got.wave, ref, atol=1e-5, rtol=1e-4)
