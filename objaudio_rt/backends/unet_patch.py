"""Fused kernels patched into diffusers networks by module replacement (upstream weights load unchanged).

`patch_unet(module)` walks a diffusers UNet2DConditionModel (or an AutoencoderKL: same blocks)
and replaces, in place:

- every `ResnetBlock2D` with the default time-embedding mode and SiLU: its two GroupNorms become
  `FusedGroupNorm`s that apply the SiLU after them, and the time-embedding broadcast add moves
  into `norm2`'s kernel (`FusedResnetBlock2D.forward`, otherwise diffusers' forward line for line);
- the UNet's output `conv_norm_out` + `conv_act` pair: one GroupNorm+SiLU kernel;
- every other `nn.GroupNorm` (the attention blocks' input norm): one kernel instead of three;
- every `GEGLU` feed-forward activation: `FusedGEGLU`, one kernel after its projection.

Replacements keep the parameter objects and their names (`norm1.weight`, `ff.net.0.proj.weight`),
so `state_dict` keys are unchanged and a patched network loads upstream checkpoints as is. The
fused ops are `objaudio::group_norm_act` and `objaudio::geglu` (objaudio_rt/kernels): Triton on
CUDA, their PyTorch references elsewhere. Not fused here: the residual add after `conv2` (it would
need a convolution epilogue; torch.compile/AOTInductor fuse it, see the fast backend's options).

`to_channels_last(module)` puts the convolutions' weights in channels_last, so a channels_last
input keeps that layout through every convolution and fused norm (no NCHW<->NHWC conversions).
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.errors import check
from ..kernels.geglu import geglu
from ..kernels.group_norm import group_norm_act


class FusedGroupNorm(nn.Module):
    """nn.GroupNorm (affine) + optional SiLU, with an optional per-(n, c) shift added to its input."""

    def __init__(self, norm: nn.GroupNorm, silu: bool):
        super().__init__()
        check(isinstance(norm, nn.GroupNorm) and norm.affine, f"FusedGroupNorm replaces an affine nn.GroupNorm, "
                                                              f"got {type(norm).__name__}")
        self.num_groups, self.num_channels, self.eps, self.silu = norm.num_groups, norm.num_channels, norm.eps, silu
        self.weight, self.bias = norm.weight, norm.bias                      # the same Parameters, same names

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, C, H, W) or (N, C, L) in any layout; shift: (N, C) or None. Returns x's shape, dtype and layout."""
        if x.ndim == 3:                                                      # attention blocks' (N, C, L)
            return group_norm_act(x[..., None], self.weight, self.bias, self.num_groups, self.eps, shift,
                                  self.silu)[..., 0]
        return group_norm_act(x, self.weight, self.bias, self.num_groups, self.eps, shift, self.silu)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, silu={self.silu}"


class FusedGEGLU(nn.Module):
    """diffusers' GEGLU with the chunk + GELU + multiply in one kernel; keeps its `proj`."""

    def __init__(self, geglu_module: nn.Module):
        super().__init__()
        self.proj = geglu_module.proj

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return geglu(self.proj(hidden_states))                               # (..., 2D) -> (..., D)


def _resnet_class():
    from diffusers.models.resnet import ResnetBlock2D

    class FusedResnetBlock2D(ResnetBlock2D):
        """ResnetBlock2D.forward with norm+SiLU fused and the time embedding added inside norm2's kernel."""

        def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None, *args, **kwargs) -> torch.Tensor:
            hidden_states = self.norm1(input_tensor)                          # GroupNorm + SiLU
            if self.upsample is not None:
                if hidden_states.shape[0] >= 64:                              # as diffusers (its issue 984)
                    input_tensor, hidden_states = input_tensor.contiguous(), hidden_states.contiguous()
                input_tensor = self.upsample(input_tensor)
                hidden_states = self.upsample(hidden_states)
            elif self.downsample is not None:
                input_tensor = self.downsample(input_tensor)
                hidden_states = self.downsample(hidden_states)
            hidden_states = self.conv1(hidden_states)
            shift = None
            if self.time_emb_proj is not None and temb is not None:
                shift = self.time_emb_proj(temb if self.skip_time_act else self.nonlinearity(temb))   # (N, C)
            hidden_states = self.norm2(hidden_states, shift)                  # (+ temb), GroupNorm, SiLU
            hidden_states = self.conv2(self.dropout(hidden_states))
            if self.conv_shortcut is not None:
                input_tensor = self.conv_shortcut(input_tensor)
            return (input_tensor + hidden_states) / self.output_scale_factor

    return FusedResnetBlock2D


def _fusable_resnet(block) -> bool:
    return (block.time_embedding_norm == "default" and isinstance(block.nonlinearity, nn.SiLU)
            and isinstance(block.norm1, nn.GroupNorm) and isinstance(block.norm2, nn.GroupNorm)
            and block.norm1.affine and block.norm2.affine)


def patch_unet(module: nn.Module) -> dict[str, int]:
    """Swap in the fused modules (in place). Returns how many of each were replaced."""
    from diffusers.models.activations import GEGLU
    from diffusers.models.resnet import ResnetBlock2D

    fused_resnet = _resnet_class()
    counts = {"resnet_blocks": 0, "group_norm_silu": 0, "group_norm": 0, "geglu": 0}
    for block in list(module.modules()):
        if type(block) is ResnetBlock2D and _fusable_resnet(block):
            block.norm1, block.norm2 = FusedGroupNorm(block.norm1, True), FusedGroupNorm(block.norm2, True)
            block.__class__ = fused_resnet                                   # same attributes, new forward
            counts["resnet_blocks"] += 1
            counts["group_norm_silu"] += 2
    for owner in list(module.modules()):
        if isinstance(getattr(owner, "conv_norm_out", None), nn.GroupNorm) and isinstance(
                getattr(owner, "conv_act", None), nn.SiLU) and owner.conv_norm_out.affine:
            owner.conv_norm_out, owner.conv_act = FusedGroupNorm(owner.conv_norm_out, True), nn.Identity()
            counts["group_norm_silu"] += 1
        for name, child in list(owner.named_children()):
            if type(child) is nn.GroupNorm and child.affine:
                setattr(owner, name, FusedGroupNorm(child, False))
                counts["group_norm"] += 1
            elif type(child) is GEGLU:
                setattr(owner, name, FusedGEGLU(child))
                counts["geglu"] += 1
    return counts


def to_channels_last(module: nn.Module) -> nn.Module:
    """Every 4-D parameter and buffer in channels_last (convolution weights), in place."""
    return module.to(memory_format=torch.channels_last)


def fuse_attention_qkv(module: nn.Module) -> int:
    """q, k and v of every attention block as one projection (one GEMM instead of three), in place,
    with diffusers' FusedAttnProcessor2_0. Returns how many blocks were fused.

    AudioLDM's UNet passes no encoder states, so `attn2` (declared as cross-attention) attends to
    the hidden states too and is fused like `attn1`; after this a caller must not pass encoder
    states. It adds `to_qkv` parameters, so it is for a copy that is compiled (export/aoti.py), not
    for a model that is saved.
    """
    from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0

    fused = 0
    for attn in list(module.modules()):
        if not isinstance(attn, Attention) or getattr(attn, "to_qkv", None) is not None or attn.to_k is None:
            continue
        parts = (attn.to_q, attn.to_k, attn.to_v)
        if len({p.in_features for p in parts}) != 1:
            continue                                      # k, v read another width: a real cross-attention
        weight = torch.cat([p.weight for p in parts])
        has_bias = any(p.bias is not None for p in parts)
        qkv = nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            qkv.weight.copy_(weight)
            if has_bias:
                qkv.bias.copy_(torch.cat([p.bias if p.bias is not None else torch.zeros_like(p.weight[:, 0])
                                          for p in parts]))
        attn.to_qkv = qkv
        attn.set_processor(FusedAttnProcessor2_0())
        fused += 1
    return fused
