"""The eager backend: every network in plain PyTorch, the reference all other backends are held to.

Each network runs at its own dtype (`dtype` for all, or per network); the latent, the condition
and the sampler arithmetic stay float32, and grounding always runs in float32 (base.py).
"""
from __future__ import annotations

import torch
from torch import nn

from ..modelio.model import ObjaudioModel
from ..modelio.networks import UNetEps, VAEDecodeToMel
from ..core.samplers import as_dtype
from .base import Backend


class EagerBackend(Backend):
    name = "eager"

    def __init__(self, model: ObjaudioModel, device: torch.device, dtype: torch.dtype = torch.float32, *,
                 unet_dtype: torch.dtype | None = None, vae_dtype: torch.dtype | None = None,
                 vocoder_dtype: torch.dtype | None = None):
        self.model = model.to(device=device, dtype=dtype).eval()
        super().__init__(self.model, device)                      # grounding back to float32
        self.dtype = dtype                                        # the encoders'
        self.unet_dtype = unet_dtype or dtype
        self.vae_dtype = vae_dtype or dtype
        self.vocoder_dtype = vocoder_dtype or dtype
        for network, net_dtype in (("unet", self.unet_dtype), ("vae", self.vae_dtype), ("vocoder", self.vocoder_dtype)):
            if net_dtype != dtype:          # nn.Module.to: diffusers' own adds a "keep in float32" notice
                nn.Module.to(getattr(self.model, network), net_dtype)   # for modules these nets lack
        self.unet = UNetEps(self.model.unet)
        self.vae_to_mel = VAEDecodeToMel(self.model.vae)
        self.vocoder = self.model.vocoder

    @torch.no_grad()
    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.image_encoder(pixels.to(self.device, self.dtype)).float()

    @torch.no_grad()
    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.text_encoder(input_ids.to(self.device), attention_mask.to(self.device)).float()

    @torch.no_grad()
    def unet_eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(as_dtype(x, self.unet_dtype), t, as_dtype(cond, self.unet_dtype))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae_to_mel(z.float()).float()

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.vocoder(mel.to(self.vocoder_dtype)).float()
