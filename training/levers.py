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
    union_mix    each part of a union generated as its own item at full guidance and the parts' waveforms
                 summed (their log-mels summed as power): k items' work for one union, against one pass
                 of k + 1 rows for the composed union.
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
from objaudio_rt.core.guidance import APG
from objaudio_rt.core.options import RunOptions
from objaudio_rt.core.pipeline import Generation, Pipeline, Scene, combine_parts
from objaudio_rt.core.selection import Mask, Text, Whole


@dataclass(frozen=True)
class Levers:
    negative: float = 0.0
    union_gain: float = 1.0
    apg: APG | None = None
    union_mix: bool = False

    def __post_init__(self):
        check(np.isfinite(self.negative) and self.negative >= 0, f"negative must be >= 0, got {self.negative}")
        check(np.isfinite(self.union_gain) and self.union_gain > 0, f"union_gain must be > 0, got {self.union_gain}")

    def label(self) -> str:
        return f"negative={self.negative:g},union_gain={self.union_gain:g}" + (
            f",{self.apg.label()}" if self.apg is not None else "") + (",union_mix" if self.union_mix else "")


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
        conds, owner, weights, shown, item_of = [], [], [], [], []      # item_of: generated row -> selection
        for item, selection in enumerate(selections):
            parts = (selection or Whole()).parts()
            groups = pipe.parts(scene, selection, "compose")                         # [(weights, pixel)] per part
            k = len(groups)
            mix = levers.union_mix and k > 1
            gain = levers.union_gain if k > 1 else 1.0
            for patch_w, _ in groups:
                if mix:
                    item_of.append(item)
                conds.append(pipe.condition(scene, patch_w))
                owner.append(len(item_of) - 1 if mix else len(item_of))
                weights.append(1.0 if mix else gain / k)
            if not mix:
                item_of.append(item)
            shown.append(combine_parts(groups))
            pixel = shown[-1][1]
            rest = None if any(isinstance(p, (Text, Whole)) for p in parts) else complement(pixel)
            if levers.negative > 0 and rest is not None and not mix:
                neg_w, _ = pipe.select(scene, Mask(rest))
                conds.append(pipe.condition(scene, neg_w))
                owner.append(len(item_of) - 1)
                weights.append(-levers.negative / run.cfg)
        rows = Conditions.signed(torch.cat(conds), torch.tensor(owner), torch.tensor(weights, dtype=torch.float32),
                                 len(item_of), pipe.backend.null_condition)
        z = pipe.sample(rows, run, progress=progress, guidance=levers.apg)          # (B, C, T/4, M/4)
        mel, wave = pipe.audio(z, run)
        mel, wave = mix_items(mel.cpu(), wave, torch.tensor(item_of), len(selections))
        return [Generation(wave[i], mel[i], w.cpu(), m, pipe.config.mel.sample_rate, seed, steps, sampler, cfg)
                for i, (w, m) in enumerate(shown)]

    return generate_many


def mix_items(mel: torch.Tensor, wave: torch.Tensor, item_of: torch.Tensor, items: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per selection, the sum of its generated rows' waveforms (B, samples) -> (items, samples), and
    their log-mels summed as power (log-sum-exp). A selection of one row is returned unchanged."""
    out_wave = torch.zeros((items, wave.shape[1]), dtype=wave.dtype).index_add_(0, item_of, wave)
    out_mel = torch.stack([torch.logsumexp(mel[item_of == i], dim=0) for i in range(items)])
    return out_mel, out_wave
