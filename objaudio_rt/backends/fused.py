"""The sampler step as the fused kernel: what the backends that keep the whole loop on the device
(fast on CUDA, tensorrt) supply as `Backend.step`. Its own module so that importing the runtime
does not import the kernels (and Triton) until such a backend is built."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..kernels.sampler_step import guided_step

if TYPE_CHECKING:
    from ..core.samplers import DeviceTables


def fused_step(tables: "DeviceTables", i: int, x: torch.Tensor, eps_pair: torch.Tensor, cfg: torch.Tensor,
               history: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """`Backend.step` by the fused kernel: the float32 device table row at the device step counter.
    Only the host plan decides which history slots are read (`history_reads`), as the reference does;
    the kernel returns this step's x0 and the shift of the history is a tuple, no copy."""
    plan = tables.plan
    history = tuple(history or ())
    x_next, x0 = guided_step(tables.coefs, tables.step, x, eps_pair, cfg, list(history[:plan.history_reads[i]]))
    return x_next, (x0, *history[:plan.history - 1])
