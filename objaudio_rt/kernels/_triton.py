"""Whether a Triton kernel can run on a tensor here, decided once at import.

`triton.jit` picks compiled or interpreted mode when a kernel is *defined*, from
TRITON_INTERPRET, so this module reads that variable once, at the same moment (the kernel
modules import it before defining their kernels). CPU-only torch wheels ship without triton:
then every entry point runs its plain PyTorch reference.
"""
from __future__ import annotations

import os

import torch

try:
    import triton  # noqa: F401  (imported for its side effect on HAS_TRITON only)
    HAS_TRITON = True
except ImportError:
    HAS_TRITON = False

INTERPRETED = HAS_TRITON and os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def runs_triton(t: torch.Tensor) -> bool:
    """True when a Triton kernel can take `t`: CUDA tensors, or CPU tensors in interpreter mode."""
    return HAS_TRITON and (t.is_cuda or (INTERPRETED and t.device.type == "cpu"))
