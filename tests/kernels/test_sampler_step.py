"""Fused guided sampler step (Triton, and the csrc/ CUDA twin) against samplers.reference_step."""
import re
from pathlib import Path

import pytest
import torch
from .kernel_checks import assert_verbose_allclose, reference_tolerance

from objaudio_rt.backends.base import Backend
from objaudio_rt.backends.fused import fused_step
from objaudio_rt.core.denoise import Conditions, guided_loop
from objaudio_rt.kernels import cuda_available, guided_step, guided_step_into, upload_coefs
from objaudio_rt.kernels._cuda import extension
from objaudio_rt.kernels._triton import INTERPRETED
from objaudio_rt.kernels.sampler_step import MAX_HISTORY
from objaudio_rt.core.options import SAMPLERS
from objaudio_rt.core.samplers import HISTORY, DeviceTables, SamplerPlan, reference_step

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(1, 8, 13, 4), (3, 8, 65, 16)]
CFG = 2.0
interpreted = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 (set by tests/conftest.py where there is no GPU)")
on_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
compiled_triton = pytest.mark.skipif(INTERPRETED, reason="TRITON_INTERPRET=1: the CUDA cases need compiled kernels")


def fake_model(x: torch.Tensor, t: int) -> torch.Tensor:
    """Deterministic non-linear stand-in for the UNet's (2B: uncond, cond) output (as tests/runtime)."""
    eps_u = torch.tanh(0.7 * x + 0.001 * t)
    eps_c = torch.sin(1.3 * x) * 0.9 + 0.0005 * t
    return torch.cat([eps_u, eps_c])


def step_inputs(shape, dtype, device, seed=0):
    """x (B, ...), eps_pair (2B, ...) and two history slots (B, ...) each, random."""
    g = torch.Generator().manual_seed(seed)
    x, h1, h2 = (torch.randn(shape, generator=g) for _ in range(3))
    eps_pair = torch.randn((2 * shape[0], *shape[1:]), generator=g)
    x, eps_pair, h1, h2 = (t.to(device=device, dtype=dtype) for t in (x, eps_pair, h1, h2))
    return x, eps_pair, [h1, h2]


def cfg_on(device, items: int = 1, value: float = CFG) -> torch.Tensor:
    """The guidance scale as the loop passes it: a (1,) or (B,) float32 device tensor."""
    return torch.full((items,), value, dtype=torch.float32, device=device)


# (sampler, slots read): a step of each kind of row; step 4 of 10 reads all K slots (third-order 3M, UniC-2)
ROWS = [("ddim", 0), ("dpmpp", 0), ("dpmpp", 1), ("dpmpp3m", 1), ("dpmpp3m", 2), ("unipc", 2)]


def reference_outputs(plan, i, x, eps_pair, history):
    """(x_next, x0) of the reference with only the given slots read (what the op promises)."""
    row = plan.coefs[i].tolist()
    row[2 + len(history):2 + plan.history] = [0.0] * (plan.history - len(history))
    x_next, (x0, *_) = reference_step(row, x, eps_pair, CFG, tuple(history))
    return x_next, x0


def check_step(launch, shape, dtype, sampler, slots, device):
    """launch(coefs_dev, step_dev, x, eps_pair, history) -> (x_next, x0), against the reference."""
    plan = SamplerPlan.build(sampler, 10)
    i = 4
    x, eps_pair, history = step_inputs(shape, dtype, device)
    history = history[:slots]
    out = launch(upload_coefs(plan, device), torch.tensor(i, device=device), x, eps_pair, history)
    truth = reference_outputs(plan, i, x.double(), eps_pair.double(), [h.double() for h in history])
    low = reference_outputs(plan, i, x, eps_pair, history)
    for name, got, t, lo in zip(("x_next", "x0"), out, truth, low):
        assert got.dtype == dtype
        assert_verbose_allclose(got, t, reference_tolerance(t, lo, dtype), f"{name} {sampler} {shape} {dtype}")


def launch_into_poisoned(coefs, step, x, eps_pair, history):
    x_next, x0 = torch.full_like(x, float("nan")), torch.full_like(x, float("nan"))
    guided_step_into(coefs, step, x, eps_pair, cfg_on(x.device), history, x_next, x0)
    return x_next, x0


@interpreted
@pytest.mark.parametrize("sampler,slots", ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_triton_step_matches_reference(shape, dtype, sampler, slots):
    check_step(launch_into_poisoned, shape, dtype, sampler, slots, "cpu")


def test_history_bound_is_one_number_in_python_and_c():
    """Every sampler's K fits the kernels, and params.h's OBJAUDIO_KERNEL_MAX_HISTORY is kernels' MAX_HISTORY."""
    assert set(HISTORY) == set(SAMPLERS) and max(HISTORY.values()) <= MAX_HISTORY
    params = (Path(__file__).resolve().parents[2] / "csrc" / "params.h").read_text()
    assert re.search(r"#define OBJAUDIO_KERNEL_MAX_HISTORY (\d+)", params).group(1) == str(MAX_HISTORY)


@interpreted
def test_triton_step_mixed_dtypes():
    """The UNet may hand back fp16 eps for an fp32 latent: inputs are read at their own width."""
    plan = SamplerPlan.build("dpmpp3m", 10)
    x, eps_pair, history = step_inputs((2, 8, 13, 4), torch.float32, "cpu")
    eps_half = eps_pair.half()
    got = guided_step(upload_coefs(plan, "cpu"), torch.tensor(3), x, eps_half, cfg_on("cpu"), history)
    ref = reference_outputs(plan, 3, x, eps_half, history)
    for name, g, r in zip(("x_next", "x0"), got, ref):
        assert_verbose_allclose(g, r, 4 * torch.finfo(torch.float32).eps * r.abs().max().item(), name)


@interpreted
def test_step_index_is_read_on_the_device():
    """Advancing the device step counter in place changes the row used, with no new arguments."""
    plan = SamplerPlan.build("ddim", 20)
    coefs, step = upload_coefs(plan, "cpu"), torch.zeros((), dtype=torch.int64)
    x, eps_pair, history = step_inputs((1, 8, 13, 4), torch.float32, "cpu")
    x_next, x0 = torch.empty_like(x), torch.empty_like(x)
    for i in range(3):
        guided_step_into(coefs, step, x, eps_pair, cfg_on("cpu"), history[:1], x_next, x0)
        ref = reference_step(plan.coefs[i], x, eps_pair, CFG, tuple(history[:1]))
        assert_verbose_allclose(x_next, ref[0], 1e-5, f"x_next at step {i}")
        step.add_(1)


@interpreted
def test_guidance_is_read_on_the_device():
    """A (B,) cfg gives each item its own scale; rewriting the tensor in place changes the result."""
    plan = SamplerPlan.build("dpmpp", 10)
    coefs, step = upload_coefs(plan, "cpu"), torch.tensor(4)
    x, eps_pair, (x0_prev, _) = step_inputs((3, 8, 13, 4), torch.float32, "cpu")
    cfg = torch.tensor([1.0, 2.5, 7.0])
    x_next, x0 = torch.empty_like(x), torch.empty_like(x)
    guided_step_into(coefs, step, x, eps_pair, cfg, [x0_prev], x_next, x0)
    for b in range(3):
        ref = reference_step(plan.coefs[4], x[b:b + 1], eps_pair[b::3], float(cfg[b]), (x0_prev[b:b + 1],))
        assert_verbose_allclose(x_next[b:b + 1], ref[0], 1e-5, f"x_next item {b} (cfg {float(cfg[b])})")
    one = cfg_on("cpu", value=1.0)
    guided_step_into(coefs, step, x, eps_pair, one, [x0_prev], x_next, x0)
    first = x_next.clone()
    one.fill_(3.0)
    guided_step_into(coefs, step, x, eps_pair, one, [x0_prev], x_next, x0)
    assert_verbose_allclose(x_next, reference_step(plan.coefs[4], x, eps_pair, 3.0, (x0_prev,))[0], 1e-5, "cfg 3")
    assert (x_next - first).abs().max() > 1e-3


def run_trajectory(step_fn, plan, x):
    """The denoising loop as a runtime would write it: table and counter on the device, the history a
    tuple the loop shifts, each step reading the slots the host plan says (backends/fused.py)."""
    coefs, step = upload_coefs(plan, x.device), torch.zeros((), dtype=torch.int64, device=x.device)
    history = ()
    for i, t in enumerate(plan.timesteps.tolist()):
        x, x0 = step_fn(coefs, step, x, fake_model(x, t), cfg_on(x.device), list(history[:plan.history_reads[i]]))
        history = (x0, *history[:plan.history - 1])
        step.add_(1)
    return x


def reference_loop_step(coefs, step, x, eps_pair, cfg, history):
    x_next, (x0, *_) = reference_step(coefs[int(step)].double(), x, eps_pair, cfg, tuple(history))
    return x_next, x0


def check_trajectory(step_fn, sampler, steps, device):
    plan = SamplerPlan.build(sampler, steps)
    x = torch.randn((2, 8, 13, 4), generator=torch.Generator().manual_seed(1)).to(device)
    got = run_trajectory(step_fn, plan, x)
    want = run_trajectory(reference_loop_step, plan, x)
    rel = ((got - want).norm() / want.norm()).item()
    # Both run fp32 arithmetic; only rounding order (FMA contraction) differs, compounded over the steps.
    assert rel < 1e-5, f"{sampler} x {steps}: relative error {rel:.2e}"
    assert_verbose_allclose(got, want, 1e-4 * want.abs().max().item(), f"final latent {sampler} x {steps}")


@interpreted
@pytest.mark.parametrize("sampler,steps", [("dpmpp", 25), ("ddim", 50), ("dpmpp3m", 7), ("unipc", 7), ("unipc", 20)])
def test_triton_trajectory_matches_reference(sampler, steps):
    check_trajectory(guided_step, sampler, steps, "cpu")


@interpreted
def test_custom_op_traces():
    """The fake lets torch.compile trace the op in one graph, and opcheck's checks pass."""
    plan = SamplerPlan.build("unipc", 10)
    x, eps_pair, history = step_inputs((1, 8, 13, 4), torch.float32, "cpu")
    args = (upload_coefs(plan, "cpu"), torch.tensor(2), x, eps_pair, cfg_on("cpu"), history)
    torch.library.opcheck(guided_step, args, test_utils=("test_schema", "test_faketensor"))
    compiled = torch.compile(lambda *a: guided_step(*a), backend="aot_eager", fullgraph=True)
    for got, want in zip(compiled(*args), guided_step(*args)):
        assert_verbose_allclose(got, want, 0.0, "compiled vs eager")


@on_cuda
@compiled_triton
@pytest.mark.parametrize("sampler,slots", ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_triton_step_on_cuda(shape, dtype, sampler, slots):
    check_step(launch_into_poisoned, shape, dtype, sampler, slots, "cuda")


@on_cuda
@pytest.mark.skipif(not cuda_available(), reason="objaudio_rt._C not built (OBJAUDIO_BUILD_CUDA=1 pip install "
                    "--no-build-isolation -e .)")
@pytest.mark.parametrize("sampler,slots", ROWS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_cpp_step_matches_reference(shape, dtype, sampler, slots):
    check_step(lambda c, s, x, e, h: extension().guided_step(c, s.reshape(1), x, e, cfg_on("cuda"), h),
               shape, dtype, sampler, slots, "cuda")


@on_cuda
@pytest.mark.skipif(not cuda_available(), reason="objaudio_rt._C not built")
def test_cuda_cpp_step_reads_cfg_per_item():
    plan = SamplerPlan.build("dpmpp", 10)
    x, eps_pair, (x0_prev, _) = step_inputs((3, 8, 13, 4), torch.float32, "cuda")
    cfg = torch.tensor([1.0, 2.5, 7.0], device="cuda")
    got, _ = extension().guided_step(upload_coefs(plan, "cuda"), torch.tensor([4], device="cuda"), x, eps_pair,
                                     cfg, [x0_prev])
    for b in range(3):
        ref = reference_step(plan.coefs[4], x[b:b + 1], eps_pair[b::3], float(cfg[b]), (x0_prev[b:b + 1],))
        assert_verbose_allclose(got[b:b + 1], ref[0], 1e-5, f"x_next item {b}")


@on_cuda
@compiled_triton
@pytest.mark.parametrize("sampler,steps", [("dpmpp", 25), ("ddim", 50), ("dpmpp3m", 7), ("unipc", 20)])
def test_op_trajectory_on_cuda(sampler, steps):
    """The op as the loop calls it on CUDA (the C++ kernel where built, else Triton)."""
    check_trajectory(guided_step, sampler, steps, "cuda")


@on_cuda
@compiled_triton
def test_cuda_graph_replays_the_loop():
    """The whole loop captured once and replayed: the step counter advances inside the graph."""
    plan = SamplerPlan.build("unipc", 25)
    coefs, cfg = upload_coefs(plan, "cuda"), cfg_on("cuda")
    step = torch.zeros((), dtype=torch.int64, device="cuda")
    x_start = torch.randn((2, 8, 13, 4), generator=torch.Generator().manual_seed(2)).cuda()
    x = x_start.clone()
    ts = plan.timesteps.tolist()

    def loop():
        xs, history = x, ()
        for j, t in enumerate(ts):
            xs, x0 = guided_step(coefs, step, xs, fake_model(xs, t), cfg, list(history[:plan.history_reads[j]]))
            history = (x0, *history[:plan.history - 1])
            step.add_(1)
        return xs

    loop()                                                   # warm up (compiles the kernels)
    step.zero_()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = loop()
    step.zero_()
    graph.replay()
    torch.cuda.synchronize()
    want = run_trajectory(reference_loop_step, plan, x_start)
    assert_verbose_allclose(out, want, 1e-4 * want.abs().max().item(), "graph-replayed final latent")


class ToyBackend:
    """The loop's two calls and nothing else: eps(x, t, c) = tanh(0.7 x + 0.001 t + c_0), the reference step."""
    device, graphs = torch.device("cpu"), None
    null_condition = torch.zeros(4)

    def unet_eps(self, x, t, cond):
        return torch.tanh(0.7 * x + 0.001 * t.float().view(-1, 1, 1, 1) + cond[:, :1, None, None])

    def step(self, tables, i, x, eps_pair, cfg, history):
        return Backend.step(self, tables, i, x, eps_pair, cfg, history)


class FusedToyBackend(ToyBackend):
    def step(self, tables, i, x, eps_pair, cfg, history):
        return fused_step(tables, i, x, eps_pair, cfg, history)


@interpreted
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_fused_step_runs_the_loop_of_every_sampler(sampler):
    """denoise.guided_loop with backends/fused.py's step (what fast on CUDA and tensorrt run) equals the
    loop with the reference step on the same float32 table."""
    plan = SamplerPlan.build(sampler, 7)
    plan32 = SamplerPlan(plan.sampler, plan.timesteps, plan.coefs.float().double())
    g = torch.Generator().manual_seed(5)
    x, cond = torch.randn(2, 8, 13, 4, generator=g), torch.randn(2, 4, generator=g)
    cfg = torch.full((1,), CFG)
    tables = DeviceTables.upload(plan, torch.device("cpu"))
    got = guided_loop(FusedToyBackend(), x, Conditions.single(cond), tables, cfg)
    want = guided_loop(ToyBackend(), x, Conditions.single(cond), DeviceTables.upload(plan32, torch.device("cpu")), cfg)
    assert tables.step.item() == 7
    assert_verbose_allclose(got, want, 1e-5 * want.abs().max().item(), f"fused loop {sampler}")
