"""Few-step generation: what each sampler's quality and cost are at a few steps, side by side.

    python -m benchmarks.fewstep --samplers dpmpp,dpmpp3m,unipc,ddim --steps 4,6,8,10,20 \
        --ranges 5000:15 --json benchmarks/results/fewstep-DATE.json
    python -m benchmarks.fewstep --checkpoint random:tiny --samplers ddim,unipc --steps 2,3 --scenes 1   # quick
    python -m benchmarks.fewstep --samplers dpmpp --steps 4,20 --student DISTILLED --student-steps 2,4 \
        --ranges 12000:40,13000:40 --json benchmarks/results/distilled-DATE.json

`--student` adds a guidance-distilled checkpoint of the same teacher (training/distill.py: one UNet row per
step) at `--student-steps` with `--student-sampler`, generated from the same noise, interleaved with the
teacher's configurations; its rows say "student" and the table ends with each configuration's time and
metrics beside the teacher's most-steps row (the baseline).

On unseen SynthScenes test scenes (`--ranges S:N,..` or `--seed-start/--scenes`, as training.evaluate),
every (sampler, steps) generates each scene's selections (training.evaluate.scene_selections: object
masks, unions (the runtime's default union mode: "mix" since 2026-12-06, "compose" in earlier
results) and pixel unions, text, a silent distractor, the whole scene) from the same noise
(the scene's seed), through training.evaluate.generate; the clips are scored with its classifier
(`score`, `summarize`). The runs are interleaved scene by scene, so each configuration meets the same
machine load, after one untimed warm-up generation per sampler. Per configuration the table shows:

    rows/clip    UNet row-evaluations per clip, counted at the backend's unet_eps: 2 per step with
                 classifier-free guidance for a single selection, 2 per part of a mixed union (1 + k for a
                 composed union of k parts); a guidance-distilled UNet one per condition;
                 0 for a selection the checkpoint's silence gate calls silent (`--no-silence-gate`: none)
    s/clip       wall seconds of Pipeline.generate_many per clip (image encoding and scene synthesis
                 excluded), and cpu s/clip, this process's CPU seconds (all threads) for the same calls
    object acc, leakage, union recall (the default union, pixel mask), silent acc, text-mask gap
                 training.evaluate's selection metrics (its module docstring defines them)

The JSON holds every metric of `summarize` (acc, FAD, KL, IS and the counts too, not the per-class
breakdowns), the timings, and provenance: device, CPU model, versions, threads, load average before and
after, git commit, timestamp and the checkpoint's weights fingerprint.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from objaudio_rt.modelio.artifacts import model_fingerprint
from objaudio_rt.modelio.checkpoint import checkpoint_fingerprint
from objaudio_rt.core.config import ModelSource
from objaudio_rt.core.errors import check, command
from objaudio_rt.core.options import BACKEND_CHOICES, SAMPLERS, RunOptions, parse_backend_option
from objaudio_rt.core.pipeline import Pipeline
from objaudio_rt.core.threads import use_threads
from training.classifier import load_classifier
from training.evaluate import DEFAULT_CLASSIFIER, generate, score, summarize, test_seeds
from training.synthscenes import split_seeds

from .latency import provenance

METRICS = ("object_accuracy", "leakage", "union_recall", "union_recall_mask", "silent_accuracy", "text_vs_mask_gap")


@dataclass
class Meter:
    """What one (sampler, steps) configuration spent: UNet rows, clips, wall and CPU seconds."""
    rows: int = 0
    clips: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0


class Counted:
    """Wraps a pipeline so that each configuration's UNet rows and generate_many time land in its Meter."""

    def __init__(self, pipe: Pipeline, silence_gate: bool | None = None):
        check(pipe.backend.graphs is None, f"the {pipe.backend.name} backend captures its loop as a CUDA graph, whose "
                                           "replays no Python wrapper sees: run with --backend eager (or a backend "
                                           "without a graphed loop) to count UNet rows")
        self.pipe, self.meter, self.silence_gate = pipe, Meter(), silence_gate
        unet_eps = pipe.backend.unet_eps

        def counting(x, t, cond):                    # x: (N, C, H, W), one row per unconditional or part condition
            self.meter.rows += x.shape[0]
            return unet_eps(x, t, cond)

        pipe.backend.unet_eps = counting

    def generate_many(self, scene, selections, **options):
        wall, cpu = time.perf_counter(), time.process_time()
        out = self.pipe.generate_many(scene, selections, silence_gate=self.silence_gate, **options)
        self.meter.wall_s += time.perf_counter() - wall
        self.meter.cpu_s += time.process_time() - cpu
        self.meter.clips += len(out)
        return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_list(text: str, flag: str, cast, example: str) -> list:
    try:
        values = [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    check(len(values) > 0 and len(set(values)) == len(values),
          f"{flag} takes a comma-separated list without repeats, e.g. {example}; got {text!r}")
    return values


def weights_fingerprint_of(pipe: Pipeline) -> str:
    """The fingerprint of the weights `pipe` loaded, from its checkpoint's files where it has some (a backend
    option may have cast the networks it holds: vae_dtype=bf16), else from its (random) networks."""
    folder = Path(pipe.source)
    return checkpoint_fingerprint(folder) if folder.is_dir() else model_fingerprint(pipe.model)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fewstep", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder, preset or random:PRESET (default: the "
                                                       "embedded model)")
    ap.add_argument("--samplers", default="dpmpp,dpmpp3m,unipc,ddim", help=f"some of {', '.join(SAMPLERS)}")
    ap.add_argument("--steps", default="4,6,8,10,20", help="step counts, comma-separated")
    ap.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the checkpoint's)")
    ap.add_argument("--ranges", default=None, metavar="S:N,S:N", help="test scenes: N from index S, each "
                                                                     "(training.evaluate --ranges)")
    ap.add_argument("--seed-start", type=int, default=5000, help="first test-split index (without --ranges)")
    ap.add_argument("--scenes", type=int, default=15, help="scenes from --seed-start (without --ranges)")
    ap.add_argument("--student", default=None, help="a guidance-distilled checkpoint of the same teacher (one row a "
                                                   "step; default: the few-step path --checkpoint carries, if any)")
    ap.add_argument("--student-steps", default="4", help="the student's step counts, comma-separated")
    ap.add_argument("--student-sampler", default=None, help="the student's sampler (default: the one it was made for)")
    ap.add_argument("--no-silence-gate", action="store_true",
                    help="generate every selection, even those the checkpoint's silence gate calls silent (with "
                         "the gate a silent selection runs no network: it counts as a clip of 0 rows)")
    ap.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                    help="default auto as the service resolves it (many clips in one process): on a CPU with "
                         "native bfloat16 fast, else onnxruntime when the graphs are cached, else eager")
    ap.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a backend option for both models (backends.backend_options), e.g. vae_dtype=bf16 "
                         "(eager and fast); true/false and integers are read as such")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores not busy now)")
    ap.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER)
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    args = ap.parse_args(argv)
    args.samplers = parse_list(args.samplers, "--samplers", str, "ddim,unipc")
    args.steps = parse_list(args.steps, "--steps", int, "4,8,20")
    args.student_steps = parse_list(args.student_steps, "--student-steps", int, "2,4")
    args.backend_options = dict(parse_backend_option(text) for text in args.backend_option)
    check(args.scenes >= 1 and args.seed_start >= 0, "--scenes must be >= 1 and --seed-start >= 0")
    return args


def print_table(report: dict) -> None:
    c, p = report["config"], report["provenance"]
    print(f"\nobjaudio few-step: {c['checkpoint']} ({c['source']}), {c['scenes']} test scenes, {c['clips_per_config']} "
          f"clips per row, cfg {c['cfg']}, backend {c['backend']}, {p['cpu_threads']} threads")
    print(f"device {p['device']} | {p['cpu_model']} | torch {p['torch']} | load {p['load_average_before'][0]:.2f} -> "
          f"{p['load_average_after'][0]:.2f} | commit {p['git_commit'][:12]}")
    heads = ["model", "sampler", "steps", "rows/clip", "s/clip", "cpu s/clip", "object acc", "leakage", "union rec",
             "union mask", "silent acc", "text gap"]
    print("".join(f"{h:>11}" for h in heads))

    def num(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    for r in report["results"]:
        m = r["metrics"]
        cells = [r["model"], r["sampler"], str(r["steps"]), num(r["unet_rows_per_clip"], ".1f"), num(r["seconds_per_clip"]),
                 num(r["cpu_seconds_per_clip"]), *(num(m[k]) for k in METRICS)]
        print("".join(f"{v:>11}" for v in cells))
    base = report["baseline"]
    b = next(r for r in report["results"] if (r["model"], r["sampler"], r["steps"]) == tuple(base))
    print(f"\nagainst the baseline ({' '.join(map(str, base))}): time share and metric differences")
    print("".join(f"{h:>11}" for h in ["model", "sampler", "steps", "time %"] + heads[6:]))
    for r in report["results"]:
        share = 100 * r["seconds_per_clip"] / b["seconds_per_clip"] if b["seconds_per_clip"] else None
        diffs = [None if r["metrics"][k] is None or b["metrics"][k] is None else r["metrics"][k] - b["metrics"][k]
                 for k in METRICS]
        cells = [r["model"], r["sampler"], str(r["steps"]), num(share, ".1f"), *(num(d, "+.3f") for d in diffs)]
        print("".join(f"{v:>11}" for v in cells))


@command("python -m benchmarks.fewstep")
def main(argv=None) -> int:
    args = parse_args(argv)
    use_threads(args.threads)
    load_before = os.getloadavg()
    seeds = test_seeds(args.ranges) if args.ranges else split_seeds("test", args.scenes, start=args.seed_start)
    source = ModelSource.parse(args.checkpoint)
    carried = source.path is not None                   # a checkpoint with a few-step path: the teacher is --full
    pipes = {"teacher": Pipeline.from_pretrained(ModelSource.parse(args.checkpoint, "full" if carried else None),
                                                 backend=args.backend, backend_options=args.backend_options,
                                                 many_clips=True)}
    pipe = pipes["teacher"]
    prints = {"teacher": weights_fingerprint_of(pipe)}
    check(pipe.config.distilled is None, "--checkpoint is guidance-distilled: give its teacher, and the student "
                                         "with --student")
    configs = [("teacher", s, n) for s in args.samplers for n in args.steps]
    student = args.student or (ModelSource.parse(args.checkpoint, "fewstep") if carried else None)
    if student:
        pipes["student"] = Pipeline.from_pretrained(student, backend=args.backend,
                                                    backend_options=args.backend_options, many_clips=True)
        d = pipes["student"].config.distilled
        named = getattr(student, "folder", student)
        check(d is not None, f"--student {named} is not a guidance-distilled checkpoint (training/distill.py)")
        prints["student"] = weights_fingerprint_of(pipes["student"])
        check(d.teacher == prints["teacher"], f"--student {named} was distilled from another "
                                                          "teacher than --checkpoint: compare it with its own teacher")
        sampler = args.student_sampler or pipes["student"].config.default_sampler
        configs += [("student", sampler, n) for n in args.student_steps]
    for who, sampler, steps in configs:                 # every name and count checked before the first clip
        RunOptions(steps=steps, sampler=sampler, cfg=args.cfg).resolve(pipes[who].config)
    cfg = RunOptions(cfg=args.cfg).resolve(pipe.config).cfg
    gate = False if args.no_silence_gate else None             # None: each checkpoint's default
    counted = {who: Counted(p, gate) for who, p in pipes.items()}
    meters = {c: Meter() for c in configs}
    waves = {c: [] for c in configs}
    for who, sampler in dict.fromkeys((w, s) for w, s, _ in configs):   # warm-up, not counted
        generate(pipes[who], seeds[:1], min(n for w, s, n in configs if (w, s) == (who, sampler)), sampler, cfg,
                 progress=False, generate_many=counted[who].generate_many)
    for k, seed in enumerate(seeds):                      # interleaved: every configuration meets the same load
        print(f"[fewstep] scene {k + 1}/{len(seeds)} (seed {seed})", file=sys.stderr, flush=True)
        for who, sampler, steps in configs:
            counted[who].meter = meters[who, sampler, steps]
            scene_waves, _ = generate(pipes[who], [seed], steps, sampler, cfg, progress=False,
                                      generate_many=counted[who].generate_many)
            waves[who, sampler, steps] += scene_waves
    classifier = load_classifier(args.classifier)
    results = []
    for who, sampler, steps in configs:
        summary = summarize(score(classifier, seeds, waves[who, sampler, steps], pipe.config.clip_seconds), len(seeds),
                            steps, sampler, cfg)
        m = meters[who, sampler, steps]
        clips = max(m.clips, 1)
        results.append({"model": who, "sampler": sampler, "steps": steps, "clips": m.clips, "unet_rows": m.rows,
                        "unet_rows_per_clip": m.rows / clips, "seconds_per_clip": m.wall_s / clips,
                        "cpu_seconds_per_clip": m.cpu_s / clips, "generate_seconds": m.wall_s,
                        "metrics": {k: v for k, v in summary.items() if not k.startswith("by_")}})
    report = {
        "provenance": {**provenance(pipe.device), "cpu_model": cpu_model(), "load_average_before": load_before,
                       "load_average_after": os.getloadavg(), "checkpoint_fingerprint": prints["teacher"],
                   **({"student_fingerprint": prints["student"]} if student else {})},
        "config": {"checkpoint": args.checkpoint or "tiny-synth (embedded)", "source": pipe.source,
                   "backend": pipe.backend.name, "backend_options": args.backend_options, "cfg": cfg,
                   "samplers": args.samplers, "steps": args.steps,
                   "seeds": seeds, "scenes": len(seeds), "clips_per_config": results[0]["clips"],
                   "clip_seconds": pipe.config.clip_seconds, "classifier": str(args.classifier),
                   "student": None if student is None else str(getattr(student, "folder", student)),
                   "silence_gate": {who: RunOptions(silence_gate=gate).resolve(p.config).silence_gate
                                    for who, p in pipes.items()}},
        "baseline": ["teacher", args.samplers[0], max(args.steps)],
        "results": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
