"""Evaluate a checkpoint on SynthScenes test scenes with the SynthScenes sound classifier.

    python -m training.evaluate --checkpoint DIR --seed-start S --scenes N --json PATH
                                [--steps K --sampler ddim|dpmpp --cfg 2.0 --device cpu|cuda]

Per test scene (seeds split_seeds("test", N, start=S)) the selections below are generated in
one `Pipeline.generate_many` batch, and each result is classified (8 sigmoid outputs):

    object    mask on one sounding object of a scene with >= 2 of them; target: its class
    union     masks on the first two sounding objects, `Mask(a) | Mask(b)`: the runtime's default
              composed union (one condition per object, guidance averaged); targets: both classes
    union_mask  the same two objects as the paper's single union mask `Mask(a | b)`
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
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from objaudio_rt.errors import ObjaudioError, command
from objaudio_rt.options import SAMPLERS, RunOptions
from objaudio_rt.pipeline import Pipeline
from objaudio_rt.selection import Mask, Text, Whole

from .classifier import load_classifier
from .data import single_caption
from .synthscenes import SOUNDING_CLASSES, generate_scene, split_seeds

DEFAULT_CLASSIFIER = Path(__file__).parent / "assets" / "classifier.safetensors"


@dataclass
class Item:
    kind: str                      # object | union | union_mask | silent | whole | text | pair_mask
    targets: list[str]             # sounding classes that should be heard
    others: list[str]              # other sounding classes present in the scene
    real: np.ndarray | None        # (T,) the real target audio; None for silent
    pair: int = -1                 # text items: index of the paired mask item in the scene batch


@dataclass
class Results:
    probs: list[np.ndarray] = field(default_factory=list)     # (8,) per item
    gen_embed: list[np.ndarray] = field(default_factory=list)
    real_embed: list[np.ndarray] = field(default_factory=list)
    real_probs: list[np.ndarray] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)   # (text row, mask row) in items


def scene_selections(scene) -> tuple[list, list[Item]]:
    """The selections of one scene and what each should sound like (see the module docstring)."""
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
        sels.append(Mask(scene.masks[a]) | Mask(scene.masks[b]))
        items.append(Item("union", both, rest, real))
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
        items.append(Item("silent", [], [classes[j] for j in sounding], None))
    if sounding:
        sels.append(Whole())
        items.append(Item("whole", [classes[j] for j in sounding], [], scene.mixture))
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


def summarize(res: Results, scenes: int, steps: int, sampler: str, cfg: float) -> dict:
    idx = {c: i for i, c in enumerate(SOUNDING_CLASSES)}
    probs = np.stack(res.probs)                                                    # (N, 8)
    kinds = np.array([it.kind for it in res.items])

    def rows(kind):
        return [n for n, k in enumerate(kinds) if k == kind]

    obj = rows("object")
    object_accuracy = _mean([SOUNDING_CLASSES[int(probs[n].argmax())] == res.items[n].targets[0] for n in obj])
    leakage = _mean([any(probs[n, idx[c]] > 0.5 for c in res.items[n].others) for n in obj])
    def recall(kind):
        return _mean([all(probs[n, idx[c]] > 0.5 for c in res.items[n].targets) for n in rows(kind)])

    union_recall, union_recall_mask = recall("union"), recall("union_mask")
    silent = rows("silent")
    silent_accuracy = _mean([not (probs[n] > 0.5).any() for n in silent])
    text_p = [probs[t, idx[res.items[t].targets[0]]] for t, _ in res.pairs]
    mask_p = [probs[m, idx[res.items[m].targets[0]]] for _, m in res.pairs]
    target_rows = [n for n, k in enumerate(kinds) if k in ("object", "union", "whole", "pair_mask")]
    acc = _mean([probs[n, [idx[c] for c in res.items[n].targets]].mean() for n in target_rows])
    gen_e = np.stack([res.gen_embed[n] for n in target_rows])
    real_e = np.stack([res.real_embed[n] for n in target_rows])
    real_p = np.stack([res.real_probs[n] for n in target_rows]).clip(1e-6, 1 - 1e-6)
    gen_p = probs[target_rows].clip(1e-6, 1 - 1e-6)
    kl = np.mean(real_p * np.log(real_p / gen_p) + (1 - real_p) * np.log((1 - real_p) / (1 - gen_p)))
    p_yx = gen_p / gen_p.sum(1, keepdims=True)
    p_y = p_yx.mean(0, keepdims=True)
    inception = float(np.exp(np.mean(np.sum(p_yx * np.log(p_yx / p_y), axis=1))))
    text_acc, mask_acc = _mean(text_p), _mean(mask_p)
    return {
        "object_accuracy": object_accuracy, "leakage": leakage,
        "union_recall": union_recall, "union_recall_mask": union_recall_mask, "silent_accuracy": silent_accuracy,
        "text_vs_mask_gap": abs(text_acc - mask_acc) if text_p else None,
        "text_acc": text_acc, "mask_acc": mask_acc,
        "acc": acc, "fad": frechet_distance(gen_e, real_e) if len(target_rows) > 1 else None,
        "kl": float(kl), "is": inception,
        "scenes": scenes, "selections": len(res.items),
        "counts": {k: int((kinds == k).sum()) for k in ("object", "union", "union_mask", "silent", "text", "whole",
                                                         "pair_mask")},
        "steps": steps, "sampler": sampler, "cfg": cfg,
    }


@torch.no_grad()
def generate(pipe: Pipeline, seeds: list[int], steps: int, sampler: str, cfg: float,
             progress: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per scene, the generated waves (n, T) and log-mels (n, frames, n_mels) of `scene_selections`."""
    from tqdm.auto import tqdm

    waves, mels = [], []
    c = pipe.config
    for seed in tqdm(seeds, desc="generate", disable=not progress):
        scene = generate_scene(seed, seconds=c.clip_seconds)
        sels, _ = scene_selections(scene)
        if not sels:
            waves.append(np.zeros((0, int(c.clip_seconds * c.mel.sample_rate)), np.float32))
            mels.append(np.zeros((0, pipe.latent_shape(c.clip_seconds)[0][1] * c.vae.downsample_factor,
                                  c.mel.n_mels), np.float32))
            continue
        encoded = pipe.encode_image(scene.image)
        gens = pipe.generate_many(encoded, sels, steps=steps, sampler=sampler, cfg=cfg, seed=seed, progress=False)
        waves.append(torch.stack([g.wave for g in gens]).numpy())
        mels.append(torch.stack([g.mel for g in gens]).numpy())
    return waves, mels


LAYOUT = 2       # clips files: 2 = per two-object scene a composed union and a union mask; 1 = a union mask only


@torch.no_grad()
def score(classifier, seeds: list[int], scene_waves: list[np.ndarray], seconds: float,
          device: str | torch.device = "cpu", layout: int = LAYOUT) -> Results:
    """Classify generated and real audio of every selection (the scenes are regenerated from seeds).

    layout 1: clips saved before composed unions existed; their one union clip is the union mask."""
    res = Results()
    classifier = classifier.to(device).eval()
    for seed, gen in zip(seeds, scene_waves):
        _, items = scene_selections(generate_scene(seed, seconds=seconds))
        if layout == 1:
            items = [it for it in items if it.kind != "union"]
        if not items:
            continue
        if len(items) != len(gen):
            raise ObjaudioError(f"scene {seed}: {len(gen)} generated clips for {len(items)} selections")
        waves = torch.from_numpy(np.asarray(gen, np.float32)).to(device)              # (n, T)
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
            if it.kind == "text":
                res.pairs.append((base + n, base + it.pair))
    return res


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
    """Generated clips (8-bit mu-law) and the log-mels they were vocoded from (float16), per scene."""
    counts = np.array([len(w) for w in scene_waves])
    np.savez(path, audio=mu_law_encode(np.concatenate(scene_waves)),
             mels=np.concatenate(scene_mels).astype(np.float16), counts=counts, seeds=np.array(seeds),
             meta=json.dumps(meta))


def load_audio(path: Path, revocode: str | None = None) -> tuple[list[int], list[np.ndarray], dict]:
    """Read `save_audio`'s file. `revocode`: a checkpoint whose vocoder re-synthesises the saved
    log-mels (scoring a vocoder-only change without regenerating)."""
    data = np.load(path)
    meta = json.loads(str(data["meta"]))
    if revocode is None:
        waves = mu_law_decode(data["audio"])
    else:
        from objaudio_rt.checkpoint import load_checkpoint

        vocoder = load_checkpoint(revocode)[0].vocoder
        n = data["audio"].shape[1]
        with torch.no_grad():
            mels = torch.from_numpy(data["mels"].astype(np.float32))
            waves = torch.cat([vocoder(chunk)[:, :n] for chunk in mels.split(32)]).numpy()
        meta["revocoded_with"] = str(revocode)
    bounds = np.cumsum(np.concatenate([[0], data["counts"]]))
    return [int(s) for s in data["seeds"]], [waves[a:b] for a, b in zip(bounds[:-1], bounds[1:])], meta


@command("python -m training.evaluate")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (or a preset name: random weights)")
    p.add_argument("--seed-start", type=int, default=0, help="first test-split seed index")
    p.add_argument("--scenes", type=int, default=150)
    p.add_argument("--json", required=True, type=Path)
    p.add_argument("--steps", type=int, default=None, help="default: the checkpoint's default_steps")
    p.add_argument("--sampler", choices=SAMPLERS, default=None)
    p.add_argument("--cfg", type=float, default=None)
    p.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-audio", type=Path, help="also write the generated clips (8-bit mu-law .npz)")
    p.add_argument("--rescore", type=Path,
                   help="score clips saved by --save-audio (e.g. with another classifier); no generation")
    p.add_argument("--revocode", default=None,
                   help="with --rescore: re-synthesise the saved mels with this checkpoint's vocoder")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    classifier = load_classifier(args.classifier)
    if args.rescore is not None:
        seeds, scene_waves, meta = load_audio(args.rescore, args.revocode)
        seconds = meta["clip_seconds"]
    else:
        pipe = Pipeline.from_pretrained(args.checkpoint, device=args.device)
        run = RunOptions(steps=args.steps, sampler=args.sampler, cfg=args.cfg).resolve(pipe.config)
        seeds = split_seeds("test", args.scenes, start=args.seed_start)
        t = time.time()
        scene_waves, scene_mels = generate(pipe, seeds, run.steps, run.sampler, run.cfg)
        seconds = pipe.config.clip_seconds
        meta = {"layout": LAYOUT, "steps": run.steps, "sampler": run.sampler, "cfg": run.cfg, "clip_seconds": seconds,
                "generate_seconds": round(time.time() - t, 1), "device": str(pipe.device),
                "checkpoint": str(args.checkpoint)}
        if args.save_audio is not None:
            save_audio(args.save_audio, seeds, scene_waves, scene_mels, meta)
    res = score(classifier, seeds, scene_waves, seconds, layout=meta.get("layout", 1))
    result = summarize(res, len(seeds), meta["steps"], meta["sampler"], meta["cfg"])
    n = max(1, result["selections"])
    result.update({"generate_seconds": meta["generate_seconds"], "device": meta["device"],
                   "seconds_per_selection": round(meta["generate_seconds"] / n, 3),
                   "checkpoint": meta["checkpoint"], "classifier": str(args.classifier),
                   "revocoded_with": meta.get("revocoded_with")})
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
