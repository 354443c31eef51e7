"""Guidance beyond classifier-free guidance's plain update: adaptive projected guidance, and the
guidance-scale embedding of a guidance-distilled UNet.

Adaptive projected guidance (APG; Sadat et al., 2024, "Eliminating oversaturation and artifacts of
high guidance scales in diffusion models"), a replacement for classifier-free guidance's update.

Classifier-free guidance moves the data prediction x0 from the conditional one by (cfg - 1) times the
guidance direction D = x0_c - x0_u. APG splits D, per item, into its part parallel to x0_c and the part
orthogonal to it, and keeps only `eta` of the parallel part (the part that mostly raises saturation
and level), after capping D's norm at `norm_threshold`:

    x0 = x0_c + (cfg - 1) (D_orth + eta D_par)

and turns x0 back into the eps the samplers read (x0 = dx x + de eps: the step's row, samplers.py). With
eta = 1 and no cap it is classifier-free guidance exactly (tested). It costs no extra network call.

A guidance-distilled UNet (config.DistilledConfig, training/distill.py) takes the scale as an input:
`GuidanceEmbedding(w)` (sinusoidal features of w, as diffusers' LCM pipelines embed it, then a small MLP
whose last layer starts at zero) is added to each condition row, and the UNet's one row per step
predicts the teacher's eps_u + w (eps_c - eps_u) (denoise.guided_loop's one-row path).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .errors import check


@dataclass(frozen=True)
class APG:
    eta: float = 0.0                # the share of D's part parallel to x0_c that is kept
    norm_threshold: float = 0.0     # D's norm is capped at this (0: no cap)

    def __post_init__(self):
        check(math.isfinite(self.eta) and 0.0 <= self.eta <= 1.0, f"APG eta must be in [0, 1], got {self.eta}")
        check(math.isfinite(self.norm_threshold) and self.norm_threshold >= 0.0,
              f"APG norm threshold must be >= 0 (0: none), got {self.norm_threshold}")

    def label(self) -> str:
        return f"apg(eta={self.eta:g},r={self.norm_threshold:g})"

    def eps(self, row: list[float], x: torch.Tensor, eps_pair: torch.Tensor, cfg: torch.Tensor) -> torch.Tensor:
        """The guided eps (B, ...) float32 of one step: row, the step's coefficients (cx, ce, c_1..c_K, dx, de);
        x (B, ...); eps_pair (2B, ...) unconditional first; cfg a (1,) or (B,) tensor."""
        k = len(row) - 4
        dx, de = row[k + 2], row[k + 3]
        eps_u, eps_c = eps_pair.float().chunk(2)
        xf = x.float()
        dims = tuple(range(1, xf.ndim))

        def norm(t: torch.Tensor) -> torch.Tensor:                         # per item, over all its values
            return t.square().sum(dim=dims, keepdim=True).sqrt()
        x0_c = dx * xf + de * eps_c
        d = de * (eps_c - eps_u)                                            # x0_c - x0_u
        if self.norm_threshold > 0:
            d = d * (self.norm_threshold / norm(d).clamp_min(1e-12)).clamp(max=1.0)
        unit = x0_c / norm(x0_c).clamp_min(1e-12)
        par = (d * unit).sum(dim=dims, keepdim=True) * unit
        w = cfg.float().view(-1, *([1] * (xf.ndim - 1)))
        x0 = x0_c + (w - 1.0) * (d - par + self.eta * par)
        return (x0 - dx * xf) / de


class GuidanceEmbedding(nn.Module):
    """w (N,) -> (N, cond_dim): added to a guidance-distilled UNet's condition rows. Zero at
    initialisation (the last layer starts at zero), so a student starts as its teacher's conditional
    prediction."""

    def __init__(self, cond_dim: int, embedding_dim: int = 64, hidden_dim: int = 256):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.mlp = nn.Sequential(nn.Linear(embedding_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, cond_dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def features(self, w: torch.Tensor) -> torch.Tensor:
        """Sinusoidal features (N, embedding_dim) of w * 1000 (the LCM pipelines' guidance embedding)."""
        half = self.embedding_dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=w.device)
                          * (-math.log(10000.0) / max(1, half - 1)))
        arg = w.float().reshape(-1, 1) * 1000.0 * freqs[None]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(w).to(self.mlp[0].weight.dtype))
