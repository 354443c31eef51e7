"""Fused guided sampler step: classifier-free guidance and the affine update in one pass.

Reference: `objaudio_rt.core.samplers.reference_step`. Per element of item b, in float32, with the row
[cx, ce, c_1 .. c_K, dx, de] of the (S, K + 4) table and the first n <= K history slots h_k given:

    eps    = eps_u + cfg[b] * (eps_c - eps_u)     (cfg: a (1,) or (B,) float32 device tensor)
    x_next = cx * x + ce * eps + sum_{k <= n} c_k * h_k
    x0     = dx * x + de * eps

The caller keeps the history (x0, h_1, .., h_{K-1}) for the next step: shifting it costs no copy,
so one kernel serves every sampler (DDIM reads no slot, DPM-Solver++ 2M one, 3M and UniPC two).
The coefficient row is read ON THE DEVICE from the float32 table at the step index held in a device
integer tensor, so a denoising loop (and a CUDA graph of it) never syncs with the host: advance the
step with `step_idx.add_(1)` on the device. The guidance scale is read on the device too, so one
captured loop serves every guidance value. How many slots a step reads comes from the host plan
(`SamplerPlan.history_reads`), which a captured loop fixes per step.

Layers: `_guided_step_kernel` (Triton), `guided_step_into` (host launcher: checks, grid,
caller-owned outputs), `guided_step` (the `objaudio::guided_step` custom op, traceable by
torch.compile/export through its fake). On CUDA the op runs csrc/sampler_step.cu where it is
built (kernels/_cuda.py), the Triton kernel otherwise.
"""
from __future__ import annotations

import torch

from ..core.errors import check
from ..core.samplers import SamplerPlan, reference_step
from ._cuda import extension, runs_cuda_cpp
from ._triton import HAS_TRITON, runs_triton

BLOCK = 1024
MAX_HISTORY = 2            # history slots a step reads: params.h OBJAUDIO_KERNEL_MAX_HISTORY (a test holds them equal)

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _guided_step_kernel(coefs_ptr, step_ptr, cfg_ptr, x_ptr, eps_ptr, h1_ptr, h2_ptr, x_next_ptr, x0_ptr,
                            n, item_numel, width, N_HIST: tl.constexpr, CFG_PER_ITEM: tl.constexpr,
                            BLOCK: tl.constexpr):
        # coefs: (S, width) fp32; step: one integer; cfg: (1,) or (B,) fp32; x, h1, h2, x_next, x0: n
        # elements, item_numel per item; eps: 2n (uncond first); h1, h2 read only when N_HIST says so
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inb = offs < n
        if CFG_PER_ITEM:
            cfg = tl.load(cfg_ptr + offs // item_numel, mask=inb, other=0.0)
        else:
            cfg = tl.load(cfg_ptr)
        row = coefs_ptr + tl.load(step_ptr).to(tl.int64) * width
        cx = tl.load(row)
        ce = tl.load(row + 1)
        dx = tl.load(row + width - 2)
        de = tl.load(row + width - 1)
        x = tl.load(x_ptr + offs, mask=inb, other=0.0).to(tl.float32)
        eps_u = tl.load(eps_ptr + offs, mask=inb, other=0.0).to(tl.float32)
        eps_c = tl.load(eps_ptr + n + offs, mask=inb, other=0.0).to(tl.float32)
        eps = eps_u + cfg * (eps_c - eps_u)
        x_next = cx * x + ce * eps
        if N_HIST >= 1:
            x_next += tl.load(row + 2) * tl.load(h1_ptr + offs, mask=inb, other=0.0).to(tl.float32)
        if N_HIST >= 2:
            x_next += tl.load(row + 3) * tl.load(h2_ptr + offs, mask=inb, other=0.0).to(tl.float32)
        x0 = dx * x + de * eps
        tl.store(x_next_ptr + offs, x_next.to(x_next_ptr.dtype.element_ty), mask=inb)
        tl.store(x0_ptr + offs, x0.to(x0_ptr.dtype.element_ty), mask=inb)


def upload_coefs(plan: SamplerPlan, device: torch.device | str) -> torch.Tensor:
    """The plan's (S, K + 4) float64 table as a contiguous float32 device tensor (do this once)."""
    return plan.coefs.to(device=device, dtype=torch.float32).contiguous()


def _check_step_args(coefs: torch.Tensor, step_idx: torch.Tensor, cfg: torch.Tensor, x: torch.Tensor,
                     eps_pair: torch.Tensor, history: list[torch.Tensor]) -> None:
    """Metadata checks only: nothing here reads device memory."""
    check(cfg.dtype == torch.float32 and cfg.ndim == 1 and cfg.shape[0] in (1, x.shape[0]),
          f"cfg must be a (1,) or (B,) float32 tensor for x {tuple(x.shape)}, got {tuple(cfg.shape)} {cfg.dtype}")
    check(coefs.ndim == 2 and 4 <= coefs.shape[1] <= 4 + MAX_HISTORY and coefs.dtype == torch.float32,
          f"coefs must be the (S, K + 4) float32 table from upload_coefs (K <= {MAX_HISTORY}), got "
          f"{tuple(coefs.shape)} {coefs.dtype}")
    check(step_idx.numel() == 1 and not step_idx.is_floating_point(),
          f"step_idx must be a one-element integer tensor, got {tuple(step_idx.shape)} {step_idx.dtype}")
    check(eps_pair.shape[0] == 2 * x.shape[0] and eps_pair.shape[1:] == x.shape[1:],
          f"eps_pair must be (2B, ...) for x {tuple(x.shape)} (unconditional half first), "
          f"got {tuple(eps_pair.shape)}")
    check(len(history) <= coefs.shape[1] - 4, f"{len(history)} history slots given for a table of "
                                              f"{coefs.shape[1] - 4} (K + 4 = {coefs.shape[1]} columns)")
    check(all(h.shape == x.shape for h in history),
          f"history slots must match x {tuple(x.shape)}, got {[tuple(h.shape) for h in history]}")
    devices = {t.device for t in (coefs, step_idx, cfg, x, eps_pair, *history)}
    check(len(devices) == 1, f"all step tensors must be on one device, got {sorted(map(str, devices))}")


def guided_step_into(coefs: torch.Tensor, step_idx: torch.Tensor, x: torch.Tensor, eps_pair: torch.Tensor,
                     cfg: torch.Tensor, history: list[torch.Tensor], x_next: torch.Tensor, x0: torch.Tensor) -> None:
    """Triton host launcher: writes x_next and x0 (caller-owned, contiguous, x's shape) in one pass.

    coefs: (S, K + 4) fp32 device table; step_idx: one-element device int; cfg: (1,) or (B,) fp32
    device tensor; x: (B, C, H, W); eps_pair: (2B, C, H, W); history: the first n <= K previous data
    predictions, newest first, each (B, C, H, W). Any of fp32/fp16/bf16, mixed allowed.
    """
    _check_step_args(coefs, step_idx, cfg, x, eps_pair, history)
    check(runs_triton(x), "guided_step_into needs a CUDA tensor (or TRITON_INTERPRET=1 for CPU tensors); "
          "call guided_step, which falls back to the PyTorch reference")
    for out in (x_next, x0):
        check(out.shape == x.shape and out.is_contiguous() and out.device == x.device,
              f"outputs must be contiguous {tuple(x.shape)} on {x.device}, got {tuple(out.shape)} on {out.device}")
    n = x.numel()
    check(2 * n < 2 ** 31, f"latent batch too large for 32-bit offsets ({n} elements): split the batch")
    x, eps_pair = x.contiguous(), eps_pair.contiguous()
    slots = [h.contiguous() for h in history] + [x] * (MAX_HISTORY - len(history))   # the padding is never read
    grid = (triton.cdiv(n, BLOCK),)
    _guided_step_kernel[grid](coefs, step_idx, cfg, x, eps_pair, *slots, x_next, x0, n, n // max(x.shape[0], 1),
                              coefs.shape[1], N_HIST=len(history), CFG_PER_ITEM=cfg.shape[0] > 1, BLOCK=BLOCK,
                              num_warps=4)


@torch.library.custom_op("objaudio::guided_step", mutates_args=())
def guided_step(coefs: torch.Tensor, step_idx: torch.Tensor, x: torch.Tensor, eps_pair: torch.Tensor,
                cfg: torch.Tensor, history: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One guided sampler step. Returns (x_next, x0), both like x; the caller shifts its history.

    The CUDA C++ kernel on CUDA where it is built (x, eps_pair and history of one dtype), else Triton
    (CUDA, or CPU under TRITON_INTERPRET=1); elsewhere `reference_step` on the table row, which
    reads the step index back to the host.
    """
    if runs_cuda_cpp(x, eps_pair, *history):
        _check_step_args(coefs, step_idx, cfg, x, eps_pair, history)
        return extension().guided_step(coefs, step_idx.reshape(1).long(), x.contiguous(), eps_pair.contiguous(),
                                       cfg.contiguous(), [h.contiguous() for h in history])
    if not runs_triton(x):
        _check_step_args(coefs, step_idx, cfg, x, eps_pair, history)
        row = coefs[step_idx.reshape(()).long()].tolist()
        k = len(row) - 4
        row[2 + len(history):2 + k] = [0.0] * (k - len(history))     # as the kernels: only the slots given are read
        x_next, (x0, *_) = reference_step(row, x, eps_pair, cfg, tuple(history))
        return x_next, x0
    x_next = torch.empty_like(x, memory_format=torch.contiguous_format)
    x0 = torch.empty_like(x, memory_format=torch.contiguous_format)
    guided_step_into(coefs, step_idx, x, eps_pair, cfg, history, x_next, x0)
    return x_next, x0


@guided_step.register_fake
def _(coefs, step_idx, x, eps_pair, cfg, history):
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(x, memory_format=torch.contiguous_format))
