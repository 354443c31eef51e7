"""The fast backend against its reference, the eager backend.

CPU: with its two CPU-only defaults off (the vocoder's channels_last 2-D form, the VAE in bfloat16
on a CPU with native bfloat16) the fast backend equals the eager one bit for bit; with them on, the
decoder equals the eager one run at the same VAE dtype bit for bit and the vocoder stays within four
times the float32 reference's own error; and the loop with the fused step (what the CUDA graph captures, here through the Triton interpreter or
the step's reference fallback) equals the eager loop run on the same float32 coefficient table.
CUDA (tests named *cuda*, run by benchmarks/gpu_check.sh): the graphed loop equals the un-graphed
one, fresh inputs replay correctly, one capture serves every guidance value, composed unions are
captured too, the cache evicts, and a half-precision fast run stays within twice the error of
the eager backend in that precision.
"""
import copy

import numpy as np
import pytest
import torch

from objaudio_rt.backends.eager import EagerBackend
from objaudio_rt.backends.fast import VOCODER_FRAMES, FastBackend, FastOptions, native_bf16
from objaudio_rt.backends.fused import fused_step
from objaudio_rt.core.config import ModelConfig
from objaudio_rt.core.denoise import Conditions, denoise, guided_loop
from objaudio_rt.core.samplers import DeviceTables
from objaudio_rt.modelio.model import Calibration, ObjaudioModel
from objaudio_rt.core.pipeline import Pipeline
from objaudio_rt.core.samplers import SamplerPlan
from objaudio_rt.core.selection import Mask

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run by benchmarks/gpu_check.sh)")
SAMPLERS = [("ddim", 6), ("dpmpp", 5)]
CFG = 2.5


@pytest.fixture(scope="module")
def tiny():
    return ObjaudioModel.random(ModelConfig.from_name("tiny"), seed=3)


def inputs(model: ObjaudioModel, batch: int, seed: int, device="cpu"):
    """Fresh random noise (B, C, T/4, M/4) and condition (B, cond_dim) for the tiny preset's 1.28 s clip."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    x = torch.randn(batch, c.vae.latent_channels, 32, c.mel.n_mels // 4, generator=g)
    cond = torch.randn(batch, c.unet.cond_dim, generator=g)
    return x.to(device), cond.to(device)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert torch.isfinite(out).all(), "output has NaN or inf"
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def assert_close(out: torch.Tensor, ref: torch.Tensor, tol: float, what: str) -> None:
    err = rel_err(out, ref)
    where = (out.double() - ref.double()).abs().argmax().item()
    assert err <= tol, (f"{what}: relative error {err:.3e} > {tol:.3e}; worst element {where}: "
                        f"{out.flatten()[where].item()} vs {ref.flatten()[where].item()}")


def run(backend, x, cond, plan, cfg=CFG):
    """The pipeline's loop for one condition per item: cond (B, cond_dim)."""
    return denoise(backend, x, Conditions.single(cond), plan, cfg, progress=False)


def run_composed(backend, x, conds, owner, weights, plan, cfg=CFG):
    return denoise(backend, x, Conditions.composed(conds, owner, weights, x.shape[0]), plan, cfg, progress=False)


class FusedStepFast(FastBackend):
    """The fast backend with the fused step on any device (on a CPU: the Triton interpreter)."""

    def step(self, tables, i, x, eps_pair, cfg, x0_prev):
        return fused_step(tables, i, x, eps_pair, cfg, x0_prev)


def float32_table(plan: SamplerPlan) -> SamplerPlan:
    """The plan with its coefficients rounded to float32, as the device table holds them."""
    return SamplerPlan(plan.sampler, plan.timesteps, plan.coefs.float().double())


# ---- CPU ------------------------------------------------------------------------------------

CPU = torch.device("cpu")
EAGER_LIKE = {"vocoder_channels_last": False, "vae_dtype": torch.float32}     # the CPU defaults that differ, off


@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_fast_on_cpu_equals_eager_bit_for_bit(tiny, sampler, steps):
    eager = EagerBackend(copy.deepcopy(tiny), CPU)
    fast = FastBackend(copy.deepcopy(tiny), CPU, FastOptions.default_for(CPU, **EAGER_LIKE))
    plan = SamplerPlan.build(sampler, steps, tiny.config.schedule)
    x, cond = inputs(tiny, 2, seed=11)
    z_e = run(eager, x, cond, plan)
    z_f = run(fast, x, cond, plan)
    assert torch.equal(z_f, z_e)
    mel = eager.decode(z_e)
    assert torch.equal(fast.decode(z_e), mel)
    assert torch.equal(fast.vocode(mel), eager.vocode(mel))


def test_fast_cpu_defaults_decode_and_vocode_within_the_references_error(tiny):
    fast = FastBackend(copy.deepcopy(tiny), CPU)
    assert fast.options.vocoder_channels_last and fast.options.vae_dtype == (torch.bfloat16 if native_bf16()
                                                                             else torch.float32)
    eager = EagerBackend(copy.deepcopy(tiny), CPU, vae_dtype=fast.options.vae_dtype)
    x, _ = inputs(tiny, 3, seed=12)
    assert torch.equal(fast.decode(x), eager.decode(x))
    mel = eager.decode(x).repeat(VOCODER_FRAMES // x.shape[2] // 4 + 1, 1, 1)    # more clips than one piece holds
    mel = mel + 0.1 * torch.randn(mel.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        exact = copy.deepcopy(tiny.vocoder).double()(mel.double())
    ref_err = (eager.vocode(mel).double() - exact).abs().max().item()
    err = (fast.vocode(mel).double() - exact).abs().max().item()
    assert 0 < ref_err and err <= 4 * ref_err, f"vocoder error {err:.3e} against float64, eager's {ref_err:.3e}"


def test_fast_composed_on_cpu_equals_eager_bit_for_bit(tiny):
    eager = EagerBackend(copy.deepcopy(tiny), CPU)
    fast = FastBackend(copy.deepcopy(tiny), CPU, FastOptions.default_for(CPU, **EAGER_LIKE))
    plan = SamplerPlan.build("dpmpp", 4, tiny.config.schedule)
    x, _ = inputs(tiny, 2, seed=13)
    _, conds = inputs(tiny, 3, seed=14)
    owner, weights = torch.tensor([0, 1, 1]), torch.tensor([1.0, 0.5, 0.5])
    assert torch.equal(run_composed(fast, x, conds, owner, weights, plan),
                       run_composed(eager, x, conds, owner, weights, plan))


def test_fast_pipeline_on_cpu_equals_eager():
    waves = {}
    for name in ("eager", "fast"):
        pipe = Pipeline.from_pretrained("random:tiny", device="cpu", backend=name, seed=5,
                                        backend_options=EAGER_LIKE if name == "fast" else {})
        scene = pipe.encode_image(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
        mask = np.zeros((40, 56), np.float32)
        mask[5:30, 10:40] = 1
        waves[name] = pipe.generate(scene, Mask(mask), steps=3, sampler="dpmpp", seed=2, progress=False)
    assert torch.equal(waves["fast"], waves["eager"])


@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_fused_step_loop_equals_eager_loop_on_the_same_table(tiny, sampler, steps):
    """The loop the CUDA graph captures with the fast backend's fused step, run on the CPU (no graph):
    device step counter, device timestep, coefficient and guidance reads."""
    eager = EagerBackend(copy.deepcopy(tiny), torch.device("cpu"))
    fast = FusedStepFast(copy.deepcopy(tiny), torch.device("cpu"))
    plan = SamplerPlan.build(sampler, steps, tiny.config.schedule)
    x, cond = inputs(tiny, 3, seed=12)
    tables = DeviceTables.upload(plan, torch.device("cpu"))
    out = guided_loop(fast, x, Conditions.single(cond), tables, torch.full((1,), CFG))
    assert tables.step.item() == steps
    ref32 = run(eager, x, cond, float32_table(plan))
    assert_close(out, ref32, 1e-6, "fused-step loop vs eager loop, same float32 table")
    ref64 = run(eager, x, cond, plan)
    assert_close(out, ref64, 1e-4, "fused-step loop (float32 table) vs eager loop (float64 table)")


def test_options_reject_unknown_dtype():
    with pytest.raises(Exception, match="unet_dtype"):
        FastOptions(unet_dtype=torch.int8)


# ---- CUDA -----------------------------------------------------------------------------------

@pytest.fixture
def no_tf32():
    """fp32 means fp32 in these comparisons: cuDNN's TF32 convolutions (on by default) off, then restored."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def cuda_backends(model: ObjaudioModel, **options):
    dev = torch.device("cuda")
    return FastBackend(copy.deepcopy(model), dev, FastOptions(**options))


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_cuda_graph_replay_equals_device_loop(tiny, sampler, steps):
    """Graph vs no graph, fp32 UNet: the same kernels, so equal up to the rounding of any algorithm change."""
    graphed = cuda_backends(tiny, unet_dtype=torch.float32, cuda_graph=True)
    plain = cuda_backends(tiny, unet_dtype=torch.float32, cuda_graph=False)
    plan = SamplerPlan.build(sampler, steps, tiny.config.schedule)
    for seed in (21, 22):                     # a second replay with fresh inputs: static buffers are refilled
        x, cond = inputs(tiny, 2, seed, "cuda")
        out = run(graphed, x, cond, plan)
        ref = run(plain, x, cond, plan)
        assert_close(out, ref, 1e-5, f"graph replay vs device loop (seed {seed})")
    assert len(graphed.graphs) == 1


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
def test_cuda_captured_loop_serves_every_cfg(tiny):
    """Guidance is a device scalar: one capture, replayed for two cfg values, each equal to the host loop."""
    graphed = cuda_backends(tiny, unet_dtype=torch.float32, cuda_graph=True)
    plain = cuda_backends(tiny, unet_dtype=torch.float32, cuda_graph=False)
    plan = SamplerPlan.build("dpmpp", 5, tiny.config.schedule)
    x, cond = inputs(tiny, 2, seed=23, device="cuda")
    outs = []
    for cfg in (CFG, 4.0):
        outs.append(run(graphed, x, cond, plan, cfg))
        assert_close(outs[-1], run(plain, x, cond, plan, cfg), 1e-5, f"graph replay vs host loop, cfg {cfg}")
    assert len(graphed.graphs) == 1
    assert (outs[0] - outs[1]).abs().max() > 1e-3                  # the guidance value reached the graph


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
def test_cuda_captured_composed_union_equals_host_loop(tiny):
    """A composed union (B + R UNet rows, weighted guidance) is captured too, and replays fresh inputs."""
    graphed = cuda_backends(tiny, unet_dtype=torch.float32, cuda_graph=True)
    plain = cuda_backends(tiny, unet_dtype=torch.float32, cuda_graph=False)
    eager = EagerBackend(copy.deepcopy(tiny), torch.device("cuda"))
    plan = SamplerPlan.build("dpmpp", 5, tiny.config.schedule)
    owner, weights = torch.tensor([0, 1, 1]), torch.tensor([1.0, 0.5, 0.5])
    for seed in (37, 39):
        x, _ = inputs(tiny, 2, seed=seed, device="cuda")
        _, conds = inputs(tiny, 3, seed=seed + 1, device="cuda")
        out = run_composed(graphed, x, conds, owner, weights, plan)
        assert_close(out, run_composed(plain, x, conds, owner, weights, plan), 1e-5, "captured vs host loop")
        assert_close(out, run_composed(eager, x, conds, owner, weights, float32_table(plan)), 1e-5,
                     "captured fast composed vs eager composed")
    assert len(graphed.graphs) == 1


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_cuda_fp32_fast_matches_eager(tiny, sampler, steps):
    """fp32 everywhere: the graphed fused loop computes the eager function (float32 table, SDPA on both)."""
    fast = cuda_backends(tiny, unet_dtype=torch.float32)
    eager = EagerBackend(copy.deepcopy(tiny), torch.device("cuda"))
    plan = SamplerPlan.build(sampler, steps, tiny.config.schedule)
    x, cond = inputs(tiny, 2, seed=31, device="cuda")
    ref = run(eager, x, cond, float32_table(plan))
    assert_close(run(fast, x, cond, plan), ref, 1e-5, "fast fp32 vs eager fp32")


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_cuda_half_unet_within_twice_eager_half_error(tiny, dtype, sampler, steps):
    """Tolerance from the reference's own error: eager with the model in `dtype` vs eager fp32."""
    plan = SamplerPlan.build(sampler, steps, tiny.config.schedule)
    x, cond = inputs(tiny, 2, seed=41, device="cuda")
    ref = run(EagerBackend(copy.deepcopy(tiny), torch.device("cuda")), x, cond, plan)
    half = run(EagerBackend(copy.deepcopy(tiny), torch.device("cuda"), dtype), x, cond, plan)
    fast = run(cuda_backends(tiny, unet_dtype=dtype), x, cond, plan)
    ref_err = rel_err(half, ref)
    assert_close(fast, ref, 2 * ref_err + 1e-6, f"fast {dtype} vs eager fp32 (eager {dtype} error {ref_err:.2e})")


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
def test_cuda_graph_cache_is_lru(tiny):
    fast = cuda_backends(tiny, unet_dtype=torch.float32, graph_cache_size=2)
    x, cond = inputs(tiny, 1, seed=51, device="cuda")
    ddim = SamplerPlan.build("ddim", 3, tiny.config.schedule)
    dpm = SamplerPlan.build("dpmpp", 3, tiny.config.schedule)
    x2, cond2 = inputs(tiny, 2, seed=52, device="cuda")
    first = run(fast, x, cond, ddim)
    run(fast, x, cond, ddim, CFG + 1)                             # cfg is not part of the key
    assert len(fast.graphs) == 1
    run(fast, x2, cond2, ddim)                                    # a batch of 2: another shape, another graph
    assert len(fast.graphs) == 2
    run(fast, x, cond, dpm)                                       # evicts (ddim, batch 1), the least recent
    assert len(fast.graphs) == 2
    assert torch.equal(run(fast, x, cond, ddim), first)           # recaptured, same result


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
def test_cuda_fast_pipeline_end_to_end(tiny):
    """The whole pipeline: fp16 UNet graphed loop, fp32 VAE and vocoder, vs eager fp32 and eager fp16."""
    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), np.float32)
    mask[10:40, 5:30] = 1
    calibration = Calibration.uncalibrated(tiny.config.image.num_patches)
    pipes = {name: Pipeline(copy.deepcopy(tiny), calibration, "cuda", backend=name) for name in ("eager", "fast")}
    pipes["eager-fp16"] = Pipeline(copy.deepcopy(tiny), calibration, "cuda", backend="eager",
                                   backend_options={"dtype": "fp16"})
    waves = {name: p.generate(p.encode_image(image), Mask(mask), steps=8, sampler="ddim", seed=4, progress=False)
             for name, p in pipes.items()}
    assert len(pipes["fast"].backend.graphs) == 1
    ref_err = rel_err(waves["eager-fp16"], waves["eager"])
    assert_close(waves["fast"], waves["eager"], 2 * ref_err + 1e-6,
                 f"fast vs eager fp32 wave (eager fp16 error {ref_err:.2e})")


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
def test_cuda_compiled_unet_matches(tiny):
    """compile_unet (off by default): the compiled UNet inside the graph computes the same function."""
    plan = SamplerPlan.build("dpmpp", 4, tiny.config.schedule)
    x, cond = inputs(tiny, 2, seed=61, device="cuda")
    ref = run(cuda_backends(tiny, unet_dtype=torch.float32), x, cond, plan)
    out = run(cuda_backends(tiny, unet_dtype=torch.float32, compile_unet=True), x, cond, plan)
    assert_close(out, ref, 1e-4, "compiled vs eager UNet in the graphed loop (fp32, tf32 off)")


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
def test_cuda_fused_grounding_matches_eager(tiny):
    """The fast backend's text attention and weights-V come from the fused kernel; hold them to eager."""
    fast = cuda_backends(tiny, unet_dtype=torch.float32)
    eager = EagerBackend(copy.deepcopy(tiny), torch.device("cuda"))
    g = torch.Generator().manual_seed(71)
    c = tiny.config
    tokens = torch.randn(1, c.image.num_patches, c.image.embed_dim, generator=g).cuda()
    query = torch.nn.functional.normalize(torch.randn(5, c.text.projection_dim, generator=g), dim=-1).cuda()
    weights = torch.rand(5, c.image.num_patches, generator=g).cuda()
    weights = weights / weights.sum(-1, keepdim=True)
    assert_close(fast.text_attention(query, tokens), eager.text_attention(query, tokens), 1e-5, "attention")
    assert_close(fast.grounding_condition(weights, tokens), eager.grounding_condition(weights, tokens), 1e-5,
                 "condition")
