"""What every exported-graph backend (ONNX Runtime, TensorRT) shares: the networks through `run`.

A graph backend loads only what it runs: the exported graphs of the five networks the pipeline
calls, and the small PyTorch grounding module (base.py). It takes a model.GraphModel (the config,
grounding and fingerprint of a checkpoint, no network built) or a whole ObjaudioModel, whose
PyTorch networks then stay where the caller left them. All tensors cross `run` as float32 (int64 for ids, masks and timesteps),
whatever precision the graph computes in: fp16 graphs keep float32 inputs and outputs.
"""
from __future__ import annotations

from abc import abstractmethod

import torch

from ..modelio.artifacts import model_fingerprint
from ..modelio.model import GraphModel, ObjaudioModel
from .base import Backend


class GraphBackend(Backend):
    def __init__(self, model: ObjaudioModel | GraphModel, device: torch.device):
        super().__init__(model, device)
        self.fingerprint = model_fingerprint(model)

    @abstractmethod
    def run(self, network: str, *inputs: torch.Tensor) -> torch.Tensor:
        """Run one exported network on `inputs` (on the device); returns its first output, float32."""

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.run("image_encoder", pixels.to(self.device, torch.float32))

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.run("text_encoder", input_ids.to(self.device), attention_mask.to(self.device))

    def unet_eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.run("unet", x.float(), t.reshape(1).to(self.device, torch.int64), cond.float())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The graph is networks.VAEDecodeToMel: NaN guard, / scaling_factor, decode, squeeze."""
        return self.run("vae_decoder", z.float())

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.run("vocoder", mel.float())
