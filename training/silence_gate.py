"""Fit the silence gate: a small MLP on a selection's grounding condition that says "this
selection makes no sound" (issue 23: silent objects).

    python -m training.silence_gate --checkpoint CKPT --out NEW_CKPT [--scenes 3000] [--val 600] [--force]
    python -m training.silence_gate --checkpoint GATED --check S:N,S:N [--json F]   # its calls on test scenes

Why: on unseen scenes the UNet makes a sound for a silent object (a rock, a tree, a house) about half
the time, yet the condition `c` it is given separates silent from sounding selections almost perfectly
(a linear probe: 99.6 % on held-out scenes; training/README.md). The gate reads that decision off `c`
directly: a selection whose every condition the gate calls silent is generated as digital silence
without running the diffusion at all, and a composed union's silent parts are dropped from the mix
(core/gate.py). The gate is part of the model (config.silence_gate + silence_gate.safetensors); a run
switches it off with `silence_gate=False` (`--no-silence-gate`), which is the paper's behaviour.

Examples, from train-split scenes (and val-split ones for the threshold; never the test split `training.evaluate` draws from), per scene:
every object's mask alone (silent iff its class is silent), one random pair of objects unioned (silent
iff both are), the whole scene (silent iff nothing in it sounds) and, for each sounding object, its
single-object caption as a text query (sounding). Each becomes `c` exactly as the runtime makes it
(Pipeline.select + Pipeline.condition). The fit: a one-hidden-layer MLP (`core/gate.SilenceGate`) on
standardised features, the classes weighted to balance (a linear gate caught 0.90 of silent objects
at this false-silence rate, the MLP 0.98). The threshold on p(silent) is then chosen on
`--val` val-split scenes: the lowest one whose false-silence rate on sounding examples is at
most `--max-false-silence` (a sounding object made silent is the worse error), and the report prints the
confusion on both sets, also kept in the new checkpoint's config (silence_gate.fit, `objaudio info`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from objaudio_rt.core.config import SilenceGateConfig
from objaudio_rt.core.errors import check, command
from objaudio_rt.core.gate import SilenceGate
from objaudio_rt.core.threads import use_threads
from objaudio_rt.core.selection import Mask, Text, Whole

from .data import single_caption
from .synthscenes import generate_scene, split_seeds

KINDS = ("object", "silent", "pair", "whole", "text")


def drop_gate(model, why: str) -> bool:
    """Removes `model`'s silence gate (it reads the grounding's conditions: a gate fitted before training
    changed them would decide on conditions it never saw) and says so on stderr; True if there was one."""
    if model.config.silence_gate is None:
        return False
    model.config = dataclasses.replace(model.config, silence_gate=None)
    model.silence_gate = None
    print(f"[gate] {why}: the checkpoint is written without its silence gate; fit one again with "
          "python -m training.silence_gate --checkpoint THIS --out GATED", file=sys.stderr)
    return True


@torch.no_grad()
def gate_examples(pipe, seeds: list[int], progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(conditions (N, cond_dim) float32, silent labels (N,) bool, kind indices into KINDS (N,))."""
    from tqdm.auto import tqdm

    xs, ys, ks = [], [], []
    seconds = pipe.config.clip_seconds
    for seed in tqdm(seeds, desc="gate examples", disable=not progress):
        scene = generate_scene(seed, seconds=seconds)
        encoded = pipe.encode_image(scene.image)
        sels = []
        for i, sounding in enumerate(scene.sounding):
            sels.append((Mask(scene.masks[i]), not sounding, "object" if sounding else "silent"))
        if len(scene.classes) >= 2:
            a, b = np.random.default_rng([seed, 11]).choice(len(scene.classes), 2, replace=False)
            sels.append((Mask(scene.masks[a] | scene.masks[b]), not (scene.sounding[a] or scene.sounding[b]), "pair"))
        sels.append((Whole(), not any(scene.sounding), "whole"))
        for i in scene.sounding_indices:
            sels.append((Text(single_caption(seed, scene.classes[i])), False, "text"))
        for sel, silent, kind in sels:
            weights, _ = pipe.select(encoded, sel)
            xs.append(pipe.condition(encoded, weights)[0].float().cpu().numpy())
            ys.append(silent)
            ks.append(KINDS.index(kind))
    return np.stack(xs), np.array(ys, bool), np.array(ks, np.int64)


def fit_gate(x: np.ndarray, y: np.ndarray, hidden_dim: int = 64, epochs: int = 300, lr: float = 1e-3,
             weight_decay: float = 1e-4, seed: int = 0, progress: bool = True) -> SilenceGate:
    """A SilenceGate fitted to p(silent | c): standardised features, the two classes weighted to balance,
    AdamW on minibatches of 512; the standardisation is then folded into the first layer."""
    from tqdm.auto import tqdm

    check(y.any() and (~y).any(), "the gate needs silent and sounding examples: use more scenes")
    g = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x).float()
    mean, std = xt.mean(0), xt.std(0).clamp_min(1e-6)
    z = (xt - mean) / std
    yt = torch.from_numpy(y).float()
    pos = float(yt.mean())
    sample_w = torch.where(yt > 0, 0.5 / pos, 0.5 / (1 - pos))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gate = SilenceGate(x.shape[1], hidden_dim)
    opt = torch.optim.AdamW(gate.parameters(), lr, weight_decay=weight_decay)
    for _ in tqdm(range(epochs), desc="fit gate", disable=not progress):
        perm = torch.randperm(len(z), generator=g)
        for i in range(0, len(z), 512):
            b = perm[i:i + 512]
            logits = gate.mlp(z[b])[:, 0]
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, yt[b], reduction="none")
                    * sample_w[b]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():                                   # fold (c - mean) / std into the first layer
        first = gate.mlp[0]
        first.weight.div_(std[None, :])
        first.bias.sub_(first.weight @ mean)
    return gate.eval()


def probabilities(gate: SilenceGate, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return gate(torch.from_numpy(x)).numpy()


def choose_threshold(p: np.ndarray, y: np.ndarray, max_false_silence: float) -> float:
    """The lowest threshold on p(silent) whose rate of sounding examples at or above it is at most
    `max_false_silence` (within [0.5, 0.999])."""
    sounding = np.sort(p[~y])[::-1]
    allowed = int(np.floor(max_false_silence * len(sounding)))
    t = sounding[allowed] if allowed < len(sounding) else 0.0        # the (allowed+1)-th highest sounding p
    return float(min(max(0.5, np.nextafter(t, 1.0)), 0.999))


def report(p: np.ndarray, y: np.ndarray, k: np.ndarray, threshold: float) -> dict:
    """At `threshold`: the share of silent examples called silent (recall) and of sounding ones called
    silent (false silence), over all and per kind (with the counts)."""
    pred = p >= threshold

    def rates(sel):
        s, n = sel & y, sel & ~y
        return {"silent": int(s.sum()), "sounding": int(n.sum()),
                "silent_recall": round(float(pred[s].mean()), 4) if s.any() else None,
                "false_silence": round(float(pred[n].mean()), 4) if n.any() else None}

    out = {"threshold": threshold, "all": rates(np.ones_like(y))}
    for n, kind in enumerate(KINDS):
        if (k == n).any():
            out[kind] = rates(k == n)
    return out


@torch.no_grad()
def check_gate(pipe, seeds: list[int], progress: bool = True) -> dict:
    """What the gate of `pipe` calls silent among `training.evaluate`'s selections of the (test-split)
    `seeds`, without generating anything: per selection kind, how many and the share silenced. A silent
    item should be silenced; any other kind silenced is a sounding selection lost (a composed union
    counts as silenced only when all of its parts are). Also the composed unions that lost a part."""
    from tqdm.auto import tqdm

    from .evaluate import scene_selections

    counts: dict[str, list[int]] = {}
    parts_lost = 0
    for seed in tqdm(seeds, desc="check gate", disable=not progress):
        scene = generate_scene(seed, seconds=pipe.config.clip_seconds)
        sels, items = scene_selections(scene, "both")
        if not sels:
            continue
        encoded = pipe.encode_image(scene.image)
        for sel, item in zip(sels, items):
            union = "mask" if item.kind == "union_mask" else "compose"
            batch = pipe.conditions(encoded, [sel], union)
            n, silenced = counts.setdefault(item.kind, [0, 0]), batch.silent[0]
            n[0] += 1
            n[1] += int(silenced)
            if item.kind == "union" and not silenced:
                parts_lost += int(batch.conditions.rows.shape[0] < len(sel.parts()))
    out = {kind: {"n": n, "silenced": s, "share": round(s / n, 4)} for kind, (n, s) in sorted(counts.items())}
    out["union_parts_lost"] = parts_lost
    return out


@command("python -m training.silence_gate")
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.silence_gate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="the model whose grounding conditions the gate reads")
    ap.add_argument("--out", type=Path, help="the new checkpoint: --checkpoint with the fitted gate (replacing "
                                             "one it has: refit after training changes the grounding)")
    ap.add_argument("--check", metavar="S:N,S:N", help="instead of fitting: what --checkpoint's gate calls silent "
                                                        "among training.evaluate's selections of these test ranges")
    ap.add_argument("--json", type=Path, help="with --check: write the table here too")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    ap.add_argument("--scenes", type=int, default=3000, help="train-split scenes to fit on")
    ap.add_argument("--val", type=int, default=600, help="val-split scenes to choose the threshold on")
    ap.add_argument("--hidden", type=int, default=64, help="the gate MLP's hidden width")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--max-false-silence", type=float, default=0.01,
                    help="the most sounding val examples the threshold may call silent (a share)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    use_threads(args.threads)
    from objaudio_rt.core.config import ModelSource
    from objaudio_rt.core.pipeline import Pipeline
    from objaudio_rt.modelio.checkpoint import save_checkpoint

    if args.check:
        from .evaluate import test_seeds

        pipe = Pipeline.from_pretrained(args.checkpoint)
        check(pipe.config.silence_gate is not None, f"{args.checkpoint} has no silence gate to check: fit one first")
        table = check_gate(pipe, test_seeds(args.check))
        print(json.dumps(table, indent=1))
        if args.json:
            args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "ranges": args.check, **table},
                                            indent=1))
        return 0
    check(args.out is not None, "give --out NEW_CKPT (the checkpoint with the fitted gate), or --check RANGES")
    check(args.scenes > 0 and args.val > 0, "--scenes and --val must be positive")
    check(0.0 <= args.max_false_silence < 0.5, "--max-false-silence must be a share in [0, 0.5)")
    check(args.force or not args.out.exists(), f"{args.out} already exists: choose another folder or pass --force")
    source = ModelSource.parse(args.checkpoint)          # a carried few-step path shares the teacher's gate:
    pipe = Pipeline.from_pretrained(ModelSource.parse(args.checkpoint, "full") if source.path else source)
    x, y, k = gate_examples(pipe, split_seeds("train", args.scenes))   # the new checkpoint is the teacher's
    xv, yv, kv = gate_examples(pipe, split_seeds("val", args.val))
    gate = fit_gate(x, y, args.hidden, args.epochs, seed=args.seed)
    threshold = choose_threshold(probabilities(gate, xv), yv, args.max_false_silence)
    fit = {"scenes": args.scenes, "val_scenes": args.val, "epochs": args.epochs, "seed": args.seed,
           "max_false_silence": args.max_false_silence, "from": str(args.checkpoint),
           "train": report(probabilities(gate, x), y, k, threshold),
           "val": report(probabilities(gate, xv), yv, kv, threshold)}
    model = pipe.model
    model.config = dataclasses.replace(model.config, silence_gate=SilenceGateConfig(args.hidden, threshold, fit))
    model.silence_gate = gate
    save_checkpoint(model, pipe.calibration, args.out, force=args.force)
    print(json.dumps(fit, indent=1))
    print(f"[gate] threshold {threshold:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
