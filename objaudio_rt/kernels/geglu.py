"""The attention block's feed-forward activation (GEGLU) in one kernel.

Reference: `geglu_reference` below, which is diffusers' `GEGLU.forward` after its projection:

    hidden, gate = proj.chunk(2, dim=-1)
    out = hidden * gelu(gate)                      (exact, erf-based GELU)

Eager runs the chunk's two strided views through GELU and a multiply (two kernels and a
temporary the size of the output); here one pass reads each row's two halves and writes the
product, computing in float32.

Layers: `_geglu_kernel` (Triton), `geglu_into` (host launcher), `geglu` (the `objaudio::geglu`
custom op with a fake).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import check
from ._triton import HAS_TRITON, runs_triton

BLOCK = 1024

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _geglu_kernel(x_ptr, y_ptr, D, n, BLOCK: tl.constexpr):
        # x: (M, 2D) contiguous rows; y: (M, D) contiguous; n = M * D
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inb = offs < n
        row = offs // D
        col = offs - row * D
        hidden = tl.load(x_ptr + row * 2 * D + col, mask=inb, other=0.0).to(tl.float32)
        gate = tl.load(x_ptr + row * 2 * D + D + col, mask=inb, other=0.0).to(tl.float32)
        gelu = 0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476))
        tl.store(y_ptr + offs, (hidden * gelu).to(y_ptr.dtype.element_ty), mask=inb)


def geglu_reference(x: torch.Tensor) -> torch.Tensor:
    """x: (..., 2D) projected features. Returns (..., D) in x's dtype, as diffusers computes it."""
    hidden, gate = x.chunk(2, dim=-1)
    return hidden * F.gelu(gate)


def _check_args(x: torch.Tensor) -> None:
    check(x.ndim >= 1 and x.shape[-1] % 2 == 0, f"geglu needs an even last dimension, got {tuple(x.shape)}")


def geglu_into(x: torch.Tensor, out: torch.Tensor) -> None:
    """Triton host launcher: out (..., D) contiguous = first half * gelu(second half) of x (..., 2D)."""
    _check_args(x)
    check(runs_triton(x), "geglu_into needs a CUDA tensor (or TRITON_INTERPRET=1 for CPU tensors); "
          "call geglu, which falls back to the PyTorch reference")
    d = x.shape[-1] // 2
    check(out.shape == (*x.shape[:-1], d) and out.is_contiguous() and out.device == x.device,
          f"out must be contiguous {(*x.shape[:-1], d)} on {x.device}, got {tuple(out.shape)}")
    x = x.contiguous()
    n = out.numel()
    if n:
        _geglu_kernel[(triton.cdiv(n, BLOCK),)](x, out, d, n, BLOCK=BLOCK, num_warps=4)


@torch.library.custom_op("objaudio::geglu", mutates_args=())
def geglu(x: torch.Tensor) -> torch.Tensor:
    """x: (..., 2D) -> (..., D): hidden * gelu(gate). Triton where it runs; elsewhere `geglu_reference`."""
    if not runs_triton(x):
        _check_args(x)
        return geglu_reference(x)
    out = x.new_empty((*x.shape[:-1], x.shape[-1] // 2))
    geglu_into(x, out)
    return out


@geglu.register_fake
def _(x):
    return x.new_empty((*x.shape[:-1], x.shape[-1] // 2))
