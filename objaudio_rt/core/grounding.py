"""Text-guided visual object grounding (the paper's section 3.2) and test-time mask selection.

With patch tokens E_v (B, P, L), learnable positional encoding PE (P, L) and X = E_v + PE:

    Q = E_t W_Q,  K = X W_K,  V = X W_V,  a = softmax(Q K^T / sqrt(d_k)),  c = MLP(a V)

At test time the softmax weights a are replaced by a mask m (section 3.3), `c = MLP(m V)`.
K and V have no bias: a bias on K is constant across patches and cancels in the softmax, and
without one on V the output stays linear in the weights, `m V = (m X) W_V`, which the theorem
and the fused kernel (kernels/grounding.py) rely on.

Mask rescaling (`rescale_patch_weights`, the formula the README documents):
    p = r / sum(r)                       r: the mask's area coverage of each patch, in [0, 1]
    s = min(sigma / std(p), s_max)       sigma: std of the attention weights over patches,
                                         averaged over the calibration set (stored in the checkpoint)
    s_max = (1/P) / (1/P - min(p))       the largest s that keeps every weight >= 0
    m = 1/P + s * (p - 1/P)
The mean of m is 1/P, exactly the mean of any softmax over P patches; its standard deviation
is sigma when that is reachable without negative weights, else the largest that is (then m
is exactly zero outside the mask). A full-image mask gives the uniform 1/P.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GroundingConfig
from .errors import ObjaudioError, check


class GroundingAttention(nn.Module):
    def __init__(self, cfg: GroundingConfig):
        super().__init__()
        self.cfg = cfg
        self.pe = nn.Parameter(torch.randn(cfg.num_patches, cfg.token_dim) * 0.02)   # (P, L)
        self.w_q = nn.Linear(cfg.query_dim, cfg.key_dim)
        self.w_k = nn.Linear(cfg.token_dim, cfg.key_dim, bias=cfg.attention == "additive")
        self.w_v = nn.Linear(cfg.token_dim, cfg.value_dim, bias=False)
        if cfg.attention == "additive":
            self.score = nn.Linear(cfg.key_dim, 1, bias=False)
        self.mlp = nn.Sequential(nn.Linear(cfg.value_dim, cfg.mlp_hidden), nn.GELU(),
                                 nn.Linear(cfg.mlp_hidden, cfg.cond_dim))

    @property
    def heads(self) -> int:
        return self.cfg.num_heads

    def attention(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """query: (B, Lq) text embedding; tokens: (B, P, L). Returns weights (B, H, P), rows sum to 1."""
        x = tokens + self.pe                                          # (B, P, L)
        q = self.w_q(query)                                           # (B, dk)
        k = self.w_k(x)                                               # (B, P, dk)
        b, p, _ = k.shape
        if self.cfg.attention == "additive":
            scores = self.score(torch.tanh(k + q[:, None, :])).squeeze(-1)[:, None, :]   # (B, 1, P)
        else:
            h, dh = self.heads, self.cfg.key_dim // self.heads
            qh = q.view(b, h, 1, dh)
            kh = k.view(b, p, h, dh).transpose(1, 2)                  # (B, H, P, dh)
            scores = (qh @ kh.transpose(-1, -2)).squeeze(-2) / math.sqrt(dh)   # (B, H, P)
        return scores.softmax(dim=-1)

    def pooled_values(self, weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """weights: (B, P) or (B, H, P); tokens: (B, P, L). Returns o = weights @ V, (B, d_v)."""
        x = tokens + self.pe
        if weights.ndim == 2:
            weights = weights[:, None, :].expand(-1, self.heads, -1)
        b, h, p = weights.shape
        pooled = weights @ x                                          # (B, H, L): (a X), the O(P L) part
        wv = self.w_v.weight.view(h, self.cfg.value_dim // h, -1)     # (H, dv/H, L)
        return torch.einsum("bhl,hdl->bhd", pooled, wv).reshape(b, -1)

    def condition_from_weights(self, weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """c = MLP(weights V): (B, cond_dim). Used with attention weights or a rescaled mask."""
        return self.mlp(self.pooled_values(weights, tokens))

    def forward(self, query: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training path. Returns (condition (B, cond_dim), attention weights (B, H, P))."""
        a = self.attention(query, tokens)
        return self.condition_from_weights(a, tokens), a


def mask_to_patch_coverage(mask: torch.Tensor, image_size: int, patch_size: int) -> torch.Tensor:
    """Area coverage of each patch by a mask.

    mask: (B, H, W) in [0, 1] at the image's own resolution. The image encoder resizes the whole
    image (no crop) to image_size x image_size, so the mask is resized the same way (area
    interpolation), then averaged over each patch. Returns (B, P), row-major patch order.
    """
    check(mask.ndim == 3, f"mask batch must be (B, H, W), got {tuple(mask.shape)}")
    m = F.interpolate(mask.float()[:, None], size=(image_size, image_size), mode="area")
    return F.avg_pool2d(m, patch_size).flatten(1)


def rescale_patch_weights(coverage: torch.Tensor, attn_std: float, mode: str = "moments") -> torch.Tensor:
    """Turn patch coverage (B, P) into attention-like weights (B, P); see the module docstring."""
    check(bool(torch.isfinite(coverage).all()), "mask contains NaN or inf")
    total = coverage.sum(dim=-1, keepdim=True)
    if bool((total <= 0).any()):
        raise ObjaudioError("the selection is empty: the mask covers no part of the image "
                            "(draw a larger mask, or move the point or box onto an object)")
    p = coverage / total
    if mode == "sum":
        return p
    n = p.shape[-1]
    mean = 1.0 / n
    std = p.std(dim=-1, unbiased=False, keepdim=True)
    s_max = mean / (mean - p.amin(dim=-1, keepdim=True)).clamp_min(1e-12)
    s = torch.where(std > 1e-12, attn_std / std.clamp_min(1e-12), torch.ones_like(std))
    s = torch.minimum(s, s_max)
    return mean + s * (p - mean)
