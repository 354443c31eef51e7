"""Backends run the networks; the pipeline above them is the same for all.

`EagerBackend` is the plain PyTorch reference every other backend is held to. A backend
provides: image_tokens, text_embeds, text_attention, grounding_condition, unet_eps, decode and
vocode; the denoising loop (`denoise`) is shared and only overridden where a backend fuses or
graphs it. The grounding module is small and always runs in float32.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .errors import check
from .model import ObjaudioModel
from .samplers import SamplerPlan, reference_step


class EagerBackend:
    name = "eager"

    def __init__(self, model: ObjaudioModel, device: torch.device, dtype: torch.dtype = torch.float32):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.model.grounding.float()
        self.device, self.dtype = device, dtype

    @torch.no_grad()
    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels: (B, 3, S, S) preprocessed. Returns (B, P, L) float32."""
        return self.model.image_encoder(pixels.to(self.device, self.dtype)).float()

    @torch.no_grad()
    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.text_encoder(input_ids.to(self.device), attention_mask.to(self.device)).float()

    @torch.no_grad()
    def text_attention(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """query: (N, Lq) text embeddings; tokens: (1, P, L). Returns the learned attention (N, H, P)."""
        return self.model.grounding.attention(query.float(), tokens.float().expand(query.shape[0], -1, -1))

    @torch.no_grad()
    def grounding_condition(self, weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """weights: (B, P) or (B, H, P) replacing the attention; tokens: (1, P, L). Returns c (B, cond_dim)."""
        tokens = tokens.float().expand(weights.shape[0], -1, -1)
        return self.model.grounding.condition_from_weights(weights.float(), tokens)

    @torch.no_grad()
    def unet_eps(self, x2: torch.Tensor, t: torch.Tensor, cond2: torch.Tensor) -> torch.Tensor:
        """x2: (2B, C, H, W), t: () int64, cond2: (2B, cond_dim). Returns eps (2B, C, H, W)."""
        return self.model.unet(x2.to(self.dtype), t, encoder_hidden_states=None,
                               class_labels=cond2.to(self.dtype)).sample

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, cond: torch.Tensor, plan: SamplerPlan, cfg: float,
                progress: bool = True) -> torch.Tensor:
        """x: (B, C, H, W) initial noise; cond: (B, cond_dim). Returns the final latent (B, C, H, W)."""
        null = self.model.null_condition.to(cond.dtype).expand_as(cond)
        cond2 = torch.cat([null, cond])                                   # unconditional half first
        timesteps = plan.timesteps.to(self.device)
        x0 = None
        for i in tqdm(range(plan.steps), desc=f"denoise ({plan.sampler})", disable=not progress, leave=False):
            eps2 = self.unet_eps(torch.cat([x, x]), timesteps[i], cond2)
            x, x0 = reference_step(plan.coefs[i], x, eps2, cfg, x0)
        return x

    @torch.no_grad()
    def denoise_composed(self, x: torch.Tensor, conds: torch.Tensor, owner: torch.Tensor, weights: torch.Tensor,
                         plan: SamplerPlan, cfg: float, progress: bool = True) -> torch.Tensor:
        """Items conditioned on several parts each (a composed union; composable guidance).

        x: (B, C, H, W) noise; conds: (R, cond_dim), one row per part; owner: (R,) int64, the item
        each row belongs to (every item has at least one); weights: (R,) >= 0, summing to 1 per
        item. Per step the UNet runs on the B unconditional rows and the R part rows, and

            eps_c(b) = sum over rows r of item b of w_r eps(x_b, c_r),   eps = eps_u + cfg * (eps_c - eps_u)

        i.e. an item's guidance direction is the weighted mean of its parts' directions. With one
        row per item and weight 1 this is `denoise` exactly. Every backend runs this host loop
        through its own `unet_eps` (the graphed loops cover one condition per item only).
        """
        b = x.shape[0]
        check(conds.ndim == 2 and owner.shape == weights.shape == conds.shape[:1],
              f"conds must be (R, cond_dim) with owner and weights (R,), got {tuple(conds.shape)}, "
              f"{tuple(owner.shape)} and {tuple(weights.shape)}")
        owner = owner.to(torch.int64).cpu()
        check(bool(((owner >= 0) & (owner < b)).all()) and torch.unique(owner).numel() == b,
              f"owner must name each of the {b} items at least once")
        total = torch.zeros(b, dtype=torch.float64).index_add_(0, owner, weights.double().cpu())
        check(bool((weights >= 0).all()) and bool(torch.allclose(total, torch.ones(b, dtype=torch.float64), atol=1e-5)),
              "composition weights must be non-negative and sum to 1 per item")
        owner = owner.to(self.device)
        cond_rows = torch.cat([self.model.null_condition.to(conds.dtype).expand(b, -1), conds])      # (B + R, cond)
        w = weights.to(self.device, torch.float32).view(-1, *([1] * (x.ndim - 1)))
        timesteps = plan.timesteps.to(self.device)
        x0 = None
        for i in tqdm(range(plan.steps), desc=f"denoise ({plan.sampler}, composed)", disable=not progress,
                      leave=False):
            eps = self.unet_eps(torch.cat([x, x.index_select(0, owner)]), timesteps[i], cond_rows).float()
            eps_c = torch.zeros_like(eps[:b]).index_add_(0, owner, eps[b:] * w)
            x, x0 = reference_step(plan.coefs[i], x, torch.cat([eps[:b], eps_c]), cfg, x0)
        return x

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, C, T/4, n_mels/4) latent. Returns log-mel (B, T, n_mels) float32."""
        vae = self.model.vae
        z = z.float()
        if z.abs().max() > 100:          # AudioLDM's NaN guard for long clips
            z = z.clamp(-10, 10)
        mel = vae.decode((z / vae.config.scaling_factor).to(self.dtype)).sample
        return mel.squeeze(1).float()

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: (B, T, n_mels). Returns waveform (B, T * hop) float32."""
        return self.model.vocoder(mel.to(self.dtype)).float()
