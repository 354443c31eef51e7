"""GroupNorm with the time-embedding add before it and SiLU after it, in one kernel, any 4-D layout.

Reference: `group_norm_reference` below (F.group_norm + F.silu, as diffusers' ResnetBlock2D runs
them). Per sample n and group g of the C / G channels, in float32:

    v    = x[n, c, h, w] + shift[n, c]          (shift: the block's time embedding; optional)
    y    = (v - mean_ng(v)) / sqrt(var_ng(v) + eps) * weight[c] + bias[c]
    out  = y * sigmoid(y)                         (silu; optional)

The eager UNet runs this as up to five kernels (the broadcast add, GroupNorm's moments, its fused
parameters, its affine pass, SiLU) and, in NCHW, a layout conversion around each convolution. Here
one program per (n, g) reads its group twice, through any strides: channels_last (the fast
backend's layout; a group's channels are adjacent in memory) and NCHW both work, and the output
keeps the input's memory format. Statistics merge tile by tile (Chan et al.'s parallel variance),
so no E[x^2] - E[x]^2 cancellation.

Layers: `_group_norm_kernel` (Triton), `group_norm_into` (host launcher), `group_norm_act` (the
`objaudio::group_norm_act` custom op with a fake, so torch.compile/export trace through it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import check
from ._triton import HAS_TRITON, runs_triton

BLOCK_HW = 64

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _group_norm_kernel(x_ptr, shift_ptr, w_ptr, b_ptr, y_ptr, HW, CPG, G, sxn, sxc, sxs, syn, syc, sys_, ssn,
                           eps, HAS_SHIFT: tl.constexpr, SILU: tl.constexpr, BLOCK_HW: tl.constexpr,
                           BLOCK_C: tl.constexpr):
        # x, y: (N, C, HW) through strides (n, c, spatial); shift: (N, C) or unused; w, b: (C,)
        pid = tl.program_id(0)
        n = pid // G
        c = (pid % G) * CPG + tl.arange(0, BLOCK_C)
        cmask = tl.arange(0, BLOCK_C) < CPG
        xb = x_ptr + n.to(tl.int64) * sxn
        yb = y_ptr + n.to(tl.int64) * syn
        if HAS_SHIFT:
            shift = tl.load(shift_ptr + n * ssn + c, mask=cmask, other=0.0).to(tl.float32)
        count = 0.0
        mean = 0.0
        m2 = 0.0
        for start in range(0, HW, BLOCK_HW):
            s = start + tl.arange(0, BLOCK_HW)
            m = (s < HW)[:, None] & cmask[None, :]
            v = tl.load(xb + s[:, None] * sxs + c[None, :] * sxc, mask=m, other=0.0).to(tl.float32)
            if HAS_SHIFT:
                v += shift[None, :]
            n_b = tl.sum(tl.sum(m.to(tl.float32), 1), 0)
            mean_b = tl.sum(tl.sum(tl.where(m, v, 0.0), 1), 0) / n_b
            d = tl.where(m, v - mean_b, 0.0)
            m2_b = tl.sum(tl.sum(d * d, 1), 0)
            total = count + n_b
            delta = mean_b - mean
            mean += delta * n_b / total
            m2 += m2_b + delta * delta * count * n_b / total
            count = total
        rstd = 1.0 / tl.sqrt(m2 / count + eps)
        w = tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
        scale = w * rstd
        offset = b - mean * scale
        if HAS_SHIFT:
            offset += shift * scale
        for start in range(0, HW, BLOCK_HW):
            s = start + tl.arange(0, BLOCK_HW)
            m = (s < HW)[:, None] & cmask[None, :]
            v = tl.load(xb + s[:, None] * sxs + c[None, :] * sxc, mask=m, other=0.0).to(tl.float32)
            y = v * scale[None, :] + offset[None, :]
            if SILU:
                y = y * tl.sigmoid(y)
            tl.store(yb + s[:, None] * sys_ + c[None, :] * syc, y.to(y_ptr.dtype.element_ty), mask=m)


def group_norm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                         shift: torch.Tensor | None = None, silu: bool = False) -> torch.Tensor:
    """The plain PyTorch reference, in x's dtype, as diffusers runs it. x: (N, C, H, W); shift: (N, C)."""
    if shift is not None:
        x = x + shift[:, :, None, None].to(x.dtype)
    y = F.group_norm(x, groups, weight.to(x.dtype), bias.to(x.dtype), eps)
    return F.silu(y) if silu else y


def _spatial_stride(t: torch.Tensor) -> int | None:
    """The stride of the flattened H*W index when (H, W) is one strided run (NCHW and channels_last are)."""
    _, _, h, w = t.shape
    if w == 1:
        return t.stride(2)
    return t.stride(3) if h == 1 or t.stride(2) == w * t.stride(3) else None


def _check_args(x, weight, bias, groups, shift) -> None:
    check(x.ndim == 4, f"x must be (N, C, H, W), got {tuple(x.shape)}")
    c = x.shape[1]
    check(groups >= 1 and c % groups == 0, f"{c} channels do not split into {groups} groups")
    check(weight.shape == bias.shape == (c,), f"weight and bias must be ({c},), got {tuple(weight.shape)}, "
                                              f"{tuple(bias.shape)}")
    check(shift is None or shift.shape == (x.shape[0], c), f"shift must be ({x.shape[0]}, {c}), "
                                                           f"got {None if shift is None else tuple(shift.shape)}")


def group_norm_into(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                    shift: torch.Tensor | None, silu: bool, out: torch.Tensor) -> None:
    """Triton host launcher: writes `out` (x's shape, any NCHW/channels_last strides) in one kernel."""
    _check_args(x, weight, bias, groups, shift)
    check(runs_triton(x), "group_norm_into needs a CUDA tensor (or TRITON_INTERPRET=1 for CPU tensors); "
          "call group_norm_act, which falls back to the PyTorch reference")
    check(out.shape == x.shape and out.device == x.device, f"out must be {tuple(x.shape)} on {x.device}")
    if _spatial_stride(x) is None:
        x = x.contiguous(memory_format=torch.channels_last)
    check(_spatial_stride(out) is not None, "out must be NCHW or channels_last")
    n, c, h, w = x.shape
    cpg = c // groups
    weight, bias = weight.contiguous(), bias.contiguous()
    shift_t = shift.contiguous() if shift is not None else weight                # unread without a shift
    _group_norm_kernel[(n * groups,)](
        x, shift_t, weight, bias, out, h * w, cpg, groups, x.stride(0), x.stride(1), _spatial_stride(x),
        out.stride(0), out.stride(1), _spatial_stride(out), shift_t.stride(0) if shift is not None else 0, float(eps),
        HAS_SHIFT=shift is not None, SILU=silu, BLOCK_HW=BLOCK_HW, BLOCK_C=triton.next_power_of_2(cpg),
        num_warps=4)


@torch.library.custom_op("objaudio::group_norm_act", mutates_args=())
def group_norm_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float,
                   shift: torch.Tensor | None, silu: bool) -> torch.Tensor:
    """GroupNorm(x + shift[:, :, None, None]) then SiLU if `silu`; x: (N, C, H, W), output in x's layout.

    Triton on CUDA (or on CPU under TRITON_INTERPRET=1); elsewhere `group_norm_reference`.
    """
    if not runs_triton(x):
        _check_args(x, weight, bias, groups, shift)
        return group_norm_reference(x, weight, bias, groups, eps, shift, silu)
    out = torch.empty_like(x)                                                    # keeps x's memory format
    group_norm_into(x, weight, bias, groups, eps, shift, silu, out)
    return out


@group_norm_act.register_fake
def _(x, weight, bias, groups, eps, shift, silu):
    return torch.empty_like(x)
