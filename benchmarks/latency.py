"""Per-stage latency of the object-aware pipeline, one column per backend.

    python -m benchmarks.latency --preset audioldm-s --steps 200 --sampler ddim \
        --backends eager-fp32,eager-fp16,fast --device cuda --json bench.json
    python -m benchmarks.latency --preset tiny --device cpu --backends eager-fp32,fast --steps 25

    python -m benchmarks.latency --checkpoint tiny-synth --device cpu --backends eager-fp32,fast --steps 20

By default the weights are RANDOM at `--preset`'s sizes (no machine here can download upstream
weights): the timings are those of the real model, but the audio is noise. `--checkpoint` times a
model of your own (a folder, `tiny-synth`, or `random:PRESET`), with its calibration.
Stages: image encoder (pixels -> CLIP patch tokens), SAM (vit_b, random weights, with --sam:
image embedding and one point prompt), grounding (mask -> patch weights -> condition),
denoise (the guided loop; also per step), VAE decode, vocoder, and end to end (encode the image,
then generate from a mask selection; SAM not included). The model's silence gate is off throughout
(`silence_gate=False`): every stage runs whatever the mask covers. Each stage is warmed up, then run
`--repeats` times with the device synchronised around it; the table shows the median and the
JSON holds every time with p20/p50/p80. The denoise FLOP count comes from torch's
FlopCounterMode on one UNet call at the run's shape (counted once, with the first backend).

Backends (each built by the runtime's registry, objaudio_rt.backends.make_backend; `SPECS`):
eager-fp32, eager-fp16, eager-bf16 (EagerBackend with the model in that dtype, except the small
grounding module, which every backend runs in float32); fast (FastBackend's defaults: fp16 UNet,
graphed loop on CUDA), fast-bf16, fast-nograph (fused loop without the CUDA graph), fast-compile
(torch.compile'd UNet inside the graph); onnxruntime (the graphs in --onnx-dir, default the
cache folder `python -m export.onnx --cache --checkpoint random:P --seed S` fills); tensorrt.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from objaudio_rt.core.config import ModelConfig, ModelSource
from objaudio_rt.core.errors import ObjaudioError, check, command
from objaudio_rt.modelio.model import Calibration, ObjaudioModel
from objaudio_rt.core.options import RunOptions
from objaudio_rt.core.pipeline import Pipeline
from objaudio_rt.core.samplers import SamplerPlan
from objaudio_rt.core.selection import Mask

# benchmark name -> (registry name, options)
SPECS = {"eager-fp32": ("eager", {"dtype": "fp32"}), "eager-fp16": ("eager", {"dtype": "fp16"}),
         "eager-bf16": ("eager", {"dtype": "bf16"}), "fast": ("fast", {}),
         "fast-bf16": ("fast", {"unet_dtype": "bf16"}), "fast-nograph": ("fast", {"cuda_graph": False}),
         "fast-compile": ("fast", {"compile_unet": True}),
         "onnxruntime": ("onnxruntime", {}), "tensorrt": ("tensorrt", {})}
IMAGE_HW = (480, 640)


def describe_backend(backend) -> dict:
    """Class, per-network dtypes (exported graphs: as exported), CUDA graph and compile of a built backend."""
    graph = "exported graph"
    options = getattr(backend, "options", None)
    return {"class": type(backend).__name__, "unet_dtype": str(getattr(backend, "unet_dtype", graph)),
            "vae_dtype": str(getattr(backend, "vae_dtype", graph)),
            "vocoder_dtype": str(getattr(backend, "vocoder_dtype", graph)),
            "encoders_dtype": str(getattr(backend, "dtype", graph)), "cuda_graph": backend.graphs is not None,
            "compile_unet": bool(options is not None and options.compile_unet)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, repeats: int) -> tuple[dict, object]:
    """Run fn warmup + repeats times, synchronising around each timed run. Returns (stats, last result)."""
    first = None
    for i in range(warmup):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        if i == 0:
            first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    p20, p50, p80 = np.percentile(times, [20, 50, 80]).tolist()
    return {"median_s": p50, "p20_s": p20, "p80_s": p80, "times_s": times, "first_warmup_s": first}, out


def unet_flops(backend, x: torch.Tensor, cond: torch.Tensor, plan: SamplerPlan) -> int:
    """FLOPs of one guided UNet call (batch 2B) at this shape, by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    cond2 = torch.cat([cond, cond])
    t = plan.timesteps[:1].to(x.device)
    with FlopCounterMode(display=False) as counter:
        backend.unet_eps(torch.cat([x, x]), t, cond2)
    return int(counter.get_total_flops())


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float | None:
    """||out - ref|| / ||ref|| in float64 on the CPU; None when out is not finite."""
    out, ref = out.detach().double().cpu(), ref.double()
    return ((out - ref).norm() / ref.norm()).item() if bool(torch.isfinite(out).all()) else None


def bench_backend(spec: str, model: ObjaudioModel, calibration: Calibration, args, device: torch.device,
                  image: np.ndarray, mask: np.ndarray, sam, shared: dict) -> dict:
    """Time every stage of one backend. `shared` carries the first backend's UNet FLOP count and
    outputs: each later backend's VAE and vocoder also run on those inputs, and their relative
    error against the first backend's outputs is reported (the cost of their dtype).

    The stages are the pipeline's own (`Pipeline.conditions`, `sample`, the backend's decode and
    vocode), so the table times what `generate_many` runs."""
    name, options = SPECS[spec]
    if name == "onnxruntime" and args.onnx_dir:
        options = {**options, "onnx_dir": args.onnx_dir}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run = RunOptions(args.steps, args.sampler, args.cfg, 0, args.duration).resolve(model.config)
    plan = SamplerPlan.build(run.sampler, run.steps, model.config.schedule)
    shape, n_samples = model.config.latent_shape(run.duration)
    result = {"backend": spec, "latent_shape": [args.batch, *shape], "wave_samples": n_samples, "stages": {}}
    stages = result["stages"]
    selection = Mask(mask)
    w, r = args.warmup, args.repeats
    try:
        pipe = Pipeline(model, calibration, device, backend=name, backend_options=options)
        backend = pipe.backend
        result.update(describe_backend(backend))
        stages["image_encoder"], scene = timed(lambda: pipe.encode_image(image), device, w, r)
        if sam is not None:
            stages["sam_embed"], emb = timed(lambda: sam.embed(image), device, w, r)
            point = np.array([[IMAGE_HW[1] / 2, IMAGE_HW[0] / 2]], np.float32)
            stages["sam_predict"], _ = timed(lambda: sam.predict(emb, points=point, labels=np.ones(1, np.int64)),
                                             device, w, r)

        stages["grounding"], batch = timed(lambda: pipe.conditions(scene, [selection] * args.batch,
                                                                        silence_gate=False), device, w, r)
        if "unet_call_flops" not in shared:
            noise = torch.randn((args.batch, *shape), generator=torch.Generator().manual_seed(0)).to(device)
            shared["unet_call_flops"] = unet_flops(backend, noise, batch.conditions.rows, plan)
        stages["denoise"], z = timed(lambda: pipe.sample(batch, run, progress=False), device,
                                     max(w, 1) if backend.graphs is not None else w, r)
        stages["vae"], mel = timed(lambda: backend.decode(z), device, w, r)
        stages["vocoder"], wave = timed(lambda: backend.vocode(mel), device, w, r)
        if "latent" not in shared:
            shared.update(backend=spec, latent=z.float().cpu(), mel=mel.cpu(), wave=wave.cpu())
        result["error_vs_first_backend"] = {
            "against": shared["backend"],
            "latent": rel_err(z, shared["latent"]),
            "vae_on_its_latent": rel_err(backend.decode(shared["latent"].to(device)), shared["mel"]),
            "vocoder_on_its_mel": rel_err(backend.vocode(shared["mel"].to(device)), shared["wave"]),
            "note": "None means NaN/inf; random weights, so this is the dtype's effect on these networks, "
                    "not on trained audio"}

        def end_to_end():
            s = pipe.encode_image(image)
            return pipe.generate_many(s, [selection] * args.batch, steps=args.steps, sampler=args.sampler,
                                      cfg=args.cfg, seed=0, duration=args.duration, progress=False,
                                      silence_gate=False)

        stages["end_to_end"], _ = timed(end_to_end, device, w, r)
    except ObjaudioError as exc:            # e.g. a half-precision vocoder's NaN, or no exported graphs
        result["error"] = str(exc)
        print(f"[latency] {spec}: {exc}", file=sys.stderr)
    audio_s = args.duration * args.batch
    den = stages["denoise"]["median_s"] if "denoise" in stages else None
    e2e = stages["end_to_end"]["median_s"] if "end_to_end" in stages else None
    result.update({
        "denoise_per_step_s": den / args.steps if den else None,
        "denoise_tflops": shared["unet_call_flops"] * args.steps / den / 1e12 if den else None,
        "rtf": e2e / audio_s if e2e else None, "x_realtime": audio_s / e2e if e2e else None,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
    })
    return result


def graphs_held(backend) -> int | None:
    """How many captured loops the backend's graph cache holds (None: it does not graph its loop)."""
    return len(backend.graphs) if backend.graphs is not None else None


def bench_throughput(spec: str, model: ObjaudioModel, calibration: Calibration, args, device: torch.device,
                     image: np.ndarray, mask: np.ndarray) -> dict:
    """generate_many at each of `args.throughput` selection counts: per call and per selection.

    Each batch size is warmed up once (the fast backend captures its loop for that shape there),
    then timed `--repeats` times; `graphs_after_warmup` == `graphs_after_timing` shows the timed
    calls replayed the captured loops without recapturing.
    """
    name, options = SPECS[spec]
    pipe = Pipeline(model, calibration, device, backend=name, backend_options=options)
    scene = pipe.encode_image(image)
    selection = Mask(mask)
    rows = []
    for batch in args.throughput:
        def call():
            return pipe.generate_many(scene, [selection] * batch, steps=args.steps, sampler=args.sampler,
                                      cfg=args.cfg, seed=0, duration=args.duration, progress=False,
                                      silence_gate=False)

        for _ in range(max(args.warmup, 1)):                                  # the first captures this shape
            call()
        sync(device)
        warm_graphs = graphs_held(pipe.backend)
        stats, _ = timed(call, device, 0, args.repeats)
        per_call = stats["median_s"]
        rows.append({"selections": batch, "per_call_s": per_call, "per_selection_s": per_call / batch,
                     "per_selection_step_ms": per_call / batch / args.steps * 1e3, "call": stats,
                     "graphs_after_warmup": warm_graphs, "graphs_after_timing": graphs_held(pipe.backend)})
    return {"backend": spec, **describe_backend(pipe.backend), "throughput": rows}


def print_throughput(report: dict) -> None:
    c = report["config"]
    print(f"\nobjaudio throughput: {c['preset']} ({weights_line(c)}), {c['sampler']} x {c['steps']} steps, "
          f"{c['duration']:g} s clips, generate_many end to end, device {report['provenance']['device']}")
    print(f"{'backend':<14}{'selections':>11}{'ms/call':>10}{'ms/selection':>14}{'ms/sel-step':>13}{'graphs':>8}")
    for r in report["results"]:
        for t in r["throughput"]:
            held = t["graphs_after_warmup"], t["graphs_after_timing"]
            graphs = "-" if held[1] is None else f"{held[0]}->{held[1]}"
            print(f"{r['backend']:<14}{t['selections']:>11}{t['per_call_s'] * 1e3:>10.1f}"
                  f"{t['per_selection_s'] * 1e3:>14.2f}{t['per_selection_step_ms']:>13.3f}{graphs:>8}")


def provenance(device: torch.device) -> dict:
    def version(mod):
        try:
            return __import__(mod).__version__
        except ImportError:
            return None

    commit = os.environ.get("OBJAUDIO_GIT_COMMIT")
    if not commit:
        try:
            root = Path(__file__).resolve().parents[1]
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                    check=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            commit += "+dirty" if dirty else ""
        except (OSError, subprocess.SubprocessError):
            commit = "unknown (no git here: set OBJAUDIO_GIT_COMMIT)"
    cuda = device.type == "cuda"
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "device": torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine()),
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__, "triton": version("triton"),
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "diffusers": version("diffusers"), "transformers": version("transformers"),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }


def build_sam(device: torch.device):
    from segment_anything import sam_model_registry

    from objaudio_rt.modelio.sam import SamSegmenter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SamSegmenter(sam_model_registry["vit_b"](checkpoint=None).to(device).eval())


def load_model(source: ModelSource, seed: int) -> tuple[ObjaudioModel, Calibration]:
    """The networks and calibration `source` names: random weights from `seed`, or a checkpoint's."""
    if source.is_random:
        config = ModelConfig.from_name(source.random_preset)
        return ObjaudioModel.random(config, seed), Calibration.uncalibrated(config.image.num_patches)
    from objaudio_rt.modelio.checkpoint import load_checkpoint

    return load_checkpoint(source.folder)


def weights_label(source: ModelSource) -> str:
    """The report's "weights": "random", or the checkpoint folder read."""
    return "random" if source.is_random else str(source.folder)


def weights_line(config: dict) -> str:
    return "RANDOM weights" if config["weights"] == "random" else f"weights of {config['weights']}"


def print_table(report: dict) -> None:
    rows = report["results"]
    c = report["config"]
    p = report["provenance"]
    print(f"\nobjaudio latency: {c['preset']} ({weights_line(c)}), {c['sampler']} x {c['steps']} steps, cfg {c['cfg']}, "
          f"batch {c['batch']}, {c['duration']:g} s audio")
    print(f"device {p['device']} | torch {p['torch']} | triton {p['triton']} | CUDA build {p['cuda']} "
          f"| commit {p['git_commit'][:12]}")
    stages = list(dict.fromkeys(k for r in rows for k in r["stages"]))
    width = max(14, *(len(r["backend"]) + 2 for r in rows))

    def stage_ms(r, s):
        return r["stages"][s]["median_s"] * 1e3 if s in r["stages"] else None

    def ratio(r, s):
        a, b = stage_ms(rows[0], s), stage_ms(r, s)
        return f"{a / b:.2f}x" if a and b else "-"

    def num(v, spec):
        return "-" if v is None else format(v, spec)

    print(f"{'median ms':<18}" + "".join(f"{r['backend']:>{width}}" for r in rows))
    for s in stages:
        print(f"{s:<18}" + "".join(f"{num(stage_ms(r, s), '.2f'):>{width}}" for r in rows))
    err = lambda r, k: num(r.get("error_vs_first_backend", {}).get(k), ".1e")
    lines = [("denoise / step ms", lambda r: num(r["denoise_per_step_s"] and r["denoise_per_step_s"] * 1e3, ".3f")),
             ("denoise TFLOP/s", lambda r: num(r["denoise_tflops"], ".3g")),
             ("RTF (e2e/audio)", lambda r: num(r["rtf"], ".4f")),
             ("e2e speedup", lambda r: ratio(r, "end_to_end")),
             ("denoise speedup", lambda r: ratio(r, "denoise")),
             ("peak mem MiB", lambda r: num(r["peak_memory_bytes"] and r["peak_memory_bytes"] / 2**20, ".0f")),
             ("unet dtype", lambda r: r.get("unet_dtype", "-").replace("torch.", "")),
             ("rel err latent", lambda r: err(r, "latent")),
             ("rel err vae", lambda r: err(r, "vae_on_its_latent")),
             ("rel err vocoder", lambda r: err(r, "vocoder_on_its_mel"))]
    for name, fmt in lines:
        print(f"{name:<18}" + "".join(f"{fmt(r):>{width}}" for r in rows))
    for r in rows:
        if "error" in r:
            print(f"{r['backend']}: FAILED: {r['error']}")
    print(f"(speedups and relative errors against {rows[0]['backend']}; p20/p80 and every time in the JSON)")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="audioldm-s", help="random weights at this preset (without --checkpoint)")
    ap.add_argument("--checkpoint", default=None,
                    help="time this model instead: a checkpoint folder, the embedded model's name (tiny-synth) or "
                         "random:PRESET (what `objaudio generate --checkpoint` takes)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backends", default="eager-fp32,eager-fp16,fast", help=f"some of {', '.join(SPECS)}")
    ap.add_argument("--onnx-dir", default=None, help="ONNX folder for the onnxruntime backend (default: the cache)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's own)")
    ap.add_argument("--sampler", default=None, help="sampler (default: the model's own)")
    ap.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the model's own)")
    ap.add_argument("--duration", type=float, default=None, help="seconds of audio (default: the preset's clip)")
    ap.add_argument("--batch", type=int, default=1, help="selections generated together")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per stage (default 5 on cuda, 1 on cpu)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per stage (fast denoise always >= 1)")
    ap.add_argument("--sam", action="store_true", help="also time SAM vit_b (random weights; slow on a CPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--throughput", default=None,
                    help="comma-separated selection counts (e.g. 1,4,8,16): time generate_many per call and per "
                         "selection at each, instead of the per-stage table")
    ap.add_argument("--json", default=None, help="write the full report here")
    args = ap.parse_args(argv)
    args.source = ModelSource.parse(args.checkpoint or f"random:{args.preset}")
    config = args.source.config()
    check(config is not None, f"{args.source.folder}: not a checkpoint folder (no readable config.json)")
    run = RunOptions(args.steps, args.sampler, args.cfg, 0, args.duration).resolve(config)   # the model's defaults
    args.steps, args.sampler, args.cfg, args.duration = run.steps, run.sampler, run.cfg, run.duration
    args.repeats = args.repeats or (5 if args.device.startswith("cuda") else 1)
    if args.throughput is not None:
        try:
            args.throughput = [int(b) for b in args.throughput.split(",") if b.strip()]
        except ValueError:
            raise ObjaudioError(f"--throughput takes selection counts like 1,4,8,16, got {args.throughput!r}") from None
        check(args.throughput and min(args.throughput) >= 1, "--throughput counts must be >= 1")
    return args, config


@command("python -m benchmarks.latency")
def main(argv=None) -> int:
    args, config = parse_args(argv)
    device = torch.device(args.device)
    specs = [s.strip() for s in args.backends.split(",") if s.strip()]
    for s in specs:
        check(s in SPECS, f"unknown backend {s!r}: use some of {', '.join(SPECS)}")
    check(args.batch >= 1 and args.repeats >= 1 and args.warmup >= 0, "batch and repeats must be >= 1, warmup >= 0")
    rng = np.random.default_rng(args.seed)
    image = rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)       # (H, W, 3) uint8, random pixels
    mask = np.zeros(IMAGE_HW, np.float32)
    mask[IMAGE_HW[0] // 4: 3 * IMAGE_HW[0] // 4, IMAGE_HW[1] // 5: IMAGE_HW[1] // 2] = 1
    model, calibration = load_model(args.source, args.seed)          # on the CPU; each backend gets a copy
    sam = build_sam(device) if args.sam else None
    shared: dict = {}
    results = []
    for spec in specs:
        print(f"[latency] {spec} ...", file=sys.stderr, flush=True)
        if args.throughput:
            results.append(bench_throughput(spec, copy.deepcopy(model), calibration, args, device, image, mask))
        else:
            results.append(bench_backend(spec, copy.deepcopy(model), calibration, args, device, image, mask, sam,
                                         shared))
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report = {
        "provenance": provenance(device),
        "config": {"preset": args.source.random_preset or Path(args.source.text).name, "weights": weights_label(args.source),
                   "checkpoint": args.source.text, "steps": args.steps, "sampler": args.sampler,
                   "cfg": args.cfg, "duration": args.duration, "batch": args.batch, "repeats": args.repeats,
                   "warmup": args.warmup, "sam": args.sam, "image_hw": list(IMAGE_HW), "throughput": args.throughput,
                   "unet_call_flops": shared.get("unet_call_flops"),
                   "parameters": model.num_parameters()},
        "results": results,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.throughput:
        print_throughput(report)
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
