"""Evaluate a checkpoint on SynthScenes test scenes with the SynthScenes sound classifier.

    python -m training.evaluate --checkpoint DIR --seed-start S --scenes N --json PATH
                                [--steps K --sampler ddim|dpmpp --cfg 2.0 --device cpu|cuda]
                                [--union-mode compose|mask|both] [--worst N [--worst-dir DIR]]

Per test scene (seeds split_seeds("test", N, start=S)) the selections below are generated in
one `Pipeline.generate_many` batch, and each result is classified (8 sigmoid outputs):

    object    mask on one sounding object of a scene with >= 2 of them; target: its class
    union     masks on the first two sounding objects, `Mask(a) | Mask(b)`: the runtime's default
              composed union (one condition per object, guidance averaged); targets: both classes
    union_mask  the same two objects as the paper's single union mask `Mask(a | b)`
              (`--union-mode` compose / mask keeps only one of the two kinds; both: the default)
    silent    mask on a silent distractor (first one); target: nothing
    whole     the whole image (holistic); targets: all sounding classes
    text      the one-object caption ("a dog barking") of every sounding object, through the
              learned attention; paired with the mask selection of the same object

Metrics (JSON):
    object_accuracy   share of `object` selections whose top-1 class is the object's
    leakage           share of `object` selections in which another sounding class present in
                      the scene is detected (prob > 0.5)
    union_recall      share of `union` selections in which both classes are detected
    union_recall_mask the same for `union_mask` selections (the paper's union mask)
    whole_recall      share of `whole` selections in which every sounding class of the scene is detected
    silent_accuracy   share of `silent` selections in which no class is detected
    text_vs_mask_gap  |mean target prob with text attention - mean target prob with the mask|
                      over paired text/mask selections of the same objects
    acc               mean classifier probability of the annotated classes, over all mask
                      selections with sounding targets (object, union, whole, paired masks)
    fad               Frechet distance between classifier embeddings of the generated audio and
                      of the real target audio (the object's stem, the stems' sum, the mixture)
    kl                mean over selections of the per-class Bernoulli KL(real || generated) of
                      the classifier probabilities, averaged over the 8 classes
    is                Inception Score over the generated audio: exp(E_x KL(p(y|x) || p(y))) with
                      p(y|x) the classifier's probabilities normalised to sum to one
    by_class, by_layout, by_sounding
                      the selection metrics (object accuracy, leakage, union recalls, silent
                      accuracy, counts) per class (the object's, the silent distractor's, either
                      class of a union), per scene layout (overlap / sequence) and per number of
                      sounding objects in the scene: where the failures are
    leaked_into       per selected class (object selections): how many selections, how often each
                      other sounding class of the scene was detected in them, and how often a class
                      absent from the scene; "rates": detections per (selection, class) pair, for the
                      scene's other classes and for absent ones (a scene's leak vs sounds at random)

`--worst N` writes the N worst object / union / silent selections (ranked by `badness`) as
WAV + PNG (scene with the selection, its patch coverage, the generated log-mel) and an index
`worst.json`, to look at and listen to.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from objaudio_rt.core.gate import SILENT_LOG_MEL
from objaudio_rt.core.errors import ObjaudioError, check, command
from objaudio_rt.core.guidance import APG
from objaudio_rt.core.options import BACKEND_CHOICES, SAMPLERS, RunOptions, add_path_flags, parse_backend_option
from objaudio_rt.core.pipeline import Pipeline
from objaudio_rt.core.selection import Mask, Text, Whole
from objaudio_rt.core.threads import usable_cores, use_threads

from .classifier import load_classifier
from .data import single_caption
from .levers import Levers, levered_generate_many
from .synthscenes import ALL_CLASSES, SOUNDING_CLASSES, generate_scene, split_seeds

DEFAULT_CLASSIFIER = Path(__file__).parent / "assets" / "classifier.safetensors"
UNION_MODES = ("compose", "mask", "both")     # which union selections a scene gets (see the docstring)
ITEM_KINDS = ("object", "union", "union_mask", "pair_mask", "text", "silent", "whole")


@dataclass
class Item:
    kind: str                      # object | union | union_mask | silent | whole | text | pair_mask
    targets: list[str]             # sounding classes that should be heard
    others: list[str]              # other sounding classes present in the scene
    real: np.ndarray | None        # (T,) the real target audio; None for silent
    pair: int = -1                 # text items: index of the paired mask item in the scene batch
    seed: int = -1                 # the scene's seed
    selection: object = None       # the Selection generated
    layout: str = "overlap"        # the scene's layout: overlap / sequence
    sounding: int = 0              # sounding objects in the scene
    silent_class: str | None = None   # silent items: the distractor's class

    @property
    def subjects(self) -> list[str]:
        """The classes a selection is about: its targets, or the silent distractor's class."""
        return [self.silent_class] if self.kind == "silent" else self.targets


@dataclass
class Results:
    probs: list[np.ndarray] = field(default_factory=list)     # (8,) per item
    gen_embed: list[np.ndarray] = field(default_factory=list)
    real_embed: list[np.ndarray] = field(default_factory=list)
    real_probs: list[np.ndarray] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)   # (text row, mask row) in items
    waves: list[np.ndarray] = field(default_factory=list)         # (T,) generated audio per item
    mels: list[np.ndarray | None] = field(default_factory=list)   # (frames, n_mels) its log-mel, if known


def scene_selections(scene, union_mode: str = "both", kinds: tuple[str, ...] | None = None) -> tuple[list, list[Item]]:
    """The selections of one scene and what each should sound like (see the module docstring).
    `kinds`: keep only these kinds (a text item whose paired mask is dropped gets pair -1)."""
    check(union_mode in UNION_MODES, f"unknown union mode {union_mode!r}: use one of {', '.join(UNION_MODES)}")
    sounding = [i for i, s in enumerate(scene.sounding) if s]
    stem_of = {obj: k for k, obj in enumerate(scene.sounding_indices)}
    classes = scene.classes
    sels, items = [], []
    if len(sounding) >= 2:
        for i in sounding:
            others = [classes[j] for j in sounding if j != i]
            sels.append(Mask(scene.masks[i]))
            items.append(Item("object", [classes[i]], others, scene.stems[stem_of[i]]))
        a, b = sounding[:2]
        both, rest = [classes[a], classes[b]], [classes[j] for j in sounding[2:]]
        real = scene.stems[stem_of[a]] + scene.stems[stem_of[b]]
        if union_mode != "mask":
            sels.append(Mask(scene.masks[a]) | Mask(scene.masks[b]))
            items.append(Item("union", both, rest, real))
        if union_mode != "compose":
            sels.append(Mask(scene.masks[a] | scene.masks[b]))
            items.append(Item("union_mask", both, rest, real))
        mask_rows = {i: n for n, i in enumerate(sounding)}
    elif len(sounding) == 1:
        i = sounding[0]
        sels.append(Mask(scene.masks[i]))
        items.append(Item("pair_mask", [classes[i]], [], scene.stems[0]))
        mask_rows = {i: 0}
    else:
        mask_rows = {}
    for i in sounding:
        sels.append(Text(single_caption(scene.seed, classes[i])))
        items.append(Item("text", [classes[i]], [classes[j] for j in sounding if j != i],
                          scene.stems[stem_of[i]], pair=mask_rows[i]))
    silent = [i for i, s in enumerate(scene.sounding) if not s]
    if silent:
        sels.append(Mask(scene.masks[silent[0]]))
        items.append(Item("silent", [], [classes[j] for j in sounding], None, silent_class=classes[silent[0]]))
    if sounding:
        sels.append(Whole())
        items.append(Item("whole", [classes[j] for j in sounding], [], scene.mixture))
    for sel, it in zip(sels, items):
        it.seed, it.selection, it.layout, it.sounding = scene.seed, sel, scene.layout, len(sounding)
    if kinds is not None:
        check(set(kinds) <= set(ITEM_KINDS), f"unknown selection kinds {sorted(set(kinds) - set(ITEM_KINDS))}: "
                                              f"use {', '.join(ITEM_KINDS)}")
        keep = [n for n, it in enumerate(items) if it.kind in kinds]
        moved = {old: new for new, old in enumerate(keep)}
        for it in items:
            if it.kind == "text":
                it.pair = moved.get(it.pair, -1)
        sels, items = [sels[n] for n in keep], [items[n] for n in keep]
    return sels, items


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD between Gaussians fitted to a (N, D) and b (M, D)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(ca @ cb)
    covmean = (covmean[0] if isinstance(covmean, tuple) else covmean).real     # scipy < 1.16 may return a tuple
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * covmean))


def _mean(values) -> float | None:
    """Mean as a float; None (JSON null) when there is nothing to average."""
    return float(np.mean(values)) if len(values) else None


IDX = {c: i for i, c in enumerate(SOUNDING_CLASSES)}
SELECTION_KINDS = ("object", "union", "union_mask", "silent")


def selection_metrics(res: Results, rows: list[int]) -> dict:
    """Object accuracy, leakage, union recalls and silent accuracy over the given rows of `res`."""
    probs = res.probs

    def of(kind):
        return [n for n in rows if res.items[n].kind == kind]

    def recall(kind):
        return _mean([all(probs[n][IDX[c]] > 0.5 for c in res.items[n].targets) for n in of(kind)])

    obj = of("object")
    return {
        "object_accuracy": _mean([SOUNDING_CLASSES[int(probs[n].argmax())] == res.items[n].targets[0] for n in obj]),
        "leakage": _mean([any(probs[n][IDX[c]] > 0.5 for c in res.items[n].others) for n in obj]),
        "union_recall": recall("union"), "union_recall_mask": recall("union_mask"), "whole_recall": recall("whole"),
        "silent_accuracy": _mean([not (probs[n] > 0.5).any() for n in of("silent")]),
        "counts": {k: len(of(k)) for k in SELECTION_KINDS},
    }


def breakdown(res: Results) -> dict:
    """`selection_metrics` per class, per scene layout and per number of sounding objects."""
    rows = range(len(res.items))

    def split(key):
        groups = {}
        for n in rows:
            for value in key(res.items[n]):
                groups.setdefault(value, []).append(n)
        return {str(v): selection_metrics(res, groups[v]) for v in sorted(groups, key=str)}

    by_class = split(lambda it: it.subjects)
    return {"by_class": {c: by_class[c] for c in ALL_CLASSES if c in by_class},
            "by_layout": split(lambda it: [it.layout]), "by_sounding": split(lambda it: [it.sounding]),
            "leaked_into": leaked_into(res)}


def leaked_into(res: Results) -> dict:
    """For the `object` selections, per selected class: how many selections, how often each other
    sounding class of the scene was detected (prob > 0.5) in them, and how often each sounding class
    absent from the scene was (under "absent"). Under "rates": detections per (selection, class) pair for
    the scene's other classes and for the absent ones: a leak that is the scene's shows as the first
    well above the second; the same rate for both is the model sounding classes at random."""
    out, pairs = {}, {"other": [0, 0], "absent": [0, 0]}
    for n, it in enumerate(res.items):
        if it.kind != "object":
            continue
        row = out.setdefault(it.targets[0], {"selections": 0, "absent": {}})
        row["selections"] += 1
        absent = [c for c in SOUNDING_CLASSES if c not in it.targets and c not in it.others]
        for group, classes in (("other", it.others), ("absent", absent)):
            for c in classes:
                hit = bool(res.probs[n][IDX[c]] > 0.5)
                pairs[group][0] += hit
                pairs[group][1] += 1
                if hit and group == "other":
                    row[c] = row.get(c, 0) + 1
                elif hit:
                    row["absent"][c] = row["absent"].get(c, 0) + 1
    rows = {c: out[c] for c in ALL_CLASSES if c in out}
    rows["rates"] = {g: (h / t if t else None) for g, (h, t) in pairs.items()}
    return rows


def badness(item: Item, probs: np.ndarray) -> float | None:
    """How badly a selection missed, in [0, 2] (None for kinds not ranked): an object selection
    1 - p(target) + the largest p of another sounding class in the scene; a union 1 - the smaller
    p of its two classes; a silent distractor the largest p of any class."""
    if item.kind == "object":
        return 1 - float(probs[IDX[item.targets[0]]]) + max([float(probs[IDX[c]]) for c in item.others], default=0.0)
    if item.kind in ("union", "union_mask"):
        return 1 - min(float(probs[IDX[c]]) for c in item.targets)
    if item.kind == "silent":
        return float(probs.max())
    return None


def _distribution_metrics(res: Results, probs: np.ndarray, rows: list[int]) -> dict:
    """FAD, KL and IS over the given rows (see the module docstring)."""
    gen_e = np.stack([res.gen_embed[n] for n in rows])
    real_e = np.stack([res.real_embed[n] for n in rows])
    real_p = np.stack([res.real_probs[n] for n in rows]).clip(1e-6, 1 - 1e-6)
    gen_p = probs[rows].clip(1e-6, 1 - 1e-6)
    kl = np.mean(real_p * np.log(real_p / gen_p) + (1 - real_p) * np.log((1 - real_p) / (1 - gen_p)))
    p_yx = gen_p / gen_p.sum(1, keepdims=True)
    p_y = p_yx.mean(0, keepdims=True)
    inception = float(np.exp(np.mean(np.sum(p_yx * np.log(p_yx / p_y), axis=1))))
    return {"fad": frechet_distance(gen_e, real_e) if len(rows) > 1 else None, "kl": float(kl), "is": inception}


def summarize(res: Results, scenes: int, steps: int, sampler: str, cfg: float) -> dict:
    probs = np.stack(res.probs)                                                    # (N, 8)
    kinds = np.array([it.kind for it in res.items])
    headline = selection_metrics(res, list(range(len(res.items))))
    text_p = [probs[t, IDX[res.items[t].targets[0]]] for t, _ in res.pairs]
    mask_p = [probs[m, IDX[res.items[m].targets[0]]] for _, m in res.pairs]
    target_rows = [n for n, k in enumerate(kinds) if k in ("object", "union", "whole", "pair_mask")]
    acc = _mean([probs[n, [IDX[c] for c in res.items[n].targets]].mean() for n in target_rows])
    distribution = _distribution_metrics(res, probs, target_rows) if target_rows else {"fad": None, "kl": None,
                                                                                       "is": None}
    text_acc, mask_acc = _mean(text_p), _mean(mask_p)
    return {
        **{k: v for k, v in headline.items() if k != "counts"},
        "text_vs_mask_gap": abs(text_acc - mask_acc) if text_p else None,
        "text_acc": text_acc, "mask_acc": mask_acc,
        "acc": acc, **distribution,
        "scenes": scenes, "selections": len(res.items),
        "counts": {k: int((kinds == k).sum()) for k in ("object", "union", "union_mask", "silent", "text", "whole",
                                                         "pair_mask")},
        "steps": steps, "sampler": sampler, "cfg": cfg,
        **breakdown(res),
    }


@torch.no_grad()
def generate(pipe: Pipeline, seeds: list[int], steps: int, sampler: str, cfg: float, progress: bool = True,
             union_mode: str = "both", generate_many=None, on_scene=None,
             kinds: tuple[str, ...] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per scene, the generated waves (n, T) and log-mels (n, frames, n_mels) of `scene_selections`.

    `generate_many(scene, selections, steps=, sampler=, cfg=, seed=, progress=)`: default
    `pipe.generate_many` (an experiment may pass another generation rule). `on_scene(seed, waves,
    mels)` is called after each scene (saving progress)."""
    from tqdm.auto import tqdm

    generate_many = generate_many or pipe.generate_many
    waves, mels = [], []
    c = pipe.config
    for seed in tqdm(seeds, desc="generate", disable=not progress):
        scene = generate_scene(seed, seconds=c.clip_seconds)
        sels, _ = scene_selections(scene, union_mode, kinds)
        if not sels:
            waves.append(np.zeros((0, int(c.clip_seconds * c.mel.sample_rate)), np.float32))
            mels.append(np.zeros((0, pipe.latent_shape(c.clip_seconds)[0][1] * c.vae.downsample_factor,
                                  c.mel.n_mels), np.float32))
        else:
            encoded = pipe.encode_image(scene.image)
            gens = generate_many(encoded, sels, steps=steps, sampler=sampler, cfg=cfg, seed=seed, progress=False)
            waves.append(torch.stack([g.wave for g in gens]).numpy())
            mels.append(torch.stack([g.mel for g in gens]).numpy())
        if on_scene is not None:
            on_scene(seed, waves[-1], mels[-1])
    return waves, mels


def union_mode_of(meta: dict) -> str:
    """The union mode clips were generated with (files before --union-mode: layout 1 = mask, 2 = both)."""
    return meta.get("union_mode") or {1: "mask", 2: "both"}[meta.get("layout", 1)]


@torch.no_grad()
def score(classifier, seeds: list[int], scene_waves: list[np.ndarray], seconds: float,
          device: str | torch.device = "cpu", union_mode: str = "both", keep: str | None = None,
          scene_mels: list[np.ndarray] | None = None, kinds: tuple[str, ...] | None = None) -> Results:
    """Classify generated and real audio of every selection (the scenes are regenerated from seeds).

    union_mode: the mode the clips were generated with; keep: score only this mode's unions
    (e.g. "compose" of "both" clips); scene_mels: the log-mels, kept for `write_worst`."""
    keep = keep or union_mode
    check(keep in (union_mode, "compose", "mask") and (union_mode == "both" or keep == union_mode),
          f"clips generated with --union-mode {union_mode} cannot be scored as {keep}")
    res = Results()
    classifier = classifier.to(device).eval()
    for s, (seed, gen) in enumerate(zip(seeds, scene_waves)):
        _, items = scene_selections(generate_scene(seed, seconds=seconds), union_mode, kinds)
        if not items:
            continue
        if len(items) != len(gen):
            raise ObjaudioError(f"scene {seed}: {len(gen)} generated clips for {len(items)} selections")
        rows = [n for n, it in enumerate(items)                 # unions last: text pairs keep their indices
                if keep == union_mode or it.kind != {"compose": "union_mask", "mask": "union"}[keep]]
        items = [items[n] for n in rows]
        waves = torch.from_numpy(np.asarray(gen, np.float32)[rows]).to(device)       # (n, T)
        reals = [it.real if it.real is not None else np.zeros(waves.shape[1], np.float32) for it in items]
        real_w = torch.from_numpy(np.stack(reals)).to(device)
        probs = torch.sigmoid(classifier(waves)).cpu().numpy()
        gen_embed = classifier.embed(waves).cpu().numpy()
        real_probs = torch.sigmoid(classifier(real_w)).cpu().numpy()
        real_embed = classifier.embed(real_w).cpu().numpy()
        base = len(res.items)
        for n, it in enumerate(items):
            res.items.append(it)
            res.probs.append(probs[n])
            res.gen_embed.append(gen_embed[n])
            res.real_embed.append(real_embed[n])
            res.real_probs.append(real_probs[n])
            res.waves.append(np.asarray(gen[rows[n]], np.float32))
            res.mels.append(None if scene_mels is None else np.asarray(scene_mels[s][rows[n]], np.float32))
            if it.kind == "text" and it.pair >= 0:
                res.pairs.append((base + n, base + it.pair))
    return res


def write_worst(folder: Path, res: Results, n: int, meta: dict, image_size: int = 112, patch_size: int = 16) -> list:
    """The n worst-ranked selections (`badness`) as NN-kind-sSEED.wav + .png, and worst.json."""
    from objaudio_rt.core.audio import MelConfig, mel_spectrogram, save_wav
    from objaudio_rt.core.grounding import mask_to_patch_coverage
    from objaudio_rt.core.pipeline import Generation
    from objaudio_rt.frontends.viz import save_overview

    ranked = [(b, r) for r in range(len(res.items)) if (b := badness(res.items[r], res.probs[r])) is not None]
    ranked.sort(key=lambda x: -x[0])
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for rank, (bad, r) in enumerate(ranked[:n], 1):
        it, probs = res.items[r], res.probs[r]
        scene = generate_scene(it.seed, seconds=meta["clip_seconds"])
        masks = [np.asarray(p.mask, np.float32) for p in it.selection.parts()]
        pixel = np.max(np.stack(masks), axis=0)                                    # (H, W)
        cover = mask_to_patch_coverage(torch.from_numpy(pixel)[None], image_size, patch_size)[0]   # (P,)
        wave = torch.from_numpy(res.waves[r])
        mel = res.mels[r] if res.mels[r] is not None else mel_spectrogram(wave[None], MelConfig())[0].numpy()
        gen = Generation(wave, torch.from_numpy(mel), cover, pixel, 16000, it.seed, meta["steps"], meta["sampler"],
                         meta["cfg"])
        heard = [c for c in SOUNDING_CLASSES if probs[IDX[c]] > 0.5]
        want = "+".join(it.targets) if it.targets else f"silence ({it.silent_class})"
        label = (f"#{rank} {it.kind}, scene {it.seed} ({it.layout}), badness {bad:.2f}\nwant {want}\n"
                 f"heard {'+'.join(heard) or 'nothing'}")
        stem = f"{rank:02d}-{it.kind}-s{it.seed}"
        save_wav(folder / f"{stem}.wav", wave, 16000, force=True)
        save_overview(folder / f"{stem}.png", scene.image, [(label, gen)], force=True)
        index.append({"rank": rank, "file": stem, "kind": it.kind, "seed": it.seed, "layout": it.layout,
                      "targets": it.targets, "others": it.others, "silent_class": it.silent_class,
                      "badness": round(bad, 4), "probs": {c: round(float(probs[IDX[c]]), 4) for c in SOUNDING_CLASSES}})
    (folder / "worst.json").write_text(json.dumps(index, indent=2))
    return index


def load_mels(path: Path) -> list[np.ndarray]:
    """The per-scene log-mels (n, frames, n_mels) of a `save_audio` file."""
    data = np.load(path)
    bounds = np.cumsum(np.concatenate([[0], data["counts"]]))
    mels = data["mels"].astype(np.float32)
    return [mels[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


MU = 255.0


def mu_law_encode(x: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> uint8 (8-bit mu-law, for storing generated audio compactly)."""
    y = np.sign(x) * np.log1p(MU * np.abs(np.clip(x, -1, 1))) / np.log1p(MU)
    return np.round((y + 1) / 2 * MU).astype(np.uint8)


def mu_law_decode(q: np.ndarray) -> np.ndarray:
    y = q.astype(np.float32) / MU * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU).astype(np.float32)


def save_audio(path: Path, seeds: list[int], scene_waves: list[np.ndarray], scene_mels: list[np.ndarray],
               meta: dict) -> None:
    """Generated clips (8-bit mu-law) and the log-mels they were vocoded from (float16), per scene.
    Written through a temporary file, so an interrupted run leaves the previous save intact."""
    import io

    from objaudio_rt.frontends.outputs import write_together

    counts = np.array([len(w) for w in scene_waves])
    data = io.BytesIO()
    np.savez(data, audio=mu_law_encode(np.concatenate(scene_waves)), mels=np.concatenate(scene_mels).astype(np.float16),
             counts=counts, seeds=np.array(seeds), meta=json.dumps(meta))
    write_together([(path, data.getvalue())], force=True)


RESUME_KEYS = ("checkpoint", "steps", "sampler", "cfg", "union_mode", "clip_seconds", "options", "kinds", "backend",
               "backend_options", "union_runtime")


def resume_clips(path: Path | None, meta: dict) -> tuple[dict, float]:
    """Scenes already generated into a `--save-audio` file by an interrupted run of the same
    settings: ({seed: (waves, mels)}, generate seconds spent on them)."""
    if path is None or not path.is_file():
        return {}, 0.0
    seeds, waves, old = load_audio(path)
    same = {k: old.get(k) for k in RESUME_KEYS} == {k: meta.get(k) for k in RESUME_KEYS}
    check(same, f"{path} holds clips of other settings ({ {k: old.get(k) for k in RESUME_KEYS} }): "
                "choose another --save-audio path, or delete it to start again")
    return dict(zip(seeds, zip(waves, load_mels(path)))), float(old.get("generate_seconds", 0.0))


def load_audio(path: Path, revocode: str | None = None) -> tuple[list[int], list[np.ndarray], dict]:
    """Read `save_audio`'s file. `revocode`: a checkpoint whose vocoder re-synthesises the saved
    log-mels (scoring a vocoder-only change without regenerating). A clip whose log-mel is digital
    silence throughout (the silence gate's answer: the pipeline gives it no vocoder) keeps its saved
    waveform, as the pipeline would with any vocoder."""
    data = np.load(path)
    meta = json.loads(str(data["meta"]))
    if revocode is None:
        waves = mu_law_decode(data["audio"])
    else:
        from objaudio_rt.modelio.checkpoint import load_checkpoint

        vocoder = load_checkpoint(revocode)[0].vocoder
        n = data["audio"].shape[1]
        with torch.no_grad():
            mels = torch.from_numpy(data["mels"].astype(np.float32))
            waves = torch.cat([vocoder(chunk)[:, :n] for chunk in mels.split(32)]).numpy()
        silent = (mels.flatten(1).amax(dim=1) <= SILENT_LOG_MEL + 0.01).numpy()   # float16's rounding
        waves[silent] = mu_law_decode(data["audio"][silent])
        meta["revocoded_with"] = str(revocode)
    bounds = np.cumsum(np.concatenate([[0], data["counts"]]))
    return [int(s) for s in data["seeds"]], [waves[a:b] for a, b in zip(bounds[:-1], bounds[1:])], meta


def test_seeds(ranges: str) -> list[int]:
    """The test-split seeds of "S:N,S:N,...": N scenes from index S, each range in turn, no repeats."""
    seeds = []
    for part in ranges.split(","):
        start, _, count = part.partition(":")
        check(start.strip().isdigit() and count.strip().isdigit() and int(count) > 0,
              f"--ranges {ranges!r}: write START:COUNT pairs separated by commas, e.g. 1000:25,2000:25")
        seeds += split_seeds("test", int(count), start=int(start))
    check(len(set(seeds)) == len(seeds), f"--ranges {ranges!r}: the ranges overlap")
    return seeds


def parse_apg(text: str | None) -> APG | None:
    """--apg ETA[:R] -> APG (None: classifier-free guidance)."""
    if text is None:
        return None
    eta, _, r = text.partition(":")
    try:
        return APG(float(eta), float(r) if r else 0.0)
    except ValueError:
        raise ObjaudioError(f"--apg must be ETA or ETA:R (numbers), got {text!r}") from None


@command("python -m training.evaluate")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (or random:PRESET for random weights)")
    add_path_flags(p, "evaluate")
    p.add_argument("--backend", default="eager", choices=BACKEND_CHOICES,
                   help="the backend that generates (default eager, the reference)")
    p.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a backend option (backends.backend_options), e.g. vae_dtype=bf16; recorded in the report")
    p.add_argument("--seed-start", type=int, default=0, help="first test-split seed index")
    p.add_argument("--scenes", type=int, default=150)
    p.add_argument("--ranges", default=None, metavar="S:N,S:N",
                   help="several test ranges instead of --seed-start/--scenes: N scenes from index S, each")
    p.add_argument("--json", required=True, type=Path)
    p.add_argument("--steps", type=int, default=None, help="default: the checkpoint's default_steps")
    p.add_argument("--sampler", choices=SAMPLERS, default=None)
    p.add_argument("--cfg", type=float, default=None)
    p.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=min(2, usable_cores()),
                   help="torch CPU threads, 1 to the cores this process may use (default 2)")
    p.add_argument("--save-audio", type=Path, help="also write the generated clips (8-bit mu-law .npz)")
    p.add_argument("--rescore", type=Path,
                   help="score clips saved by --save-audio (e.g. with another classifier); no generation")
    p.add_argument("--first", type=int, default=None, metavar="N",
                   help="with --rescore: score only the file's first N scenes (to pair runs of different lengths)")
    p.add_argument("--revocode", default=None,
                   help="with --rescore: re-synthesise the saved mels with this checkpoint's vocoder")
    p.add_argument("--union-mode", choices=UNION_MODES, default=None,
                   help="unions generated / scored: compose (the runtime's default), mask (the paper's), "
                        "both (default; with --rescore: the clips' own)")
    p.add_argument("--negative", type=float, default=0.0, metavar="LAM",
                   help="lever (training/levers.py): subtract LAM x the rest-of-scene guidance direction")
    p.add_argument("--union-gain", type=float, default=1.0, metavar="G",
                   help="lever (training/levers.py): each of a composed union's k parts gets guidance weight G/k")
    p.add_argument("--union-runtime", choices=("mix", "compose"), default=None,
                   help="how the runtime generates the 'union' selections Mask(a) | Mask(b) (Pipeline.generate_many's "
                        "union): mix (the runtime's default: each part alone, waveforms summed) or compose (one "
                        "pass, guidance averaged: the union_recall of every report made before this option, and "
                        "the levers' default)")
    p.add_argument("--core", type=float, default=0.0, metavar="C",
                   help="lever (training/levers.py): a mask's patch coverage kept only where >= C x its largest")
    p.add_argument("--apg", default=None, metavar="ETA[:R]",
                   help="lever (training/levers.py): adaptive projected guidance, keeping ETA of the update's part "
                        "parallel to the conditional prediction, the update's norm capped at R (default: none)")
    p.add_argument("--no-silence-gate", action="store_true",
                   help="generate every selection, even those the checkpoint's silence gate calls silent (the "
                        "paper's behaviour; core/gate.py). The levers above never use the gate")
    p.add_argument("--kinds", default=None, help="generate only these selection kinds, comma-separated "
                                                 f"({', '.join(ITEM_KINDS)}; default: all)")
    p.add_argument("--worst", type=int, default=0, metavar="N",
                   help="write the N worst object / union / silent selections as WAV + PNG")
    p.add_argument("--worst-dir", type=Path, default=None, help="folder for --worst (default: JSON path + -worst)")
    args = p.parse_args(argv)
    use_threads(args.threads)
    classifier = load_classifier(args.classifier)
    if args.rescore is not None:
        check(args.rescore.is_file(), f"--rescore {args.rescore}: no such file (write one with --save-audio)")
        seeds, scene_waves, meta = load_audio(args.rescore, args.revocode)
        scene_mels = load_mels(args.rescore) if args.revocode is None and args.worst else None
        if args.first is not None:
            check(0 < args.first <= len(seeds), f"--first {args.first}: the file holds {len(seeds)} scenes")
            seeds, scene_waves = seeds[:args.first], scene_waves[:args.first]
            scene_mels = None if scene_mels is None else scene_mels[:args.first]
        seconds = meta["clip_seconds"]
    else:
        backend_options = dict(parse_backend_option(text) for text in args.backend_option)
        pipe = Pipeline.from_pretrained(args.checkpoint, device=args.device, path=args.path, backend=args.backend,
                                        backend_options=backend_options)
        run = RunOptions(steps=args.steps, sampler=args.sampler, cfg=args.cfg,
                         silence_gate=False if args.no_silence_gate else None).resolve(pipe.config)
        steps, sampler, cfg = run.steps, run.sampler, run.cfg
        seeds = test_seeds(args.ranges) if args.ranges else split_seeds("test", args.scenes, start=args.seed_start)
        seconds = pipe.config.clip_seconds
        levers = Levers(args.negative, args.union_gain, parse_apg(args.apg), args.core)
        lever_run = levers != Levers()
        check(not (lever_run and args.union_runtime == "mix"),
              "the levers compose unions their own way: leave out --union-runtime mix with --negative, "
              "--union-gain, --core or --apg")
        args.union_runtime = args.union_runtime or ("compose" if lever_run else "mix")
        meta = {"union_mode": args.union_mode or "both", "steps": steps, "sampler": sampler, "cfg": cfg,
                "clip_seconds": seconds, "device": str(pipe.device), "checkpoint": pipe.source,
                "backend": pipe.backend_name, "backend_options": backend_options or None,
                "options": levers.label() if lever_run else None,
                "silence_gate": run.silence_gate and not lever_run,
                "kinds": None if args.kinds is None else args.kinds.split(","),
                # None for compose, so that clips saved before this key resume
                "union_runtime": None if args.union_runtime == "compose" else args.union_runtime}
        done, spent = resume_clips(args.save_audio, meta)      # a rerun continues an interrupted one
        t = time.time()

        def on_scene(seed, waves, mels):
            done[seed] = (waves, mels)
            meta["generate_seconds"] = round(spent + time.time() - t, 1)
            if args.save_audio is not None:
                order = [s for s in seeds if s in done]
                save_audio(args.save_audio, order, [done[s][0] for s in order], [done[s][1] for s in order],
                           meta)

        generate(pipe, [s for s in seeds if s not in done], steps, sampler, cfg, union_mode=meta["union_mode"],
                 on_scene=on_scene, generate_many=levered_generate_many(pipe, levers) if lever_run else
                 functools.partial(pipe.generate_many, silence_gate=run.silence_gate, union=args.union_runtime),
                 kinds=meta["kinds"])
        meta["generate_seconds"] = round(spent + time.time() - t, 1)
        scene_waves, scene_mels = [done[s][0] for s in seeds], [done[s][1] for s in seeds]
    res = score(classifier, seeds, scene_waves, seconds, union_mode=union_mode_of(meta), keep=args.union_mode,
                scene_mels=scene_mels, kinds=meta.get("kinds"))
    result = summarize(res, len(seeds), meta["steps"], meta["sampler"], meta["cfg"])
    if args.worst > 0:
        folder = args.worst_dir or args.json.with_name(args.json.stem + "-worst")
        write_worst(folder, res, args.worst, meta)
        result["worst_dir"] = str(folder)
    n = max(1, result["selections"])
    result.update({"union_mode": args.union_mode or union_mode_of(meta), "options": meta.get("options"),
                   "union_runtime": meta.get("union_runtime") or "compose",
                   "generate_seconds": meta["generate_seconds"], "device": meta["device"],
                   "seconds_per_selection": round(meta["generate_seconds"] / n, 3),
                   "checkpoint": meta["checkpoint"], "classifier": str(args.classifier),
                   "silence_gate": meta.get("silence_gate", False),
                   "backend": meta.get("backend", "eager"), "backend_options": meta.get("backend_options"),
                   "revocoded_with": meta.get("revocoded_with")})
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
