"""The paper's ablations (its Table 2) in miniature on SynthScenes.

    python -m training.ablate --init-from CHECKPOINT --out DIR [--minutes M] [--variants paper,frozen,...]
                              [--scenes N] [--eval-start S --eval-scenes K] [--threads T]

Every variant starts from the same pretrained networks (CHECKPOINT, e.g. the embedded tiny-synth:
our stand-in for a pretrained AudioLDM + CLIP + CLAP), gets a NEW grounding module trained from
scratch, and trains for the same wall-clock budget on the same cached examples, with the
paper's loss. Then it is calibrated and evaluated with `training.evaluate` on the same test scenes,
with masks replacing the attention at test time:

    paper       single-head dot-product attention, UNet fine-tuned       (the method)
    frozen      the same, UNet frozen: only the grounding is trained      (Table 2, i)
    multihead   4-head dot-product attention                              (Table 2, ii)
    additive    additive (Bahdanau) attention                             (Table 2, iv)
Table 2 (v), text attention instead of masks, is every row's `text_acc` next to `mask_acc`.

What differs from the tiny-synth recipe so that test-time masks are zero-shot as in the paper:
no mask substitution during training (`mask_prob` 0) and no silent examples (those are trainable
only through the mask). Kept for every variant alike: the attention loss (`attn_weight`), which
lets a from-scratch grounding become object-focused within minutes. The ablation (iii), an
audio query, needs CLAP's audio tower at training time and is not run here.

Writes DIR/<variant>/model (checkpoint), DIR/<variant>/eval_<start>_<scenes>.json, and
DIR/ablation.json + DIR/ablation.md (the table). Resume: a variant whose checkpoint exists is not
trained again, and one already evaluated on the same test scenes is not evaluated again (so a
rerun with more --eval-scenes only evaluates).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from objaudio_rt.modelio.checkpoint import load_checkpoint, save_checkpoint
from objaudio_rt.core.errors import check, command
from objaudio_rt.core.options import RunOptions
from objaudio_rt.core.grounding import GroundingAttention
from objaudio_rt.core.pipeline import Pipeline
from objaudio_rt.core.threads import usable_cores, use_threads

from .classifier import load_classifier
from .data import SynthCache, SynthCacheConfig, build_synth_cache
from .evaluate import DEFAULT_CLASSIFIER, generate, score, summarize
from .synthscenes import split_seeds
from .train import build_latent_set
from .train_components import StageBudget
from .train_ldm import LatentSet, LdmConfig, calibrate, train_ldm

VARIANTS = {
    "paper": dict(attention="dot", num_heads=1, freeze_unet=False),
    "frozen": dict(attention="dot", num_heads=1, freeze_unet=True),
    "multihead": dict(attention="multihead", num_heads=4, freeze_unet=False),
    "additive": dict(attention="additive", num_heads=1, freeze_unet=False),
}
COLUMNS = ("object_accuracy", "leakage", "union_recall", "union_recall_mask", "silent_accuracy", "text_acc",
           "mask_acc", "text_vs_mask_gap", "acc", "fad", "kl", "is")


def text_examples(data: LatentSet) -> LatentSet:
    """The examples a caption can condition: all but the mask-only (silent) ones."""
    if data.mask_only is None:
        return data
    rows = torch.nonzero(~data.mask_only).squeeze(1)
    return LatentSet(latents=data.latents[rows], text=data.text[rows], tokens=data.tokens,
                     ex_scene=data.ex_scene[rows], cover=None if data.cover is None else data.cover[rows],
                     kind=None if data.kind is None else data.kind[rows])


def train_variant(name: str, init: Path, data: LatentSet, out: Path, minutes: float, batch: int, lr: float,
                  seed: int, device: torch.device, max_steps: int | None = None) -> Path:
    """A fresh grounding of the variant's kind on init's networks, trained for `minutes`."""
    spec = VARIANTS[name]
    model, _ = load_checkpoint(init)
    model.config.grounding = replace(model.config.grounding, attention=spec["attention"], num_heads=spec["num_heads"])
    torch.manual_seed(seed)
    model.grounding = GroundingAttention(model.config.grounding)
    cfg = LdmConfig(lr=lr, warmup_steps=50, attn_weight=0.1, mask_prob=0.0, ema_decay=0.99,
                    freeze_unet=spec["freeze_unet"])
    out.mkdir(parents=True, exist_ok=True)
    budget = StageBudget(seconds=minutes * 60, max_steps=max_steps, batch_size=batch, lr=lr)
    metrics = train_ldm(model, data, budget, cfg, out / "ldm.csv", device, seed)
    calibration = calibrate(model, data, device, num=2048)
    metrics.update(variant=name, calibration=calibration.to_dict(), minutes=minutes, **spec)
    (out / "train.json").write_text(json.dumps(metrics, indent=2))
    return save_checkpoint(model.to("cpu").eval(), calibration, out / "model", force=True)


def evaluate_variant(ckpt: Path, seeds: list[int], classifier, steps: int | None, cfg: float | None) -> dict:
    pipe = Pipeline.from_pretrained(ckpt)
    run = RunOptions(steps=steps, cfg=cfg).resolve(pipe.config)
    t = time.time()
    waves, _ = generate(pipe, seeds, run.steps, run.sampler, run.cfg)
    res = score(classifier, seeds, waves, pipe.config.clip_seconds)
    result = summarize(res, len(seeds), run.steps, run.sampler, run.cfg)
    result["generate_seconds"] = round(time.time() - t, 1)
    return result


def table(rows: dict[str, dict]) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"

    lines = ["| variant | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(fmt(r.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


@command("python -m training.ablate")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ablate", description=__doc__.split("\n\n")[0])
    p.add_argument("--init-from", required=True, type=Path, help="checkpoint whose networks every variant starts from")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    p.add_argument("--minutes", type=float, default=8.0, help="training wall time per variant")
    p.add_argument("--max-steps", type=int, default=None, help="cap training steps (smoke tests)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--scenes", type=int, default=1500, help="SynthScenes training scenes")
    p.add_argument("--cache", type=Path, default=None, help="an existing SynthScenes cache folder to reuse")
    p.add_argument("--eval-start", type=int, default=100, help="first test-split seed index")
    p.add_argument("--eval-scenes", type=int, default=12)
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the checkpoint's)")
    p.add_argument("--cfg", type=float, default=None)
    p.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=min(2, usable_cores()),
                   help="torch CPU threads, 1 to the cores this process may use (default 2)")
    args = p.parse_args(argv)
    use_threads(args.threads)
    device = torch.device("cpu")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    check(names and all(n in VARIANTS for n in names),
          f"--variants {args.variants!r}: choose from {', '.join(VARIANTS)}")
    check(args.init_from.is_dir(), f"--init-from {args.init_from} is not a checkpoint folder")
    args.out.mkdir(parents=True, exist_ok=True)
    cache_dir = args.cache or args.out / "cache"
    base, _ = load_checkpoint(args.init_from)
    if not (cache_dir / "synth.json").is_file():
        check(args.cache is None, f"--cache {args.cache} holds no SynthScenes cache")
        build_synth_cache(SynthCacheConfig(scenes=args.scenes, seconds=base.config.clip_seconds,
                                           patch_image_size=base.config.image.image_size,
                                           patch_size=base.config.image.patch_size), cache_dir)
    latents = args.out / "latents.safetensors"
    if not latents.is_file():
        build_latent_set(base, SynthCache(cache_dir), device).save(latents)
    data = text_examples(LatentSet.load(latents))
    classifier = load_classifier(args.classifier)
    seeds = split_seeds("test", args.eval_scenes, start=args.eval_start)
    rows = {}
    for name in names:
        folder = args.out / name
        done = folder / f"eval_{args.eval_start}_{args.eval_scenes}.json"
        ckpt = folder / "model"
        if not (folder / "train.json").is_file() or not (ckpt / "manifest.json").is_file():
            print(f"[ablate] {name}: training {args.minutes:g} min", file=sys.stderr)
            ckpt = train_variant(name, args.init_from, data, folder, args.minutes, args.batch, args.lr,
                                 args.seed, device, args.max_steps)
        if not done.is_file():
            print(f"[ablate] {name}: evaluating on {len(seeds)} test scenes", file=sys.stderr)
            result = evaluate_variant(ckpt, seeds, classifier, args.steps, args.cfg)
            result["train"] = json.loads((folder / "train.json").read_text())
            done.write_text(json.dumps(result, indent=2))
        rows[name] = json.loads(done.read_text())
    md = table(rows)
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=2))
    (args.out / "ablation.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
