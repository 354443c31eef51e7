"""The sampler step as the fused kernel: what the backends that keep the whole loop on the device
(fast on CUDA, tensorrt) supply as `Backend.step`. Its own module so that importing the runtime
does not import the kernels (and Triton) until such a backend is built."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..kernels.sampler_step import guided_step

if TYPE_CHECKING:
    from ..samplers import DeviceTables


def fused_step(tables: "DeviceTables", i: int, x: torch.Tensor, eps_pair: torch.Tensor, cfg: torch.Tensor,
               x0_prev: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """`Backend.step` by the fused kernel: the float32 device table row at the device step counter.
    Only the host plan decides whether the history term is read (DPM++'s cp != 0), as the reference."""
    prev = x0_prev if float(tables.plan.coefs[i, 2]) else None
    return guided_step(tables.coefs, tables.step, x, eps_pair, cfg, prev)
