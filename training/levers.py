"""Selection levers at inference time, as experiments on the evaluation (not a runtime option).

They run through the runtime's one guided loop (`objaudio_rt.core.denoise`): per item, its condition
rows with signed weights, plus (when the weights do not sum to 1) a row of the null condition
taking the rest, so that

    eps_c = sum_r w_r eps(x, c_r) + (1 - sum_r w_r) eps_u,    eps = eps_u + cfg * (eps_c - eps_u)

With one row of weight 1 this is classifier-free guidance exactly, and with parts of weight 1/k
it is the runtime's composed union. Levers:

    negative     lam: a row for the rest of the scene (the complement of the selection's pixel
                 mask) with weight -lam / cfg, i.e. eps = eps_u + cfg (eps_c - eps_u) - lam (eps_neg - eps_u):
                 the null branch is kept and a small push away from the other objects is added.
                 (Replacing the null condition by the rest-of-scene condition made every metric
                 worse at guidance 4.) Text and whole-scene selections get no negative row.
    union_gain   gamma: each of the k parts of a composed union gets weight gamma / k (1: their mean,
                 the runtime's default; 2 with two parts: each object at full guidance).
    core         c in (0, 1]: a mask's patch coverage kept only where it is >= c x its largest (the patches
                 a neighbouring object shares, partly covered, dropped), then rescaled as usual; 0: off.
                 Masks alone (not text, not the whole scene).
    apg          adaptive projected guidance (objaudio_rt/core/guidance.py) in place of classifier-free
                 guidance's update: eta, the kept share of the update's part parallel to the
                 conditional prediction, and r, a cap on the update's norm (0: none).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from objaudio_rt.core.denoise import Conditions
from objaudio_rt.core.errors import check
from objaudio_rt.core.grounding import mask_to_patch_coverage, rescale_patch_weights
from objaudio_rt.core.guidance import APG
from objaudio_rt.core.options import RunOptions
from objaudio_rt.core.pipeline import Generation, Pipeline, Scene, combine_parts
from objaudio_rt.core.selection import Mask, Text, Whole


@dataclass(frozen=True)
class Levers:
    negative: float = 0.0
    union_gain: float = 1.0
    apg: APG | None = None
    core: float = 0.0

    def __post_init__(self):
        check(np.isfinite(self.negative) and self.negative >= 0, f"negative must be >= 0, got {self.negative}")
        check(np.isfinite(self.core) and 0 <= self.core <= 1, f"core must be in [0, 1], got {self.core}")
        check(np.isfinite(self.union_gain) and self.union_gain > 0, f"union_gain must be > 0, got {self.union_gain}")

    def label(self) -> str:
        return f"negative={self.negative:g},union_gain={self.union_gain:g}" + (
            f",{self.apg.label()}" if self.apg is not None else "") + (f",core={self.core:g}" if self.core else "")


def cored_weights(pipe: Pipeline, pixel: np.ndarray, core: float) -> torch.Tensor:
    """Patch weights (1, P) of a pixel mask whose coverage is kept only where >= core x its largest."""
    cover = mask_to_patch_coverage(torch.from_numpy(pixel)[None].to(pipe.device), pipe.config.image.image_size,
                                   pipe.config.image.patch_size)
    cover = torch.where(cover >= core * cover.amax(dim=-1, keepdim=True), cover, torch.zeros_like(cover))
    return rescale_patch_weights(cover, pipe.calibration.attn_std, pipe.config.grounding.mask_rescale)


def complement(pixel: np.ndarray | None) -> np.ndarray | None:
    """The rest of the scene: 1 - the selection's pixel mask; None where nothing (or everything) is left."""
    if pixel is None:
        return None
    rest = 1.0 - np.clip(pixel, 0.0, 1.0)
    return rest if rest.max() > 0 else None


def levered_generate_many(pipe: Pipeline, levers: Levers):
    """A `Pipeline.generate_many` stand-in (same keywords as `training.evaluate.generate` uses), built
    from the pipeline's public stages: per item its parts (`Pipeline.parts`) and lever rows, signed
    `Conditions`, then `Pipeline.sample` and `Pipeline.audio`."""

    @torch.no_grad()
    def generate_many(scene: Scene, selections, steps: int, sampler: str, cfg: float, seed: int,
                      progress: bool = False) -> list[Generation]:
        run = RunOptions(steps, sampler, cfg, seed).resolve(pipe.config)
        conds, owner, weights, shown = [], [], [], []
        for item, selection in enumerate(selections):
            parts = (selection or Whole()).parts()
            groups = pipe.parts(scene, selection, "compose")                         # [(weights, pixel)] per part
            k = len(groups)
            gain = levers.union_gain if k > 1 else 1.0
            masks_only = not any(isinstance(p, (Text, Whole)) for p in parts)
            if levers.core > 0 and masks_only:
                groups = [(cored_weights(pipe, pixel, levers.core), pixel) for _, pixel in groups]
            for patch_w, _ in groups:
                conds.append(pipe.condition(scene, patch_w))
                owner.append(item)
                weights.append(gain / k)
            shown.append(combine_parts(groups))
            pixel = shown[-1][1]
            rest = None if any(isinstance(p, (Text, Whole)) for p in parts) else complement(pixel)
            if levers.negative > 0 and rest is not None:
                neg_w, _ = pipe.select(scene, Mask(rest))
                conds.append(pipe.condition(scene, neg_w))
                owner.append(item)
                weights.append(-levers.negative / run.cfg)
        rows = Conditions.signed(torch.cat(conds), torch.tensor(owner), torch.tensor(weights, dtype=torch.float32),
                                 len(selections), pipe.backend.null_condition)
        z = pipe.sample(rows, run, progress=progress, guidance=levers.apg)          # (B, C, T/4, M/4)
        mel, wave = pipe.audio(z, run)
        return [Generation(wave[i], mel[i].cpu(), w.cpu(), m, pipe.config.mel.sample_rate, seed, steps, sampler, cfg)
                for i, (w, m) in enumerate(shown)]

    return generate_many
