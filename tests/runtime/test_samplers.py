"""Our coefficient-table samplers against diffusers' schedulers on the same model outputs."""
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from objaudio_rt.errors import ObjaudioError
from objaudio_rt.samplers import SamplerPlan, reference_step

AUDIOLDM = dict(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear")


def fake_model(x: torch.Tensor, t: int) -> torch.Tensor:
    """A deterministic, non-linear stand-in for the UNet's guided output (2B: uncond, cond)."""
    eps_u = torch.tanh(0.7 * x + 0.001 * t)
    eps_c = torch.sin(1.3 * x) * 0.9 + 0.0005 * t
    return torch.cat([eps_u, eps_c])


def assert_close_to_float32_schedule(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """diffusers keeps alphas_cumprod in float32; our tables are float64. Their difference is
    float32 rounding of the schedule (~1e-7 relative per step, accumulated over the steps)."""
    rel = ((ours - ref).norm() / ref.norm()).item()
    where = (ours - ref).abs().argmax().item()
    assert rel < 2e-5, f"relative error {rel:.2e}; worst element {where}: {ours.flatten()[where]} vs {ref.flatten()[where]}"


def run_ours(plan: SamplerPlan, x: torch.Tensor, cfg: float) -> torch.Tensor:
    x0 = None
    for i, t in enumerate(plan.timesteps.tolist()):
        x, x0 = reference_step(plan.coefs[i], x, fake_model(x, t), cfg, x0)
    return x


def run_diffusers(sched, steps: int, x: torch.Tensor, cfg: float) -> torch.Tensor:
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        eps_u, eps_c = fake_model(x, int(t)).chunk(2)
        x = sched.step(eps_u + cfg * (eps_c - eps_u), t, x).prev_sample
    return x


@pytest.mark.parametrize("steps", [1, 7, 25, 200])
def test_ddim_matches_diffusers(steps):
    x = torch.randn(2, 8, 12, 4, dtype=torch.float64)
    sched = DDIMScheduler(**AUDIOLDM, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                          prediction_type="epsilon", timestep_spacing="leading")
    plan = SamplerPlan.build("ddim", steps)
    sched.set_timesteps(steps)
    assert plan.timesteps.tolist() == sched.timesteps.tolist()
    ours, ref = run_ours(plan, x.clone(), 2.0), run_diffusers(sched, steps, x.clone(), 2.0)
    assert_close_to_float32_schedule(ours, ref)


@pytest.mark.parametrize("steps", [2, 10, 20, 25])
def test_dpmpp_2m_matches_diffusers(steps):
    x = torch.randn(2, 8, 12, 4, dtype=torch.float64)
    sched = DPMSolverMultistepScheduler(**AUDIOLDM, algorithm_type="dpmsolver++", solver_order=2,
                                        prediction_type="epsilon")
    plan = SamplerPlan.build("dpmpp", steps)
    sched.set_timesteps(steps)
    assert plan.timesteps.tolist() == sched.timesteps.tolist()
    ours, ref = run_ours(plan, x.clone(), 2.0), run_diffusers(sched, steps, x.clone(), 2.0)
    assert_close_to_float32_schedule(ours, ref)


@pytest.mark.parametrize("bad", [0, -3, 1001, 2.5])
def test_bad_steps_are_refused(bad):
    with pytest.raises(ObjaudioError, match="steps"):
        SamplerPlan.build("ddim", bad)


def test_unknown_sampler_is_refused():
    with pytest.raises(ObjaudioError, match="unknown sampler"):
        SamplerPlan.build("euler", 10)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp"])
def test_the_stated_maximum_steps_work_and_one_more_is_refused(sampler):
    """999 steps (max_steps) give finite tables with distinct timesteps; 1000 was an IndexError (DDIM)
    and a division by zero (DPM-Solver++) and is now one clear error."""
    from objaudio_rt.errors import ObjaudioError
    from objaudio_rt.options import max_steps

    plan = SamplerPlan.build(sampler, max_steps(1000))
    assert plan.steps == 999 and torch.isfinite(plan.coefs).all()
    assert plan.timesteps.unique().numel() == 999
    with pytest.raises(ObjaudioError, match=r"\[1, 999\]"):
        SamplerPlan.build(sampler, 1000)


def test_cfg_is_bounded_where_the_update_breaks():
    from objaudio_rt.config import ModelConfig
    from objaudio_rt.errors import ObjaudioError
    from objaudio_rt.options import MAX_CFG, RunOptions

    config = ModelConfig.from_name("tiny")
    assert RunOptions(cfg=MAX_CFG).resolve(config).cfg == MAX_CFG
    for bad in (1e30, MAX_CFG * 1.01, 0.5, float("nan")):
        with pytest.raises(ObjaudioError, match="cfg"):
            RunOptions(cfg=bad).resolve(config)
