"""Comparison helpers for kernel tests: tolerances measured from the reference's own error."""
from __future__ import annotations

import torch


def reference_tolerance(truth: torch.Tensor, low: torch.Tensor, dtype: torch.dtype, factor: float = 2.0) -> float:
    """max(`factor` x the error a `dtype` run of the reference makes against `truth`, a few ulps of the data).

    A whole network compiled by Inductor sums in other orders than eager all the way through, so its
    worst element over thousands is a fresh draw of the same error distribution: give it `factor` 4."""
    err = (low.double() - truth.double()).abs().max().item()
    floor = 4 * torch.finfo(dtype).eps * max(1.0, truth.abs().max().item())
    return max(factor * err, floor)


def assert_verbose_allclose(actual: torch.Tensor, expected: torch.Tensor, atol: float, name: str = "output",
                            show: int = 5) -> None:
    """|actual - expected| <= atol everywhere (NaN fails); on failure say where and by how much."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    diff = (a - e).abs()
    bad = ~(diff <= atol)                                   # NaN compares False: counted as bad
    if not bool(bad.any()):
        return
    idx = bad.nonzero()
    worst = torch.nan_to_num(diff, nan=float("inf")).flatten().argmax().item()
    worst_at = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), diff.shape))
    lines = [f"{name}: {idx.shape[0]} of {diff.numel()} elements off by more than atol={atol:.3e}",
             f"  worst at {worst_at}: got {a[worst_at].item():.6e}, expected {e[worst_at].item():.6e}, "
             f"|diff| {diff[worst_at].item():.3e}"]
    for row in idx[:show].tolist():
        at = tuple(row)
        lines.append(f"  at {at}: got {a[at].item():.6e}, expected {e[at].item():.6e}")
    raise AssertionError("\n".join(lines))
