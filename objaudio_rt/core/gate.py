"""The silence gate: does a selection make a sound at all?

On unseen scenes the paper's model makes a sound for a silent object (a rock, a tree) about half the
time, though the condition it is given says plainly that the object is silent (a linear probe on `c`
separates the two at 99.6 %; training/README.md). The gate reads that decision off the condition: a
small MLP, `p = sigmoid(MLP(c))`, fitted on training scenes (training/silence_gate.py). A condition row
with p >= the checkpoint's threshold is silent, and then (Pipeline.conditions, and the engine's
conditions() in csrc/libobjaudio/engine.cpp, which must agree):

    a selection whose every condition row is silent   is generated as digital silence: no UNet row,
                                                      no VAE, no vocoder (its Generation's log-mel is
                                                      the floor `SILENT_LOG_MEL`)
    a composed union with some silent parts            keeps only its sounding parts, each weighted
                                                      1 / (sounding parts), as if those were selected
    anything else                                      is generated as before

The decision depends only on the selection's own condition, so an item's result still does not
depend on what else is in the batch. A run switches the gate off with `RunOptions.silence_gate =
False` (`--no-silence-gate`, `"silence_gate": false`): the paper's behaviour.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .audio import MEL_FLOOR

SILENT_LOG_MEL = math.log(MEL_FLOOR)      # the log-mel of digital silence (audio.mel_spectrogram's floor)


class SilenceGate(nn.Module):
    """c (N, cond_dim) -> p(silent) (N,), float32. The input standardisation of its fit is folded into
    the first layer (training/silence_gate.py)."""

    def __init__(self, cond_dim: int, hidden_dim: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(cond_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, 1))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(c.to(self.mlp[0].weight.dtype)).float()[:, 0])


def silent_rows(gate: SilenceGate | None, threshold: float, rows: torch.Tensor) -> list[bool]:
    """Per condition row (R, cond_dim): whether the gate calls it silent (all False without a gate)."""
    if gate is None:
        return [False] * len(rows)
    with torch.no_grad():
        p = gate(rows.to(next(gate.parameters()).device))
    return (p >= threshold).tolist()
