"""All networks of one object-aware model, built from a ModelConfig by the libraries made for them."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..core.config import ModelConfig
from .encoders import ImageEncoder, TextEncoder
from .vocos import build_vocoder
from ..core.grounding import GroundingAttention
from ..core.gate import SilenceGate
from ..core.guidance import GuidanceEmbedding


def build_guidance_embedding(config: ModelConfig) -> GuidanceEmbedding | None:
    """The guidance embedding of a distilled model's UNet (None for a two-row model)."""
    d = config.distilled
    return None if d is None else GuidanceEmbedding(config.unet.cond_dim, d.embedding_dim, d.hidden_dim)


def build_silence_gate(config: ModelConfig) -> SilenceGate | None:
    """The silence gate of a model that has one (config.silence_gate), else None."""
    g = config.silence_gate
    return None if g is None else SilenceGate(config.unet.cond_dim, g.hidden_dim)


COMPONENTS = ("unet", "vae", "vocoder", "image_encoder", "text_encoder", "grounding")
DISTILLED_COMPONENTS = ("guidance_embedding",)     # a guidance-distilled UNet's (config.distilled)
GATE_COMPONENTS = ("silence_gate",)                # config.silence_gate's


def components(config: ModelConfig) -> tuple[str, ...]:
    """The weight files a model of `config` has: COMPONENTS, a distilled UNet's guidance embedding and
    the silence gate where the model has them."""
    return (COMPONENTS + (DISTILLED_COMPONENTS if config.distilled is not None else ())
            + (GATE_COMPONENTS if config.silence_gate is not None else ()))


@dataclass
class Calibration:
    """Statistics of the trained attention weights over P patches, used to rescale masks.

    attn_mean is 1/P for any softmax; attn_std is the per-sample std over patches averaged over
    `num_samples` training selections (0 samples: not calibrated, the 1/P placeholder is used).
    """
    attn_mean: float
    attn_std: float
    num_samples: int = 0

    @staticmethod
    def uncalibrated(num_patches: int) -> "Calibration":
        return Calibration(1.0 / num_patches, 1.0 / num_patches, 0)

    def to_dict(self) -> dict:
        return asdict(self)


class ObjaudioModel(nn.Module):
    def __init__(self, config: ModelConfig, unet: nn.Module | None = None, vae: nn.Module | None = None,
                 vocoder: nn.Module | None = None, image_encoder: ImageEncoder | None = None,
                 text_encoder: TextEncoder | None = None, grounding: GroundingAttention | None = None):
        super().__init__()
        self.config = config
        self.unet = unet if unet is not None else config.unet.build()
        self.vae = vae if vae is not None else config.vae.build()
        self.vocoder = vocoder if vocoder is not None else build_vocoder(config.vocoder)
        self.image_encoder = image_encoder if image_encoder is not None else ImageEncoder(config.image)
        self.text_encoder = text_encoder if text_encoder is not None else TextEncoder(config.text)
        self.grounding = grounding if grounding is not None else GroundingAttention(config.grounding)
        self.guidance_embedding = build_guidance_embedding(config)   # None: the UNet runs two rows a step
        self.silence_gate = build_silence_gate(config)               # None: every selection is generated
        self.register_buffer("null_condition", torch.zeros(config.unet.cond_dim), persistent=False)

    @classmethod
    def random(cls, config: ModelConfig, seed: int = 0) -> "ObjaudioModel":
        """Random weights, reproducible from `seed` (for tests, timing and as a training start)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(config).eval()

    def num_parameters(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in getattr(self, name).parameters()) for name in components(self.config)}


@dataclass
class GraphModel:
    """A checkpoint as a graph backend (ONNX Runtime, TensorRT) needs it: the config, the small
    grounding module and the weights' fingerprint, without building the networks its exported
    graphs replace, so neither diffusers, transformers nor open_clip is imported (checkpoint.load_graph_model).
    `folder` is where the whole model is loaded from when something asks for it (Pipeline.model)."""
    config: ModelConfig
    grounding: GroundingAttention
    fingerprint: str
    folder: str
    guidance_embedding: GuidanceEmbedding | None = None
    silence_gate: SilenceGate | None = None

    @property
    def null_condition(self) -> torch.Tensor:
        return torch.zeros(self.config.unet.cond_dim)              # ObjaudioModel's buffer
