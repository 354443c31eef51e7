"""A picture to go next to the WAVs: the scene, each selection and each generated spectrogram."""
from __future__ import annotations

import io
import os
import warnings

import numpy as np


def save_overview(path: str | os.PathLike, image: np.ndarray, items: list[tuple[str, object]],
                  force: bool = False) -> None:
    """Write `render_overview` to `path` atomically; never overwrites an existing file unless `force`."""
    from .outputs import write_together

    write_together([(path, render_overview(image, items))], force=force)


def render_overview(image: np.ndarray, items: list[tuple[str, object]]) -> bytes:
    """A PNG, one row per generation: [scene with the selection overlaid | patch weights | log-mel].

    image: (H, W, 3) uint8; items: (label, Generation) pairs. A label with characters the font
    lacks (emoji, CJK) shows boxes for them; matplotlib's per-glyph warnings are not printed.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"Matplotlib currently does not support", category=UserWarning)
        return _render(image, items)


def _render(image: np.ndarray, items: list[tuple[str, object]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(items))
    fig, axes = plt.subplots(rows, 3, figsize=(11, 2.6 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 2.4]})
    for row, (label, gen) in zip(axes, items):
        row[0].imshow(image, interpolation="nearest")
        if gen.mask is not None:
            overlay = np.zeros((*gen.mask.shape, 4), np.float32)
            overlay[..., 0], overlay[..., 3] = 1.0, 0.45 * gen.mask
            row[0].imshow(overlay)
        row[0].set_title(label, fontsize=9)
        weights = gen.weights.float()
        weights = weights.mean(0) if weights.ndim == 2 else weights
        grid = int(round(weights.numel() ** 0.5))
        row[1].imshow(weights.reshape(grid, grid).numpy(), cmap="magma", vmin=0.0,
                      vmax=max(float(weights.max()), 1e-6))
        row[1].set_title("patch weights", fontsize=9)
        seconds = gen.wave.numel() / gen.sample_rate
        row[2].imshow(gen.mel.T.numpy(), origin="lower", aspect="auto", cmap="viridis",
                      extent=(0, seconds, 0, gen.mel.shape[1]))
        row[2].set_title(f"log-mel ({gen.sampler}, {gen.steps} steps, cfg {gen.cfg:g}, seed {gen.seed})", fontsize=9)
        row[2].set_xlabel("seconds", fontsize=8)
        row[2].set_ylabel("mel band", fontsize=8)
        for ax in row[:2]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=90, format="png")
    plt.close(fig)
    return buf.getvalue()
