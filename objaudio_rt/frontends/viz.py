"""A picture to go next to the WAVs: the scene, each selection and each generated spectrogram.

The selection is shown so that it cannot be mistaken for the scene's own colours: the pixels outside
it are dimmed and its edge is outlined (a light line on a dark one, visible on any image); a colour
tint alone turned a yellow bird merely orange. Each spectrogram is in dB with its colour bar; a loop's
goes on past its end into its start again (shaded), with the loop point marked.
"""
from __future__ import annotations

import io
import os
import warnings

import numpy as np

DB_PER_NEPER = 20.0 / np.log(10.0)      # the log-mel is ln(magnitude): 20 log10(x) = 8.686 ln(x)
DIM_OUTSIDE = 0.35                      # brightness kept outside the selection
OUTLINE = (("black", 2.6), ("#fff200", 1.2))   # (colour, line width): a light line on a dark one
LOOP_AGAIN = 0.2                        # of a loop's length drawn again after its end


def save_overview(path: str | os.PathLike, image: np.ndarray, items: list[tuple[str, object]],
                  force: bool = False) -> None:
    """Write `render_overview` to `path` atomically; never overwrites an existing file unless `force`."""
    from .outputs import write_together

    write_together([(path, render_overview(image, items))], force=force)


def render_overview(image: np.ndarray, items: list[tuple[str, object]]) -> bytes:
    """A PNG, one row per generation: [the scene, the selection outlined and the rest dimmed | patch
    weights | log-mel in dB with its colour bar].

    image: (H, W, 3) uint8; items: (label, Generation) pairs. A label with characters the font
    lacks (emoji, CJK) shows boxes for them; matplotlib's per-glyph warnings are not printed.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"Matplotlib currently does not support", category=UserWarning)
        fig = overview_figure(image, items)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, dpi=90, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def overview_figure(image: np.ndarray, items: list[tuple[str, object]]):
    """The matplotlib Figure `render_overview` saves: rows x [scene, patch weights, log-mel + its dB bar]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(items))
    fig, axes = plt.subplots(rows, 3, figsize=(11, 2.6 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 2.4]})
    for row, (label, gen) in zip(axes, items):
        if gen.mask is not None:
            keep = DIM_OUTSIDE + (1.0 - DIM_OUTSIDE) * np.clip(gen.mask, 0.0, 1.0)[..., None]   # (H, W, 1)
            row[0].imshow((image * keep + 0.5).astype(np.uint8), interpolation="nearest")
            if float(gen.mask.min()) < 0.5 < float(gen.mask.max()):      # nothing to outline for the whole scene
                for color, width in OUTLINE:
                    row[0].contour(gen.mask, levels=[0.5], colors=color, linewidths=width)
        else:
            row[0].imshow(image, interpolation="nearest")
        row[0].set_title(label, fontsize=9)
        weights = gen.weights.float()
        weights = weights.mean(0) if weights.ndim == 2 else weights
        grid = int(round(weights.numel() ** 0.5))
        row[1].imshow(weights.reshape(grid, grid).numpy(), cmap="magma", vmin=0.0,
                      vmax=max(float(weights.max()), 1e-6))
        row[1].set_title("patch weights", fontsize=9)
        seconds = gen.wave.numel() / gen.sample_rate
        mel = gen.mel
        shown = seconds
        if getattr(gen, "loop", False):                  # the start again after the end: the join is heard there
            again = max(1, int(mel.shape[0] * LOOP_AGAIN))
            mel = mel[list(range(mel.shape[0])) + list(range(again))]
            shown = seconds * mel.shape[0] / gen.mel.shape[0]
        silent = getattr(gen, "silent", False)           # the silence gate: the floor, drawn as the floor
        db = DB_PER_NEPER * mel.T.numpy()
        spec = row[2].imshow(db, origin="lower", aspect="auto", cmap="viridis", extent=(0, shown, 0, mel.shape[1]),
                             **({"vmin": float(db.min()), "vmax": float(db.min()) + 100.0} if silent else {}))
        if shown > seconds:
            row[2].axvspan(seconds, shown, color="black", alpha=0.35, lw=0)
            row[2].axvline(seconds, color="white", linestyle="--", linewidth=1.2, label="loop point")
            row[2].text(seconds, mel.shape[1] * 0.92, "loop point ", color="white", fontsize=7, va="top", ha="right")
            row[2].text(seconds, mel.shape[1] * 0.08, " start again", color="white", fontsize=7, va="bottom")
        bar = fig.colorbar(spec, ax=row[2], pad=0.01, fraction=0.05)
        bar.set_label("dB", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        row[2].set_title("digital silence: the model's silence gate called this selection silent" if silent else
                         f"log-mel, dB ({gen.sampler}, {gen.steps} steps, cfg {gen.cfg:g}, seed {gen.seed})", fontsize=9)
        row[2].set_xlabel("seconds", fontsize=8)
        row[2].set_ylabel("mel band", fontsize=8)
        for ax in row[:2]:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig
