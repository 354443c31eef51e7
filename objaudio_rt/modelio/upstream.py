"""Assembling a model from upstream weights a user downloaded.

- AudioLDM in diffusers layout: unet/, vae/, vocoder/, text_encoder/, tokenizer/ (e.g. cvssp/audioldm-s-full-v2).
- open_clip ViT-B/32 state dict: a .pt/.bin/.pth read with torch.load(weights_only=True), or .safetensors;
  a bare state dict or one wrapped in {"state_dict": ...}, with or without "module." prefixes.
- SAM .pth: see sam.load_sam.

The model's sizes are read from the upstream configs and weight shapes, not assumed, so any
AudioLDM-family UNet with a class-label projection works. The grounding module is new in this
method: pass trained weights, or it starts random (then the model needs fine-tuning; see training/).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..core.config import (ImageEncoderConfig, ModelConfig, TextEncoderConfig, UNetConfig, VAEConfig,
                     VocoderConfig)
from .encoders import ImageEncoder, TextEncoder, load_tokenizer
from ..core.errors import ObjaudioError, check
from ..core.grounding import GroundingAttention
from .model import Calibration, ObjaudioModel

AUDIOLDM_PARTS = ("unet", "vae", "vocoder", "text_encoder", "tokenizer")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors, or torch.load(weights_only=True), which refuses pickled code."""
    path = Path(path)
    check(path.is_file(), f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ObjaudioError(f"cannot read weights {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    check(isinstance(state, dict), f"{path} does not hold a state dict")
    return {re.sub(r"^module\.", "", k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def open_clip_visual_config(state: dict[str, torch.Tensor]) -> ImageEncoderConfig:
    """Read a ViT's sizes off an open_clip state dict (OpenAI/open_clip ViTs use 64-wide heads)."""
    for key in ("visual.conv1.weight", "visual.positional_embedding", "visual.proj"):
        check(key in state, f"not an open_clip ViT state dict: {key} is missing")
    width, _, patch, _ = state["visual.conv1.weight"].shape
    grid = int(round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5))
    layers = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
    return ImageEncoderConfig(image_size=grid * patch, patch_size=patch, width=width, layers=layers,
                              head_width=64 if width % 64 == 0 else width,
                              embed_dim=state["visual.proj"].shape[1])


def load_open_clip_visual(path: str | os.PathLike) -> ImageEncoder:
    state = read_state_dict(path)
    cfg = open_clip_visual_config(state)
    encoder = ImageEncoder(cfg)
    visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    try:
        encoder.visual.load_state_dict(visual, strict=True)
    except RuntimeError as exc:
        raise ObjaudioError(f"{path}: the visual tower does not load: {str(exc).splitlines()[0]}") from None
    return encoder


def load_audioldm(folder: str | os.PathLike):
    """(unet, vae, vocoder, text_encoder (ClapTextModelWithProjection), tokenizer) from a diffusers folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import ClapTextModelWithProjection, SpeechT5HifiGan

    folder = Path(folder)
    check(folder.is_dir(), f"AudioLDM folder not found: {folder}")
    for part in AUDIOLDM_PARTS:
        check((folder / part).is_dir(), f"{folder} is not an AudioLDM diffusers folder: {part}/ is missing")
    try:
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True)
        vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True)
        vocoder = SpeechT5HifiGan.from_pretrained(folder / "vocoder", local_files_only=True)
        text = ClapTextModelWithProjection.from_pretrained(folder / "text_encoder", local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise ObjaudioError(f"cannot load AudioLDM from {folder}: {str(exc).splitlines()[0]}") from None
    uc = unet.config
    check(uc.class_embed_type == "simple_projection" and uc.class_embeddings_concat,
          f"{folder / 'unet'} is not an AudioLDM UNet (needs class_embed_type simple_projection, concatenated)")
    return unet, vae, vocoder, text, load_tokenizer(folder / "tokenizer")


def assemble(audioldm: str | os.PathLike, clip: str | os.PathLike, out: str | os.PathLike,
             grounding: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Build and save an objaudio checkpoint from upstream weights."""
    from .checkpoint import save_checkpoint

    unet, vae, vocoder, text, tokenizer = load_audioldm(audioldm)
    image = load_open_clip_visual(clip)
    uc, vc, hc, tc = unet.config, vae.config, vocoder.config, text.config
    head_dim = uc.attention_head_dim if isinstance(uc.attention_head_dim, int) else uc.attention_head_dim[0]
    config = ModelConfig(
        name="audioldm-s" if tuple(uc.block_out_channels) == (128, 256, 384, 640) else "audioldm-custom",
        unet=UNetConfig(block_out_channels=tuple(uc.block_out_channels), layers_per_block=uc.layers_per_block,
                        attention_head_dim=head_dim, norm_num_groups=uc.norm_num_groups,
                        latent_channels=uc.in_channels, cond_dim=uc.projection_class_embeddings_input_dim,
                        sample_size=uc.sample_size),
        vae=VAEConfig(block_out_channels=tuple(vc.block_out_channels), layers_per_block=vc.layers_per_block,
                      latent_channels=vc.latent_channels, norm_num_groups=vc.norm_num_groups,
                      scaling_factor=float(vc.scaling_factor)),
        vocoder=VocoderConfig(model_in_dim=hc.model_in_dim, sampling_rate=hc.sampling_rate,
                              upsample_initial_channel=hc.upsample_initial_channel,
                              upsample_rates=tuple(hc.upsample_rates),
                              upsample_kernel_sizes=tuple(hc.upsample_kernel_sizes),
                              resblock_kernel_sizes=tuple(hc.resblock_kernel_sizes),
                              resblock_dilation_sizes=tuple(tuple(d) for d in hc.resblock_dilation_sizes)),
        image=image.cfg,
        text=TextEncoderConfig(vocab_size=tc.vocab_size, hidden_size=tc.hidden_size,
                               num_hidden_layers=tc.num_hidden_layers, num_attention_heads=tc.num_attention_heads,
                               intermediate_size=tc.intermediate_size,
                               max_position_embeddings=tc.max_position_embeddings,
                               projection_dim=tc.projection_dim),
    )
    check(hc.model_in_dim == config.mel.n_mels, f"vocoder expects {hc.model_in_dim} mel bands; AudioLDM uses 64")
    ground = GroundingAttention(config.grounding)
    calibration = Calibration.uncalibrated(config.image.num_patches)
    if grounding is not None:
        state = read_state_dict(grounding)
        try:
            ground.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ObjaudioError(f"{grounding} does not fit this model's grounding module: "
                                f"{str(exc).splitlines()[0]}") from None
    model = ObjaudioModel(config, unet=unet, vae=vae, vocoder=vocoder, image_encoder=image,
                          text_encoder=TextEncoder(config.text, model=text, tokenizer=tokenizer), grounding=ground)
    return save_checkpoint(model, calibration, out, force=force)
