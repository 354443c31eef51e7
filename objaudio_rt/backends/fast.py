"""The fast backend: per-network dtypes, SDPA attention, fused kernels, the guided loop as one CUDA graph.

Reference: `EagerBackend` (eager.py), which this subclasses and is held to by
tests/runtime/backends/test_fast.py. What changes on CUDA:

- per-network dtypes (`FastOptions`): the UNet and the VAE in fp16 by default, the vocoder fp32
  (benchmarks/precision.py: fp16 error vs float64 on the trained model, CPU: UNet 6.9e-4, VAE
  2.7e-4, vocoder 5.7e-3); the latent, the condition and the sampler arithmetic stay fp32
- grounding through the fused single-query kernel (kernels/grounding.py): the text attention
  and the pooled value vector `weights V` for the selections of one image
- attention through PyTorch SDPA (diffusers' `AttnProcessor2_0`), set explicitly
- the step is the fused kernel (kernels/sampler_step.guided_step): guidance and the update in one
  pass, reading the coefficient row and the guidance scale on the device
- the loop (denoise.guided_loop, the same one every backend runs) is captured as a CUDA graph per
  shapes, sampler, steps and schedule, in a bounded LRU cache (cuda_graph.py); single selections
  and composed unions alike, and any guidance value replays the same graph
- the UNet (and VAE) in channels_last with fused modules swapped in (objaudio_rt.backends.unet_patch:
  GroupNorm+SiLU with the time-embedding add in one Triton kernel, GEGLU in one kernel), the VAE
  in fp16 (its measured fp16 error: benchmarks/precision.py)
- the UNet from an AOTInductor package (objaudio_rt.backends.aoti, built by `python -m export.aoti`) when
  the cache holds one for this model, device, dtype and latent shape (`aoti`: None = when there
  is one, True = required, False = never); on a CPU this is the fast path (inductor's fused C++
  kernels and oneDNN calls), so a CPU fast run matches eager within a derived tolerance, not bit
  for bit, when a package is used
- optionally `torch.compile` for the UNet (`compile_unet`: measured by benchmarks `fast-compile`)

On a CPU the default options are the eager ones (fp32, no graph, no fused modules: off CUDA their
ops are the PyTorch references; the step is the reference) except two, each measured on this
project's 2-core CPU (training/README.md, "Fixed cost"):

- the vocoder as 2-D convolutions in channels_last (`vocoder_channels_last`,
  modelio.networks.HifiGan2d): the reference's arithmetic in another layout, 39 % less time;
- the VAE in bfloat16 where the CPU computes bfloat16 natively (AVX512-BF16 or AMX: `native_bf16`):
  half the VAE's time, and on 1,665 unseen selections the same object accuracy, leakage, silent
  accuracy and union recall as fp32. Elsewhere bfloat16 is emulated and slower, so fp32.

With both set off (and without a package) the fast backend's results on a CPU equal the eager
backend's bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .aoti import PackageCache
from ..modelio.artifacts import model_fingerprint
from ..core.errors import check
from ..kernels.grounding import fused_pooled_values
from ..modelio.model import ObjaudioModel
from ..modelio.networks import HifiGan2d
from ..core.samplers import as_dtype
from .unet_patch import patch_unet, to_channels_last
from .base import DTYPES, native_bf16
from .cuda_graph import CudaGraphCache
from .eager import EagerBackend
from .fused import fused_step


# Mel frames the channels_last vocoder takes at once on a CPU (4 clips of 2.56 s): tiny-synth's vocoder, 2 threads,
# 8 clips of 256 frames: 23.5 ms a clip in one call, 17.7-18.0 in pieces of 1, 2 or 4 clips.
VOCODER_FRAMES = 1024


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
    aoti_dir: str | None = None          # package folder (default: the cache, objaudio_rt.backends.aoti.package_dir)
    vocoder_channels_last: bool = False  # the vocoder as channels_last 2-D convolutions (HifiGan2d; a CPU's default)

    def __post_init__(self):
        for name in ("unet_dtype", "vae_dtype", "vocoder_dtype"):
            check(getattr(self, name) in DTYPES.values(),
                  f"{name} must be one of torch.float32/float16/bfloat16, got {getattr(self, name)}")
        check(self.graph_cache_size >= 1, f"graph_cache_size must be >= 1, got {self.graph_cache_size}")

    @staticmethod
    def default_for(device: torch.device, **changes) -> "FastOptions":
        """fp16 UNet and a graphed loop on CUDA; on a CPU the eager equivalents (fp32, no graph) but for
        the vocoder's layout and, where the CPU has native bfloat16, the VAE's dtype (the module
        docstring); `changes` override either."""
        base = {} if device.type == "cuda" else {
            "unet_dtype": torch.float32, "vae_dtype": torch.bfloat16 if native_bf16() else torch.float32,
            "cuda_graph": False, "fused_modules": False, "vocoder_channels_last": True}
        return FastOptions(**{**base, **changes})


class FastBackend(EagerBackend):
    name = "fast"

    def __init__(self, model: ObjaudioModel, device: torch.device, options: FastOptions | None = None):
        self.options = options if options is not None else FastOptions.default_for(device)
        fingerprint = model_fingerprint(model) if self.options.aoti is not False else None     # before any cast
        super().__init__(model, device, torch.float32, unet_dtype=self.options.unet_dtype,
                         vae_dtype=self.options.vae_dtype, vocoder_dtype=self.options.vocoder_dtype)
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.model.unet.set_attn_processor(AttnProcessor2_0())
        if self.options.fused_modules:
            for network in (self.model.unet, self.model.vae):
                patch_unet(network)
                to_channels_last(network)
        self.packages = None if fingerprint is None else PackageCache(
            fingerprint, device, self.unet_dtype, bool(self.options.aoti), self.options.aoti_dir)
        if self.options.vocoder_channels_last and self.model.config.vocoder.vocos is None:
            self.vocoder = HifiGan2d(self.model.vocoder, channels_last=True).eval()   # a Vocos is matrix products: as is
        if self.options.compile_unet:
            self.unet = torch.compile(self.unet)
        if device.type == "cuda" and self.options.cuda_graph:
            self.graphs = CudaGraphCache(device, self.options.graph_cache_size)

    @torch.no_grad()
    def text_attention(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The fused single-query softmax path (kernels/grounding.py) where it applies; else eager."""
        g = self.grounding
        if self.device.type != "cuda" or g.cfg.attention != "dot" or g.heads != 1:
            return super().text_attention(query, tokens)
        _, a = fused_pooled_values(g, tokens.float(), query=query.float())
        return a[:, None, :]                                               # (N, 1, P)

    @torch.no_grad()
    def grounding_condition(self, weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """c = MLP(weights V) with `weights V` from the fused pooled-value kernel on CUDA."""
        g = self.grounding
        if self.device.type != "cuda" or (weights.ndim == 3 and weights.shape[1] != 1):
            return super().grounding_condition(weights, tokens)
        o, _ = fused_pooled_values(g, tokens.float(), weights=weights.reshape(weights.shape[0], -1).float())
        return g.mlp(o)

    @torch.no_grad()
    def unet_eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The package for this input's shape if there is one; else the (patched, channels_last) module."""
        dt = self.unet_dtype
        x, cond = as_dtype(x, dt), as_dtype(cond, dt)
        package = self.packages.for_input(x) if self.packages is not None else None
        if package is not None:
            return package(x, t, cond)
        if self.options.fused_modules:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.unet(x, t, cond)

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, T, n_mels) -> (B, T * hop). The channels_last vocoder on a CPU takes whole clips in pieces of
        at most VOCODER_FRAMES frames: past that its activations leave the caches."""
        if not (isinstance(self.vocoder, HifiGan2d) and self.device.type == "cpu"):   # set only with vocoder_channels_last
            return super().vocode(mel)
        clips, vocode = max(1, VOCODER_FRAMES // mel.shape[1]), super().vocode
        return torch.cat([vocode(part) for part in mel.split(clips)])

    def step(self, tables, i, x, eps_pair, cfg, x0_prev):
        """The fused kernel on CUDA; the reference elsewhere."""
        if self.device.type != "cuda":
            return super().step(tables, i, x, eps_pair, cfg, x0_prev)
        return fused_step(tables, i, x, eps_pair, cfg, x0_prev)
