"""The backend interface: what the pipeline and the denoising loop call, in one place.

A backend runs the networks; the pipeline above it (pipeline.py) and the guided loop
(denoise.py) are the same for every backend, and never branch on a backend's type:

    image_tokens         pixels (B, 3, S, S)            -> CLIP patch tokens (B, P, L) float32
    text_embeds          token ids, attention mask      -> CLAP text embeddings (B, Lq) float32
    text_attention       query (N, Lq), tokens (1, P, L) -> learned attention (N, H, P)
    grounding_condition  weights (B, [H,] P), tokens     -> condition c (B, cond_dim)
    unet_eps             x (N, C, H, W), t (1,), cond (N, cond_dim) -> noise prediction (N, C, H, W)
    step                 the guided sampler step (reference_step, or a fused kernel)
    decode               latent (B, C, H, W)            -> log-mel (B, T, n_mels) float32
    vocode               log-mel (B, T, n_mels)         -> waveform (B, T * hop) float32

plus `null_condition` (the unconditional input), `device`, and `graphs`: a CudaGraphCache when the
backend's loop is captured as a CUDA graph, else None.

Grounding is small (a few mat-vecs) and runs in PyTorch float32 in every backend (`self.grounding`);
its exported graphs serve hosts without PyTorch.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch

from ..core.config import ModelConfig
from ..modelio.model import GraphModel, ObjaudioModel
from ..core.gate import silent_rows
from ..core.options import DTYPE_NAMES
from ..core.samplers import reference_step
from .cuda_graph import CudaGraphCache

if TYPE_CHECKING:
    from ..core.samplers import DeviceTables

DTYPES = dict(zip(DTYPE_NAMES, (torch.float32, torch.float16, torch.bfloat16)))   # the names options use


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX tiles), where oneDNN runs a bf16
    convolution at about twice the fp32 rate; elsewhere it converts and is slower than fp32."""
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe is not None and probe() for probe in probes)


class Backend(ABC):
    name: ClassVar[str]
    graphs: CudaGraphCache | None = None

    def __init__(self, model: ObjaudioModel | GraphModel, device: torch.device):
        self.config: ModelConfig = model.config
        self.device = device
        self.grounding = model.grounding.to(device=device, dtype=torch.float32).eval()
        self.null_condition = model.null_condition.to(device=device, dtype=torch.float32)   # (cond_dim,)
        embed = getattr(model, "guidance_embedding", None)            # a guidance-distilled UNet's (one row a step)
        self.guidance_embedding = None if embed is None else embed.to(device=device, dtype=torch.float32).eval()
        gate = getattr(model, "silence_gate", None)                   # core/gate.py (None: no gate)
        self.silence_gate = None if gate is None else gate.to(device=device, dtype=torch.float32).eval()

    # ---- encoders -------------------------------------------------------------------------
    @abstractmethod
    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels: (B, 3, S, S) preprocessed. Returns (B, P, L) float32."""

    @abstractmethod
    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: (B, N) int64. Returns (B, Lq) float32, L2-normalised."""

    # ---- grounding ------------------------------------------------------------------------
    @torch.no_grad()
    def text_attention(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """query: (N, Lq) text embeddings; tokens: (1, P, L). Returns the learned attention (N, H, P)."""
        return self.grounding.attention(query.float(), tokens.float().expand(query.shape[0], -1, -1))

    @torch.no_grad()
    def grounding_condition(self, weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """weights: (B, P) or (B, H, P) replacing the attention; tokens: (1, P, L). Returns c (B, cond_dim)."""
        tokens = tokens.float().expand(weights.shape[0], -1, -1)
        return self.grounding.condition_from_weights(weights.float(), tokens)

    @torch.no_grad()
    def silent_rows(self, cond: torch.Tensor) -> list[bool]:
        """Per condition row (R, cond_dim): whether the model's silence gate calls it silent (core/gate.py;
        all False for a model without one)."""
        threshold = self.config.silence_gate.threshold if self.config.silence_gate is not None else 1.0
        return silent_rows(self.silence_gate, threshold, cond.float())

    # ---- the loop's two calls ---------------------------------------------------------------
    @abstractmethod
    def unet_eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) float32; t: (1,) int64 on the device; cond: (N, cond_dim). Returns eps (N, C, H, W)."""

    def step(self, tables: "DeviceTables", i: int, x: torch.Tensor, eps_pair: torch.Tensor, cfg: torch.Tensor,
             history: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Step i: x (B, C, H, W); eps_pair (2B, C, H, W), unconditional first; cfg (1,) float32; history:
        what step i - 1 returned (() at step 0). Returns (x_next, history'). The reference: the host
        plan's float64 row, plain PyTorch (samplers.reference_step)."""
        return reference_step(tables.plan.coef_rows[i], x, eps_pair, cfg, history)

    # ---- decoding -----------------------------------------------------------------------------
    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, C, T/4, n_mels/4) latent. Returns log-mel (B, T, n_mels) float32 (NaN guard included)."""

    @abstractmethod
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: (B, T, n_mels). Returns waveform (B, T * hop) float32."""

