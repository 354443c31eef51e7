"""Our coefficient-table samplers against diffusers' schedulers on the same model outputs."""
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.samplers import SamplerPlan, reference_step

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


def run_ours(plan: SamplerPlan, x: torch.Tensor, cfg: float, model=None) -> torch.Tensor:
    model = model or fake_model
    history = None
    for i, t in enumerate(plan.timesteps.tolist()):
        x, history = reference_step(plan.coefs[i], x, model(x, t), cfg, history)
    return x


def run_diffusers(sched, steps: int, x: torch.Tensor, cfg: float, model=None) -> torch.Tensor:
    model = model or fake_model
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        eps_u, eps_c = model(x, int(t)).chunk(2)
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


# diffusers' schedulers with the settings samplers.py documents (their defaults for the multistep solvers)
SCHEDULERS = {
    "ddim": lambda: DDIMScheduler(**AUDIOLDM, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                  prediction_type="epsilon", timestep_spacing="leading"),
    "dpmpp": lambda: DPMSolverMultistepScheduler(**AUDIOLDM, algorithm_type="dpmsolver++", solver_order=2,
                                                 prediction_type="epsilon"),
    "dpmpp3m": lambda: DPMSolverMultistepScheduler(**AUDIOLDM, algorithm_type="dpmsolver++", solver_order=3,
                                                   prediction_type="epsilon"),
    "unipc": lambda: UniPCMultistepScheduler(**AUDIOLDM, solver_order=2, solver_type="bh2", predict_x0=True,
                                             prediction_type="epsilon"),
}


def random_eps_model(steps: int, shape: tuple[int, ...], seed: int):
    """A model whose (2B: uncond, cond) output at step i is the i-th of a fixed random sequence, whatever x."""
    g = torch.Generator().manual_seed(seed)
    sequence = iter([torch.randn((2 * shape[0], *shape[1:]), generator=g, dtype=torch.float64) for _ in range(steps)])
    return lambda x, t: next(sequence)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 6, 7, 8, 10, 14, 15, 20])
@pytest.mark.parametrize("sampler", ["dpmpp3m", "unipc", "dpmpp", "ddim"])
def test_sampler_matches_diffusers_on_a_random_eps_sequence(sampler, steps):
    """The same random eps sequence through our table and diffusers' scheduler step by step; 14 and 15 steps
    bracket DPM-Solver++ 3M's lower-order second-to-last step (below 15 steps only)."""
    shape = (2, 8, 12, 4)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
    sched = SCHEDULERS[sampler]()
    plan = SamplerPlan.build(sampler, steps)
    sched.set_timesteps(steps)
    assert plan.timesteps.tolist() == sched.timesteps.tolist()
    ours = run_ours(plan, x.clone(), 3.0, random_eps_model(steps, shape, 7))
    ref = run_diffusers(sched, steps, x.clone(), 3.0, random_eps_model(steps, shape, 7))
    assert_close_to_float32_schedule(ours, ref)


@pytest.mark.parametrize("steps", [4, 7, 20, 25])
@pytest.mark.parametrize("sampler", ["dpmpp3m", "unipc"])
def test_new_samplers_match_diffusers_on_a_model(sampler, steps):
    """A model whose output depends on x: UniPC's corrector must use this step's output at the uncorrected x."""
    x = torch.randn(2, 8, 12, 4, dtype=torch.float64)
    sched = SCHEDULERS[sampler]()
    ours = run_ours(SamplerPlan.build(sampler, steps), x.clone(), 2.0)
    assert_close_to_float32_schedule(ours, run_diffusers(sched, steps, x.clone(), 2.0))


def test_ddim_and_dpmpp_keep_their_five_coefficient_rows():
    """K = 1: cx, ce, cp, dx, de as before the history was generalised; DDIM never reads its history."""
    ddim, dpm = SamplerPlan.build("ddim", 10), SamplerPlan.build("dpmpp", 10)
    assert ddim.coefs.shape == dpm.coefs.shape == (10, 5)
    assert ddim.history_reads == [0] * 10 and dpm.history_reads == [0] + [1] * 8 + [0]
    assert SamplerPlan.build("dpmpp3m", 10).history_reads == [0, 1] + [2] * 6 + [1, 0]


def test_a_step_given_too_little_history_is_refused():
    plan = SamplerPlan.build("dpmpp3m", 10)
    x = torch.zeros(1, 8, 4, 4)
    with pytest.raises(ObjaudioError, match="previous data predictions"):
        reference_step(plan.coefs[3], x, torch.zeros(2, 8, 4, 4), 2.0, (x,))


@pytest.mark.parametrize("bad", [0, -3, 1001, 2.5])
def test_bad_steps_are_refused(bad):
    with pytest.raises(ObjaudioError, match="steps"):
        SamplerPlan.build("ddim", bad)


def test_unknown_sampler_is_refused():
    with pytest.raises(ObjaudioError, match="unknown sampler"):
        SamplerPlan.build("euler", 10)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp", "dpmpp3m", "unipc"])
def test_the_stated_maximum_steps_work_and_one_more_is_refused(sampler):
    """999 steps (max_steps) give finite tables with distinct timesteps; 1000 was an IndexError (DDIM)
    and a division by zero (DPM-Solver++) and is now one clear error."""
    from objaudio_rt.core.errors import ObjaudioError
    from objaudio_rt.core.options import max_steps

    plan = SamplerPlan.build(sampler, max_steps(1000))
    assert plan.steps == 999 and torch.isfinite(plan.coefs).all()
    assert plan.timesteps.unique().numel() == 999
    with pytest.raises(ObjaudioError, match=r"\[1, 999\]"):
        SamplerPlan.build(sampler, 1000)


def test_cfg_is_bounded_where_the_update_breaks():
    from objaudio_rt.core.config import ModelConfig
    from objaudio_rt.core.errors import ObjaudioError
    from objaudio_rt.core.options import MAX_CFG, RunOptions

    config = ModelConfig.from_name("tiny")
    assert RunOptions(cfg=MAX_CFG).resolve(config).cfg == MAX_CFG
    for bad in (1e30, MAX_CFG * 1.01, 0.5, float("nan")):
        with pytest.raises(ObjaudioError, match="cfg"):
            RunOptions(cfg=bad).resolve(config)
