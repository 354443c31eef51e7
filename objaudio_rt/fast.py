"""The fast backend: half-precision UNet, SDPA attention, and the guided denoising loop as one CUDA graph.

Reference: `EagerBackend` (backends.py), which this subclasses and is held to by
tests/runtime/test_fast_backend.py. What changes on CUDA:

- per-network dtypes (`FastOptions`): the UNet in fp16 by default; VAE and vocoder stay fp32
  unless chosen otherwise (their half-precision error is not measured yet); the latent, the
  condition and the sampler arithmetic stay fp32 throughout
- grounding through the fused single-query kernel (kernels/grounding.py): the text attention
  and the pooled value vector `weights V` for the selections of one image
- attention through PyTorch SDPA (diffusers' `AttnProcessor2_0`), set explicitly
- `device_loop`: the timestep and the sampler's coefficient row are read ON THE DEVICE at a
  device step counter, and each step's guidance + update is the fused kernel
  (kernels/sampler_step.guided_step), so the loop never syncs with the host
- that loop is captured once per (batch, latent shape, condition shape, sampler, steps, cfg,
  schedule) into a CUDA graph with static input/output buffers, kept in a small LRU cache;
  one `denoise` is then one graph replay
- the UNet (and VAE) in channels_last with fused modules swapped in (objaudio_rt.unet_patch:
  GroupNorm+SiLU with the time-embedding add in one Triton kernel, GEGLU in one kernel), the VAE
  in fp16 (its measured fp16 error: benchmarks/precision.py)
- the UNet from an AOTInductor package (objaudio_rt.aoti, built by `python -m export.aoti`) when
  the cache holds one for this model, device, dtype and latent shape (`aoti`: None = when there
  is one, True = required, False = never); on a CPU this is the fast path (inductor's fused C++
  kernels and oneDNN calls)
- optionally `torch.compile` for the UNet (`compile_unet`: measured by benchmarks `fast-compile`)

On a CPU the default options are otherwise the eager ones (fp32, no graph, no fused modules: off
CUDA their ops are the PyTorch references) and `denoise` is EagerBackend's: without a package the
results there equal the eager backend's bit for bit; with one, within the tolerance its tests derive.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .aoti import PackageCache
from .backends import EagerBackend
from .backends_onnx import model_fingerprint
from .errors import check
from .kernels.grounding import fused_pooled_values
from .kernels.sampler_step import guided_step, upload_coefs
from .model import ObjaudioModel
from .samplers import SamplerPlan
from .unet_patch import patch_unet, to_channels_last

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
WARMUP_STEPS = 3          # loop steps run on a side stream before capture (handles, Triton JIT, both kernel variants)


@dataclass(frozen=True)
class FastOptions:
    unet_dtype: torch.dtype = torch.float16
    vae_dtype: torch.dtype = torch.float16      # fp16 VAE error 2.7e-4 vs float64 (benchmarks/precision.py)
    vocoder_dtype: torch.dtype = torch.float32
    cuda_graph: bool = True              # capture the whole denoising loop (CUDA only)
    graph_cache_size: int = 4            # captured loops kept (LRU); each holds its own memory pool
    compile_unet: bool = False           # torch.compile the UNet (default mode; works inside the graph)
    fused_modules: bool = True           # UNet + VAE: fused GroupNorm/GEGLU modules, channels_last (unet_patch)
    aoti: bool | None = None             # AOTInductor UNet package: None = when the cache has one, True = required
    aoti_dir: str | None = None          # package folder (default: the cache, objaudio_rt.aoti.package_dir)

    def __post_init__(self):
        for name in ("unet_dtype", "vae_dtype", "vocoder_dtype"):
            check(getattr(self, name) in DTYPES.values(),
                  f"{name} must be one of torch.float32/float16/bfloat16, got {getattr(self, name)}")
        check(self.graph_cache_size >= 1, f"graph_cache_size must be >= 1, got {self.graph_cache_size}")

    @staticmethod
    def default_for(device: torch.device) -> "FastOptions":
        """fp16 UNet and a graphed loop on CUDA; on a CPU the eager equivalents (fp32, no graph)."""
        if device.type == "cuda":
            return FastOptions()
        return FastOptions(unet_dtype=torch.float32, vae_dtype=torch.float32, cuda_graph=False, fused_modules=False)


@dataclass
class DeviceTables:
    """A sampler plan on the device, indexed by a device step counter (no host sync per step)."""
    timesteps: torch.Tensor     # (S,) int64
    coefs: torch.Tensor         # (S, 5) float32: cx, ce, cp, dx, de
    step: torch.Tensor          # (1,) int64, the current step index

    @staticmethod
    def upload(plan: SamplerPlan, device: torch.device) -> "DeviceTables":
        return DeviceTables(plan.timesteps.to(device), upload_coefs(plan, device),
                            torch.zeros(1, dtype=torch.int64, device=device))


@dataclass
class GraphedLoop:
    """One captured denoising loop: copy inputs into `noise`/`cond`, replay, read `out`."""
    graph: "torch.cuda.CUDAGraph"
    noise: torch.Tensor         # (B, C, H, W) float32, static input
    cond: torch.Tensor          # (B, cond_dim) float32, static input
    out: torch.Tensor           # (B, C, H, W) float32, static output (in the graph's pool)
    tables: DeviceTables


class FastBackend(EagerBackend):
    name = "fast"

    def __init__(self, model: ObjaudioModel, device: torch.device, options: FastOptions | None = None):
        options = options if options is not None else FastOptions.default_for(device)
        fingerprint = model_fingerprint(model) if options.aoti is not False else None        # before any cast
        super().__init__(model, device, torch.float32)      # encoders and grounding stay fp32
        self.options = options
        from diffusers.models.attention_processor import AttnProcessor2_0

        unet = self.model.unet.to(self.options.unet_dtype)
        unet.set_attn_processor(AttnProcessor2_0())
        self.model.vae.to(self.options.vae_dtype)
        if self.options.fused_modules:
            for network in (unet, self.model.vae):
                patch_unet(network)
                to_channels_last(network)
        self.packages = None if fingerprint is None else PackageCache(
            fingerprint, self.device, self.options.unet_dtype, bool(self.options.aoti), self.options.aoti_dir)
        self.model.vocoder.to(self.options.vocoder_dtype)
        self._unet = torch.compile(unet) if self.options.compile_unet else unet
        self._graphs: OrderedDict[tuple, GraphedLoop] = OrderedDict()

    @property
    def uses_cuda_graph(self) -> bool:
        return self.device.type == "cuda" and self.options.cuda_graph

    @contextmanager
    def _compute_dtype(self, dtype: torch.dtype):
        """EagerBackend's decode/vocode cast their inputs to self.dtype: run one of them at its network's dtype."""
        saved, self.dtype = self.dtype, dtype
        try:
            yield
        finally:
            self.dtype = saved

    @torch.no_grad()
    def text_attention(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The fused single-query softmax path (kernels/grounding.py) where it applies; else eager."""
        g = self.model.grounding
        if self.device.type != "cuda" or g.cfg.attention != "dot" or g.heads != 1:
            return super().text_attention(query, tokens)
        _, a = fused_pooled_values(g, tokens.float(), query=query.float())
        return a[:, None, :]                                               # (N, 1, P)

    @torch.no_grad()
    def grounding_condition(self, weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """c = MLP(weights V) with `weights V` from the fused pooled-value kernel on CUDA."""
        g = self.model.grounding
        if self.device.type != "cuda" or (weights.ndim == 3 and weights.shape[1] != 1):
            return super().grounding_condition(weights, tokens)
        o, _ = fused_pooled_values(g, tokens.float(), weights=weights.reshape(weights.shape[0], -1).float())
        return g.mlp(o)

    @torch.no_grad()
    def unet_eps(self, x2: torch.Tensor, t: torch.Tensor, cond2: torch.Tensor) -> torch.Tensor:
        """x2: (2B, C, H, W); t: () or (1,) int64 on the device; cond2: (2B, cond_dim). Returns eps (2B, ...).

        The package for this input's shape if the cache has one; else the (patched, channels_last) module."""
        dt = self.options.unet_dtype
        x2, cond2 = x2.to(dt), cond2.to(dt)
        package = self.packages.for_input(x2) if self.packages is not None else None
        if package is not None:
            return package(x2, t, cond2)
        if self.options.fused_modules:
            x2 = x2.contiguous(memory_format=torch.channels_last)
        return self._unet(x2, t, encoder_hidden_states=None, class_labels=cond2).sample

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        with self._compute_dtype(self.options.vae_dtype):
            return super().decode(z)

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        with self._compute_dtype(self.options.vocoder_dtype):
            return super().vocode(mel)

    @torch.no_grad()
    def device_loop(self, x: torch.Tensor, cond: torch.Tensor, tables: DeviceTables, plan: SamplerPlan,
                    cfg: float, steps: int | None = None) -> torch.Tensor:
        """The guided denoising loop with no host sync: graph-capturable. Same function as EagerBackend.denoise.

        x: (B, C, H, W) float32 noise; cond: (B, cond_dim). Runs the first `steps` steps (all by
        default) and returns the latent (B, C, H, W) float32. Only the host-side plan decides,
        per step, whether the history term is read (DPM++'s cp != 0), as reference_step does.
        """
        null = self.model.null_condition.to(cond.dtype).expand_as(cond)
        cond2 = torch.cat([null, cond])                                    # (2B, cond_dim), unconditional first
        tables.step.zero_()
        x0 = None
        for i in range(plan.steps if steps is None else steps):
            t = tables.timesteps.index_select(0, tables.step)              # (1,) int64, read on the device
            eps2 = self.unet_eps(torch.cat([x, x]), t, cond2)             # (2B, C, H, W) in the UNet's dtype
            x, x0 = guided_step(tables.coefs, tables.step, x, eps2, cfg, x0 if float(plan.coefs[i, 2]) else None)
            tables.step.add_(1)
        return x

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, cond: torch.Tensor, plan: SamplerPlan, cfg: float,
                progress: bool = True) -> torch.Tensor:
        """x: (B, C, H, W) noise; cond: (B, cond_dim). Returns the final latent (B, C, H, W) in x's dtype."""
        if self.device.type != "cuda":
            return super().denoise(x, cond, plan, cfg, progress)
        dtype = x.dtype
        x, cond = x.to(self.device, torch.float32), cond.to(self.device, torch.float32)
        if not self.options.cuda_graph:
            return self.device_loop(x, cond, DeviceTables.upload(plan, self.device), plan, cfg).to(dtype)
        loop = self._graphed_loop(x.shape, cond.shape, plan, cfg)
        loop.noise.copy_(x)
        loop.cond.copy_(cond)
        loop.graph.replay()
        return loop.out.to(dtype, copy=True)          # a copy: the next replay overwrites loop.out

    def _graphed_loop(self, shape: torch.Size, cond_shape: torch.Size, plan: SamplerPlan, cfg: float) -> GraphedLoop:
        schedule = hashlib.blake2b(plan.timesteps.numpy().tobytes() + plan.coefs.numpy().tobytes(),
                                   digest_size=16).hexdigest()
        key = (tuple(shape), tuple(cond_shape), plan.sampler, plan.steps, float(cfg), schedule)
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        if len(self._graphs) >= self.options.graph_cache_size:
            self._graphs.popitem(last=False)                               # frees that graph's pool
        self._graphs[key] = self._capture(shape, cond_shape, plan, cfg)
        return self._graphs[key]

    def graphed_loops(self) -> int:
        """How many captured loops the cache holds."""
        return len(self._graphs)

    def _capture(self, shape: torch.Size, cond_shape: torch.Size, plan: SamplerPlan, cfg: float) -> GraphedLoop:
        """Warm up on a side stream, then capture the whole loop (torch.cuda.graphs' documented recipe)."""
        dev = self.device
        tables = DeviceTables.upload(plan, dev)
        noise = torch.randn(shape, device=dev)                             # real data for the warm-up, not zeros
        cond = torch.randn(cond_shape, device=dev)
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            self.device_loop(noise, cond, tables, plan, cfg, steps=min(plan.steps, WARMUP_STEPS))
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self.device_loop(noise, cond, tables, plan, cfg)
        return GraphedLoop(graph, noise, cond, out, tables)
