"""The network wrappers: the exact computation the runtime calls, and what `export/` exports.

Each wrapper gives one network the inputs and outputs the pipeline feeds and reads. The eager and
fast backends run them; `export.contracts` exports the same modules, so an exported graph and the
PyTorch path cannot drift apart.
"""
from __future__ import annotations

import torch
from torch import nn

NAN_GUARD = 100.0         # AudioLDM: latents with |z| above this are clamped to +-CLAMP before decoding
CLAMP = 10.0


class UNetEps(nn.Module):
    """The noise prediction with the grounding condition as AudioLDM's class label (FiLM)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        # sample: (N, C, H, W); timestep: () or (1,) int64; class_labels: (N, cond_dim) -> eps (N, C, H, W)
        return self.unet(sample, timestep, encoder_hidden_states=None, class_labels=class_labels).sample


class VAEDecodeToMel(nn.Module):
    """Latent -> log-mel: AudioLDM's NaN guard (on the device, no host sync), / scaling_factor, decode."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        # latent: (B, C, H, W) float32 -> mel (B, 4H, n_mels) in the VAE's dtype
        z = torch.where(latent.abs().amax() > NAN_GUARD, latent.clamp(-CLAMP, CLAMP), latent)
        return self.vae.decode((z / self.vae.config.scaling_factor).to(self.vae.dtype)).sample.squeeze(1)
