"""The fast backend against its reference, the eager backend.

CPU: the fast backend's defaults there are the eager paths (bit-for-bit equal results), and its
device-indexed loop (the one the CUDA graph captures) equals the eager loop run on the same
float32 coefficient table. CUDA (tests named *cuda*, run by benchmarks/gpu_check.sh): the graphed
loop equals the un-graphed one, fresh inputs replay correctly, the cache evicts, and a
half-precision fast run stays within twice the error of the eager backend in that precision.
"""
import copy

import numpy as np
import pytest
import torch

from objaudio_rt.backends import EagerBackend
from objaudio_rt.config import ModelConfig
from objaudio_rt.fast import DeviceTables, FastBackend, FastOptions
from objaudio_rt.model import Calibration, ObjaudioModel
from objaudio_rt.pipeline import Pipeline
from objaudio_rt.samplers import SamplerPlan
from objaudio_rt.selection import Mask

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


def float32_table(plan: SamplerPlan) -> SamplerPlan:
    """The plan with its coefficients rounded to float32, as the device table holds them."""
    return SamplerPlan(plan.sampler, plan.timesteps, plan.coefs.float().double())


# ---- CPU ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_fast_on_cpu_equals_eager_bit_for_bit(tiny, sampler, steps):
    eager = EagerBackend(copy.deepcopy(tiny), torch.device("cpu"))
    fast = FastBackend(copy.deepcopy(tiny), torch.device("cpu"))
    plan = SamplerPlan.build(sampler, steps, tiny.config.schedule)
    x, cond = inputs(tiny, 2, seed=11)
    z_e = eager.denoise(x, cond, plan, CFG, progress=False)
    z_f = fast.denoise(x, cond, plan, CFG, progress=False)
    assert torch.equal(z_f, z_e)
    mel = eager.decode(z_e)
    assert torch.equal(fast.decode(z_e), mel)
    assert torch.equal(fast.vocode(mel), eager.vocode(mel))


def test_fast_composed_on_cpu_equals_eager_bit_for_bit(tiny):
    eager = EagerBackend(copy.deepcopy(tiny), torch.device("cpu"))
    fast = FastBackend(copy.deepcopy(tiny), torch.device("cpu"))
    plan = SamplerPlan.build("dpmpp", 4, tiny.config.schedule)
    x, _ = inputs(tiny, 2, seed=13)
    _, conds = inputs(tiny, 3, seed=14)
    owner, weights = torch.tensor([0, 1, 1]), torch.tensor([1.0, 0.5, 0.5])
    assert torch.equal(fast.denoise_composed(x, conds, owner, weights, plan, CFG, progress=False),
                       eager.denoise_composed(x, conds, owner, weights, plan, CFG, progress=False))


def test_fast_pipeline_on_cpu_equals_eager():
    waves = {}
    for name in ("eager", "fast"):
        pipe = Pipeline.from_pretrained("random:tiny", device="cpu", backend=name, seed=5)
        scene = pipe.encode_image(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
        mask = np.zeros((40, 56), np.float32)
        mask[5:30, 10:40] = 1
        waves[name] = pipe.generate(scene, Mask(mask), steps=3, sampler="dpmpp", seed=2, progress=False)
    assert torch.equal(waves["fast"], waves["eager"])


@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_device_loop_equals_eager_loop_on_the_same_table(tiny, sampler, steps):
    """The loop the CUDA graph captures, run on the CPU (no graph): device step counter, device
    timestep and coefficient reads, the fused step's reference fallback (or its Triton interpreter)."""
    eager = EagerBackend(copy.deepcopy(tiny), torch.device("cpu"))
    fast = FastBackend(copy.deepcopy(tiny), torch.device("cpu"))
    plan = SamplerPlan.build(sampler, steps, tiny.config.schedule)
    x, cond = inputs(tiny, 3, seed=12)
    tables = DeviceTables.upload(plan, torch.device("cpu"))
    out = fast.device_loop(x, cond, tables, plan, CFG)
    assert tables.step.item() == steps
    ref32 = eager.denoise(x, cond, float32_table(plan), CFG, progress=False)
    assert_close(out, ref32, 1e-6, "device loop vs eager loop, same float32 table")
    ref64 = eager.denoise(x, cond, plan, CFG, progress=False)
    assert_close(out, ref64, 1e-4, "device loop (float32 table) vs eager loop (float64 table)")


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
        out = graphed.denoise(x, cond, plan, CFG, progress=False)
        ref = plain.denoise(x, cond, plan, CFG, progress=False)
        assert_close(out, ref, 1e-5, f"graph replay vs device loop (seed {seed})")
    assert graphed.graphed_loops() == 1


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
def test_cuda_composed_union_fast_matches_eager(tiny):
    """A composed union runs the host loop through the fast backend's own UNet (fp32 here)."""
    fast = cuda_backends(tiny, unet_dtype=torch.float32)
    eager = EagerBackend(copy.deepcopy(tiny), torch.device("cuda"))
    plan = SamplerPlan.build("dpmpp", 5, tiny.config.schedule)
    x, _ = inputs(tiny, 2, seed=37, device="cuda")
    _, conds = inputs(tiny, 3, seed=38, device="cuda")
    owner, weights = torch.tensor([0, 1, 1]), torch.tensor([1.0, 0.5, 0.5])
    ref = eager.denoise_composed(x, conds, owner, weights, plan, CFG, progress=False)
    out = fast.denoise_composed(x, conds, owner, weights, plan, CFG, progress=False)
    assert_close(out, ref, 1e-5, "fast composed vs eager composed")


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_cuda_fp32_fast_matches_eager(tiny, sampler, steps):
    """fp32 everywhere: the graphed fused loop computes the eager function (float32 table, SDPA on both)."""
    fast = cuda_backends(tiny, unet_dtype=torch.float32)
    eager = EagerBackend(copy.deepcopy(tiny), torch.device("cuda"))
    plan = SamplerPlan.build(sampler, steps, tiny.config.schedule)
    x, cond = inputs(tiny, 2, seed=31, device="cuda")
    ref = eager.denoise(x, cond, float32_table(plan), CFG, progress=False)
    assert_close(fast.denoise(x, cond, plan, CFG, progress=False), ref, 1e-5, "fast fp32 vs eager fp32")


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("sampler,steps", SAMPLERS)
def test_cuda_half_unet_within_twice_eager_half_error(tiny, dtype, sampler, steps):
    """Tolerance from the reference's own error: eager with the model in `dtype` vs eager fp32."""
    plan = SamplerPlan.build(sampler, steps, tiny.config.schedule)
    x, cond = inputs(tiny, 2, seed=41, device="cuda")
    ref = EagerBackend(copy.deepcopy(tiny), torch.device("cuda")).denoise(x, cond, plan, CFG, progress=False)
    half = EagerBackend(copy.deepcopy(tiny), torch.device("cuda"), dtype).denoise(x, cond, plan, CFG, progress=False)
    fast = cuda_backends(tiny, unet_dtype=dtype).denoise(x, cond, plan, CFG, progress=False)
    ref_err = rel_err(half, ref)
    assert_close(fast, ref, 2 * ref_err + 1e-6, f"fast {dtype} vs eager fp32 (eager {dtype} error {ref_err:.2e})")


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
def test_cuda_graph_cache_is_lru(tiny):
    fast = cuda_backends(tiny, unet_dtype=torch.float32, graph_cache_size=2)
    x, cond = inputs(tiny, 1, seed=51, device="cuda")
    ddim = SamplerPlan.build("ddim", 3, tiny.config.schedule)
    dpm = SamplerPlan.build("dpmpp", 3, tiny.config.schedule)
    first = fast.denoise(x, cond, ddim, CFG, progress=False)
    fast.denoise(x, cond, ddim, CFG + 1, progress=False)          # cfg is part of the key
    assert fast.graphed_loops() == 2
    fast.denoise(x, cond, dpm, CFG, progress=False)               # evicts (ddim, CFG)
    assert fast.graphed_loops() == 2
    assert torch.equal(fast.denoise(x, cond, ddim, CFG, progress=False), first)   # recaptured, same result


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
def test_cuda_fast_pipeline_end_to_end(tiny):
    """The whole pipeline: fp16 UNet graphed loop, fp32 VAE and vocoder, vs eager fp32 and eager fp16."""
    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), np.float32)
    mask[10:40, 5:30] = 1
    calibration = Calibration.uncalibrated(tiny.config.image.num_patches)
    pipes = {name: Pipeline(copy.deepcopy(tiny), calibration, "cuda", backend=name) for name in ("eager", "fast")}
    pipes["eager-fp16"] = Pipeline(copy.deepcopy(tiny), calibration, "cuda", backend="eager")
    pipes["eager-fp16"].backend = EagerBackend(pipes["eager-fp16"].model, torch.device("cuda"), torch.float16)
    pipes["eager-fp16"].model.grounding.float()          # Pipeline.condition feeds it float32
    waves = {name: p.generate(p.encode_image(image), Mask(mask), steps=8, sampler="ddim", seed=4, progress=False)
             for name, p in pipes.items()}
    assert pipes["fast"].backend.graphed_loops() == 1
    ref_err = rel_err(waves["eager-fp16"], waves["eager"])
    assert_close(waves["fast"], waves["eager"], 2 * ref_err + 1e-6,
                 f"fast vs eager fp32 wave (eager fp16 error {ref_err:.2e})")


@needs_cuda
@pytest.mark.usefixtures("no_tf32")
def test_cuda_compiled_unet_matches(tiny):
    """compile_unet (off by default): the compiled UNet inside the graph computes the same function."""
    plan = SamplerPlan.build("dpmpp", 4, tiny.config.schedule)
    x, cond = inputs(tiny, 2, seed=61, device="cuda")
    ref = cuda_backends(tiny, unet_dtype=torch.float32).denoise(x, cond, plan, CFG, progress=False)
    out = cuda_backends(tiny, unet_dtype=torch.float32, compile_unet=True).denoise(x, cond, plan, CFG, progress=False)
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
