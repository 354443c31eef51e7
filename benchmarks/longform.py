"""Long clips and loops (objaudio_rt/core/longform.py): their cost beside one clip, their seams, and whether
the selected object stays the one heard for the whole length.

    python -m benchmarks.longform --ranges 7000:25 --json benchmarks/results/longform-DATE.json
    python -m benchmarks.longform --checkpoint random:tiny --scenes 1 --long 3 --loop 1 --cost-seconds 6 --steps 2  # quick

1. Cost (the demo scene, its bird mask): one clip of the model's `max_seconds` (10.24 s for tiny-synth,
   one pass) and one clip of `--cost-seconds` (60 s, overlapping windows), each timed in a fresh child
   process after a warm-up, side by side; the peak resident memory the generation added (ru_maxrss
   after minus before); and the time to the first samples of the long clip, made jointly
   (`Pipeline.sample` then `audio_blocks`: nothing is final before the last step) and as a stream
   (`Pipeline.stream`: windows in order, the first handed out after one window). With --native-lib and
   --engine, also libobjaudio's stream of the same clip (ctypes), beside one generation of its clip.
2. Seams and selection (unseen SynthScenes test scenes, the `object` selections of training.evaluate:
   one sounding object of a busy scene): per selection a short clip (the model's clip length, one pass),
   a loop of `--loop` clips' length and a long clip of `--long` clips' length (past max_seconds:
   windowed), all from the scene's seed. The seam ratio (`longform.seam_ratios`) at the loop's wrap
   point, at the loop's and the long clip's window boundaries, and, as the control, at positions
   halfway between boundaries, where no seam can be. Object accuracy of the short clips, and per window
   (each clip-length segment of the long clip, classified alone) of the long ones. The same for the
   loop and the long clip made as streams (windows in order; a streamed loop starts at its origin).

Prints two tables and writes JSON with provenance (device, versions, threads, load before and after,
git commit, the checkpoint's weights fingerprint).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from objaudio_rt.modelio.artifacts import model_fingerprint
from objaudio_rt.core.errors import check, command
from objaudio_rt.core.options import MAX_SECONDS, RunOptions
from objaudio_rt.core.pipeline import Pipeline
from objaudio_rt.core.threads import use_threads

from .latency import provenance

DEMO = Path(__file__).resolve().parents[1] / "objaudio_rt" / "assets" / "demo"


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.longform", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder, tiny-synth or random:PRESET (default: embedded)")
    ap.add_argument("--ranges", help="test-split ranges START:COUNT,... (training.evaluate --ranges)")
    ap.add_argument("--scenes", type=int, default=20, help="scenes from --seed-start when --ranges is not given")
    ap.add_argument("--seed-start", type=int, default=7000)
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    ap.add_argument("--sampler", default=None)
    ap.add_argument("--loop", type=float, default=2.0, help="loop length in clip lengths (default 2)")
    ap.add_argument("--long", type=float, default=8.0, help="long clip length in clip lengths (default 8)")
    ap.add_argument("--cost-seconds", type=float, default=60.0, help="the long clip of the cost table (default 60)")
    ap.add_argument("--skip-cost", action="store_true", help="only the seams and selection table")
    ap.add_argument("--skip-quality", action="store_true", help="only the cost table")
    ap.add_argument("--native-lib", help="also time libobjaudio's stream: the built libobjaudio.so (tests/native's build)")
    ap.add_argument("--engine", help="with --native-lib: the engine folder (python -m export.engine)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores not busy now)")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)
    check(0 < args.cost_seconds <= MAX_SECONDS, f"--cost-seconds must be in (0, {MAX_SECONDS:g}]")
    check(args.loop > 0 and args.long > 0, "--loop and --long must be positive")
    check(not args.native_lib or (Path(args.native_lib).is_file() and args.engine and Path(args.engine).is_dir()),
          "--native-lib must be a built libobjaudio.so and --engine its engine folder")
    return args


# ---- 1. cost -----------------------------------------------------------------------------------
def _cost_child(checkpoint, seconds, steps, sampler, threads, mode, queue):
    """In a fresh process: load, warm up, then time one generation of `seconds` and its first samples.
    mode "joint": Pipeline.sample (windows denoised together), then audio_blocks; "stream": Pipeline.stream
    (windows in order, each handed out as it is final)."""
    try:
        use_threads(threads)
        from objaudio_rt import Mask

        pipe = Pipeline.from_pretrained(checkpoint)
        scene = pipe.encode_image(DEMO / "scene.png")
        bird = Mask(DEMO / "mask_bird.png")
        pipe.generate_many(scene, [bird], steps=2, sampler=sampler, duration=pipe.config.clip_seconds, progress=False)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run = RunOptions(steps=steps, sampler=sampler, duration=seconds).resolve(pipe.config)
        t0 = time.perf_counter()
        cond = pipe.conditions(scene, [bird])
        if mode == "stream":
            stream = pipe.stream(cond, run)
            blocks, windows = iter(stream), stream.windows
        else:
            blocks, windows = pipe.audio_blocks(pipe.sample(cond, run, progress=False), run)[1], pipe.windows(run)
        first = next(blocks)
        t_first = time.perf_counter() - t0
        n = first.shape[1] + sum(b.shape[1] for b in blocks)
        total = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        queue.put({"seconds": seconds, "mode": mode, "samples": n, "wall_s": total, "first_samples_s": t_first,
                   "windows": 0 if windows is None else len(windows.starts),
                   "peak_added_mib": (peak - before) / 1024.0, "steps": run.steps, "sampler": run.sampler})
    except BaseException as exc:                                    # the parent reports it
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def _native_child(library, engine, seconds, steps, threads, queue):
    """In a fresh process: libobjaudio (ctypes, tests/native's NativeRun) after a warm-up: one generation of
    the engine's clip, then a stream of `seconds` of the demo scene's bird, timed to its first block of
    1024 samples and to its last."""
    try:
        use_threads(threads)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "native"))
        from test_native import NativeRun

        native = NativeRun(Path(library).parent, Path(engine), "bird")
        run = {"steps": steps} if steps else {}
        native.generate(**run)
        t0 = time.perf_counter()
        clip = native.generate(**run)
        t_clip = time.perf_counter() - t0
        opts, s = native.options(duration=f"{seconds:g}", **run), ctypes.c_void_p()
        buf, got, n = (ctypes.c_float * 1024)(), ctypes.c_size_t(), 0
        t0 = time.perf_counter()
        assert native.lib.objaudio_stream_open(native.eng, native.scene, ctypes.byref(native.req), opts,
                                               ctypes.byref(s)) == 0, native.error()
        while native.lib.objaudio_stream_read(s, buf, 1024, ctypes.byref(got)) == 0 and got.value:
            if n == 0:
                t_first = time.perf_counter() - t0
            n += got.value
        total = time.perf_counter() - t0
        native.lib.objaudio_stream_close(s)
        native.lib.objaudio_options_destroy(opts)
        native.close()
        queue.put({"seconds": seconds, "mode": "libobjaudio", "samples": n, "wall_s": total, "first_samples_s": t_first,
                   "engine_clip_s": t_clip, "engine_clip_samples": int(clip.size)})
    except BaseException as exc:
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def _in_child(target, args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def measure_cost(args, threads: int) -> list[dict]:
    config = Pipeline.from_pretrained(args.checkpoint).config
    rows = []
    for seconds, mode in ((config.max_seconds, "joint"), (args.cost_seconds, "joint"), (args.cost_seconds, "stream")):
        result = _in_child(_cost_child, (args.checkpoint, seconds, args.steps, args.sampler, threads, mode))
        check("error" not in result, f"the {seconds:g} s {mode} run failed: {result.get('error')}")
        rows.append(result)
    if args.native_lib:
        result = _in_child(_native_child, (args.native_lib, args.engine, args.cost_seconds, args.steps, threads))
        check("error" not in result, f"the libobjaudio stream failed: {result.get('error')}")
        rows.append(result)
    return rows


# ---- 2. seams and selection ----------------------------------------------------------------------
def measure_quality(args, pipe: Pipeline, seeds: list[int]) -> dict:
    from tqdm.auto import tqdm

    from objaudio_rt.core.longform import seam_ratios
    from training.classifier import load_classifier
    from training.evaluate import DEFAULT_CLASSIFIER, scene_selections
    from training.synthscenes import SOUNDING_CLASSES, generate_scene

    c = pipe.config
    clip = c.clip_seconds
    sr = c.mel.sample_rate
    frame = c.vae.downsample_factor * c.mel.hop_length                      # samples per latent frame
    classifier = load_classifier(DEFAULT_CLASSIFIER).eval()
    seg = int(clip * sr)
    out = {k: [] for k in ("short_correct", "window_correct", "loop_correct", "wrap", "loop_bounds", "long_bounds",
                           "control", "stream_window_correct", "stream_loop_correct", "stream_wrap",
                           "stream_loop_bounds", "stream_long_bounds", "stream_control")}
    out["selections"] = 0

    def top1(waves: torch.Tensor) -> list[str]:
        with torch.no_grad():
            return [SOUNDING_CLASSES[int(i)] for i in classifier(waves).argmax(dim=1)]

    def halfway(bounds: list[int], n: int) -> list[int]:
        edges = sorted(set([0, *bounds, n]))
        return [(a + b) // 2 for a, b in zip(edges, edges[1:]) if b - a > 2 * frame]

    def per_window(w: torch.Tensor, t: str) -> list[bool]:
        return [p == t for p in top1(w[: w.numel() // seg * seg].view(-1, seg))]

    def loop_seams(w: torch.Tensor, windows, origin: int, prefix: str) -> None:
        """The wrap (sample 0 of the wave) and the window boundaries, moved by the wave's origin."""
        bounds = [(b * frame - origin) % w.numel() for b in windows.boundaries()]
        r, _ = seam_ratios(w, c.mel, [0, *[b for b in bounds if b]], loop=True)
        out[f"{prefix}wrap"].append(r[0])
        out[f"{prefix}loop_bounds"] += r[1:]

    def long_seams(w: torch.Tensor, windows, prefix: str) -> None:
        bounds = [b * frame for b in windows.boundaries()]
        out[f"{prefix}long_bounds"] += seam_ratios(w, c.mel, bounds, loop=False)[0]
        out[f"{prefix}control"] += seam_ratios(w, c.mel, halfway(bounds, w.numel()), loop=False)[0]

    check(pipe.windows(RunOptions(duration=args.long * clip)) is not None,
          f"--long {args.long:g} clips ({args.long * clip:g} s) is one pass for this model: give more than "
          f"{c.max_seconds / clip:g} clips (its max_seconds, {c.max_seconds:g} s)")
    for seed in tqdm(seeds, desc="scenes"):
        scene = generate_scene(seed, seconds=clip)
        sels, items = scene_selections(scene, "compose", kinds=("object",))
        if not sels:
            continue
        encoded = pipe.encode_image(scene.image)
        target = [it.targets[0] for it in items]
        opts = dict(steps=args.steps, sampler=args.sampler, seed=seed, progress=False)
        short = pipe.generate_many(encoded, sels, duration=clip, **opts)
        loop_run = RunOptions(args.steps, args.sampler, None, seed, args.loop * clip, loop=True)
        long_run = RunOptions(args.steps, args.sampler, None, seed, args.long * clip)
        loop = pipe.generate_batch(encoded, sels, loop_run, progress=False)
        long = pipe.generate_batch(encoded, sels, long_run, progress=False)
        cond = pipe.conditions(encoded, sels)
        loop_stream, long_stream = pipe.stream(cond, loop_run), pipe.stream(cond, long_run)
        loop_s, long_s = torch.cat(list(loop_stream), dim=1), torch.cat(list(long_stream), dim=1)
        out["short_correct"] += [p == t for p, t in zip(top1(torch.stack([g.wave for g in short])), target)]
        loop_w, long_w = pipe.windows(loop_run), pipe.windows(long_run)
        for i, t in enumerate(target):
            loop_seams(loop[i].wave, loop_w, 0, "")
            out["loop_correct"] += per_window(loop[i].wave, t)
            long_seams(long[i].wave, long_w, "")
            out["window_correct"] += per_window(long[i].wave, t)
            loop_seams(loop_s[i], loop_stream.windows or loop_w, loop_stream.origin, "stream_")
            out["stream_loop_correct"] += per_window(loop_s[i], t)
            long_seams(long_s[i], long_stream.windows, "stream_")
            out["stream_window_correct"] += per_window(long_s[i], t)
        out["selections"] += len(sels)
    return out


def stats(values: list) -> dict:
    a = np.asarray(values, np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "mean": float(a.mean()), "median": float(np.median(a)),
            "p90": float(np.percentile(a, 90)), "max": float(a.max()), "above_1.5": float((a > 1.5).mean())}


def accuracy(correct: list[bool]) -> dict:
    return {"accuracy": float(np.mean(correct)) if correct else None, "correct": int(sum(correct)), "n": len(correct)}


@command("python -m benchmarks.longform")
def main(argv=None) -> int:
    args = parse_args(argv)
    threads = use_threads(args.threads)
    load_before = os.getloadavg()
    from training.evaluate import test_seeds
    from training.synthscenes import split_seeds

    pipe = Pipeline.from_pretrained(args.checkpoint)
    report = {"benchmark": "longform", "checkpoint": pipe.source, "weights": model_fingerprint(pipe.model),
              "config": {"clip_seconds": pipe.config.clip_seconds, "max_seconds": pipe.config.max_seconds,
                         "steps": args.steps or pipe.config.default_steps,
                         "sampler": args.sampler or pipe.config.default_sampler,
                         "loop_seconds": args.loop * pipe.config.clip_seconds,
                         "long_seconds": args.long * pipe.config.clip_seconds}}
    if not args.skip_cost:
        cost = measure_cost(args, threads)
        report["cost"] = cost
        one = cost[0]["wall_s"]
        print(f"\ncost (demo scene, bird; {threads} threads, load {load_before[0]:.2f} before)")
        print(f"{'seconds':>9}{'how':>15}{'windows':>9}{'wall s':>9}{'x one clip':>11}{'first samples s':>17}"
              f"{'first / one clip':>18}{'peak MiB':>10}")
        for r in cost:
            print(f"{r['seconds']:>9g}{r['mode']:>15}{r.get('windows', '-'):>9}{r['wall_s']:>9.2f}{r['wall_s'] / one:>11.2f}"
                  f"{r['first_samples_s']:>17.2f}{r['first_samples_s'] / one:>18.2f}"
                  f"{r.get('peak_added_mib', float('nan')):>10.1f}")
        print(f"(one clip: the model's max_seconds, {cost[0]['seconds']:g} s, one pass; joint: every window denoised "
              "together, nothing final before the end; stream: windows in order)")
    if not args.skip_quality:
        seeds = test_seeds(args.ranges) if args.ranges else split_seeds("test", args.scenes, start=args.seed_start)
        q = measure_quality(args, pipe, seeds)
        summary = {"selections": q["selections"], "scenes": len(seeds),
                   "object_accuracy_short": accuracy(q["short_correct"]),
                   "object_accuracy_per_window_long": accuracy(q["window_correct"]),
                   "object_accuracy_per_window_loop": accuracy(q["loop_correct"]),
                   "object_accuracy_per_window_long_stream": accuracy(q["stream_window_correct"]),
                   "object_accuracy_per_window_loop_stream": accuracy(q["stream_loop_correct"]),
                   **{f"seam_ratio_{prefix}{name}": stats(q[f"{prefix}{key}"]) for prefix in ("", "stream_")
                      for name, key in (("loop_wrap", "wrap"), ("loop_windows", "loop_bounds"),
                                        ("long_windows", "long_bounds"), ("control", "control"))}}
        report["quality"] = summary
        print(f"\nseams and selection ({q['selections']} object selections, {len(seeds)} unseen scenes)")
        print(f"{'seam ratio (seam / median in-clip)':<38}{'n':>6}{'median':>8}{'p90':>8}{'> 1.5':>8}{'mean':>9}")
        for name in ("loop_wrap", "loop_windows", "long_windows", "control", "stream_loop_wrap",
                     "stream_loop_windows", "stream_long_windows", "stream_control"):
            s = summary[f"seam_ratio_{name}"]
            if s["n"]:
                print(f"{name:<38}{s['n']:>6}{s['median']:>8.2f}{s['p90']:>8.2f}{s['above_1.5']:>8.2f}{s['mean']:>9.2f}")
        print("(the mean is pulled up by near-silent clips, whose median flux is near 0; the control is the same\n"
              " statistic halfway between window boundaries, where no seam can be)")
        for name, key in (("short clips", "short"), ("each window of the long clips", "per_window_long"),
                          ("each clip-length of the loops", "per_window_loop"),
                          ("each window of the streamed long clips", "per_window_long_stream"),
                          ("each clip-length of the streamed loops", "per_window_loop_stream")):
            a = summary[f"object_accuracy_{key}"]
            print(f"object accuracy, {name}: {a['correct']}/{a['n']} = "
                  f"{'n/a' if a['accuracy'] is None else format(a['accuracy'], '.3f')}")
    report["provenance"] = {**provenance(torch.device("cpu")), "load_before": load_before,
                            "load_after": os.getloadavg()}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
