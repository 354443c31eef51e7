"""Adaptive projected guidance (objaudio_rt/core/guidance.py): classifier-free guidance at eta 1 and no
cap; the parallel part removed at eta 0; the cap; through the guided loop."""
import pytest
import torch

from objaudio_rt.core.config import ScheduleConfig
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.guidance import APG
from objaudio_rt.core.samplers import SamplerPlan, guided_eps


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, pair = torch.randn(3, 4, 8, 5, generator=g), torch.randn(6, 4, 8, 5, generator=g)
    row = SamplerPlan.build("dpmpp", 10, ScheduleConfig()).coef_rows[3]
    return row, x, pair, torch.tensor([4.0])


def test_apg_at_eta_one_without_a_cap_is_classifier_free_guidance():
    row, x, pair, cfg = _case()
    torch.testing.assert_close(APG(1.0, 0.0).eps(row, x, pair, cfg), guided_eps(pair, cfg), rtol=1e-5, atol=1e-5)


def test_apg_removes_the_update_parallel_to_the_conditional_prediction():
    row, x, pair, cfg = _case(1)
    k = len(row) - 4
    dx, de = row[k + 2], row[k + 3]
    eps_u, eps_c = pair.chunk(2)
    x0_c = dx * x + de * eps_c
    x0 = dx * x + de * APG(0.0).eps(row, x, pair, cfg)
    update = (x0 - x0_c).flatten(1)                       # (cfg - 1) D_orth: orthogonal to x0_c, per item
    cos = (update * x0_c.flatten(1)).sum(1) / (update.norm(dim=1) * x0_c.flatten(1).norm(dim=1))
    assert float(cos.abs().max()) < 1e-4
    d = (de * (eps_c - eps_u)).flatten(1)
    capped = dx * x + de * APG(1.0, 0.5).eps(row, x, pair, cfg)
    assert float(((capped - x0_c).flatten(1).norm(dim=1) - 3.0 * 0.5).abs().max()) < 1e-4 < float(d.norm(dim=1).min())


@pytest.mark.parametrize("eta, r", [(-0.1, 0.0), (1.5, 0.0), (float("nan"), 0.0), (0.0, -1.0)])
def test_apg_settings_are_checked(eta, r):
    with pytest.raises(ObjaudioError, match="APG"):
        APG(eta, r)


def test_the_guided_loop_with_apg_at_eta_one_equals_the_plain_loop(tiny_pipe, scene_image, square_mask):
    from objaudio_rt import Mask
    from objaudio_rt.core.options import RunOptions

    scene = tiny_pipe.encode_image(scene_image)
    cond = tiny_pipe.conditions(scene, [Mask(square_mask)])
    run = RunOptions(steps=4, seed=2)
    plain = tiny_pipe.sample(cond, run, progress=False)
    same = tiny_pipe.sample(cond, run, progress=False, guidance=APG(1.0))
    torch.testing.assert_close(same, plain, rtol=1e-4, atol=1e-4)
    other = tiny_pipe.sample(cond, run, progress=False, guidance=APG(0.0))
    assert float((other - plain).abs().max()) > 10 * float((same - plain).abs().max())   # eta 0 changes the run


def test_guidance_is_a_run_option_everywhere_and_apg_is_the_lever(tiny_pipe, scene_image, square_mask):
    """RunOptions.guidance ("cfg" | "apg"), the CLI's --guidance, the service's "guidance" field and a batch
    line's: each refuses another name; "apg" generates what the evaluation lever APG() generates."""
    from objaudio_rt import Mask
    from objaudio_rt.core.options import RunOptions
    from objaudio_rt.frontends.cli import build_parser
    from objaudio_rt.frontends.serve.limits import ServeLimits
    from objaudio_rt.frontends.serve.requests import parse_generate

    with pytest.raises(ObjaudioError, match="unknown guidance 'pag': use one of cfg, apg"):
        RunOptions(guidance="pag").resolve(tiny_pipe.config)
    assert RunOptions().resolve(tiny_pipe.config).guidance == "cfg"
    body = {"scene_id": "s", "selections": [{"whole": True}], "guidance": "apg"}
    assert parse_generate(body, ServeLimits()).options.guidance == "apg"
    with pytest.raises(ObjaudioError, match="'guidance' must be one of cfg, apg"):
        parse_generate({**body, "guidance": 1}, ServeLimits())
    args = build_parser().parse_args(["generate", "--image", "x.png", "--guidance", "apg", "--out", "y.wav"])
    assert args.guidance == "apg"
    scene = tiny_pipe.encode_image(scene_image)
    sel = Mask(square_mask)
    got = tiny_pipe.generate_many(scene, [sel], steps=3, seed=5, guidance="apg", progress=False)[0].wave
    run = RunOptions(steps=3, seed=5)
    z = tiny_pipe.sample(tiny_pipe.conditions(scene, [sel]), run, progress=False, guidance=APG())
    assert torch.equal(got, tiny_pipe.audio(z, run)[1][0])
    cfg = tiny_pipe.generate_many(scene, [sel], steps=3, seed=5, progress=False)[0].wave
    assert not torch.equal(got, cfg)
