"""The guided loop (denoise.py), written once in the composed form: a single condition is one
part of weight 1 (exactly the plain guided loop), a composed union averages its parts' guidance
directions with the given weights, and bad compositions are refused."""
import pytest
import torch

from objaudio_rt import Mask, ObjaudioError
from objaudio_rt.core.denoise import Conditions, denoise


def _backend_inputs(pipe, scene, *masks):
    conds = torch.cat([pipe.condition(scene, pipe.select(scene, Mask(m))[0]) for m in masks])   # (K, cond)
    shape, _ = pipe.latent_shape(1.28)
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(5))
    from objaudio_rt.core.samplers import SamplerPlan

    return conds, x, SamplerPlan.build("dpmpp", 4, pipe.config.schedule)


def test_one_part_of_weight_one_is_the_plain_loop_exactly(tiny_pipe, scene_image, square_mask):
    scene = tiny_pipe.encode_image(scene_image)
    conds, x, plan = _backend_inputs(tiny_pipe, scene, square_mask)
    ref = _single_part_loop(tiny_pipe.backend, x, conds, plan, 3.0)
    out = denoise(tiny_pipe.backend, x, Conditions.single(conds), plan, 3.0, progress=False)
    assert torch.equal(out, ref)


def test_single_conditions_skip_the_gather_and_give_the_composed_loops_result(tiny_pipe, scene_image, square_mask,
                                                                            disc_mask):
    """Conditions.single (identity rows) runs the short path; the same rows through the general
    gather-and-sum path (identity False) give the same latents bit for bit, for a batch of two."""
    scene = tiny_pipe.encode_image(scene_image)
    conds, x, plan = _backend_inputs(tiny_pipe, scene, square_mask, disc_mask)
    x = torch.cat([x, x.flip(-1)])                                           # (2, C, H, W): two items
    single = Conditions.single(conds)
    assert single.identity and not Conditions.composed(conds, torch.arange(2), torch.ones(2), 2).identity
    general = Conditions(single.rows, single.owner, single.weights, identity=False)
    fast = denoise(tiny_pipe.backend, x, single, plan, 3.0, progress=False)
    slow = denoise(tiny_pipe.backend, x, general, plan, 3.0, progress=False)
    assert torch.equal(fast, slow)


def _single_part_loop(backend, x, cond, plan, cfg):
    """The loop for one condition per item as written before the composed form: eps of [null, cond]."""
    from objaudio_rt.core.samplers import reference_step

    cond2 = torch.cat([backend.null_condition.expand_as(cond), cond])
    x0 = None
    for i in range(plan.steps):
        eps2 = backend.unet_eps(torch.cat([x, x]), plan.timesteps[i], cond2)
        x, x0 = reference_step(plan.coefs[i], x, eps2, cfg, x0)
    return x


def test_composed_parts_average_the_guidance_directions(tiny_pipe, scene_image, square_mask, disc_mask):
    """One DDIM step by hand: eps = eps_u + cfg * (w_a eps_a + w_b eps_b - eps_u)."""
    from objaudio_rt.core.samplers import SamplerPlan, reference_step

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
def test_bad_compositions_are_refused(tiny_pipe, scene_image, square_mask, disc_mask, owner, weights, match):
    scene = tiny_pipe.encode_image(scene_image)
    conds, x, plan = _backend_inputs(tiny_pipe, scene, square_mask, disc_mask)
    with pytest.raises(ObjaudioError, match=match):
        Conditions.composed(conds, torch.tensor(owner), torch.tensor(weights), 1)
