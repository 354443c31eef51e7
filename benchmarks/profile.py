"""Where a guided denoising step's time goes, kernel by kernel (CUDA) or operator by operator (CPU).

    python -m benchmarks.profile --preset audioldm-s --device cuda --backends eager-fp16,fast --json P.json
    python -m benchmarks.profile --preset tiny --device cpu --backends eager,fast --json P.json

Weights are RANDOM (timing only). For each backend the guided loop (`backend.denoise`) runs once
untimed (CUDA-graph capture, compilation, Triton JIT), then `--steps` guided steps run under
torch.profiler and every figure is divided by the step count:

- CUDA: `kernels_per_step` (every device activity: kernels, memcpy, memset), `busy_ms_per_step`
  (the sum of their durations: the device is busy that long per step), the mean kernel time, the
  share of busy time and the count per category, and the top kernels by time.
- CPU: there are no kernels, so the figure is `ops_per_step`: the OPERATOR CALLS per step, each
  call counted once at its outermost level (an `aten::conv2d` that calls `aten::convolution`
  counts once), plus any compiled-code kernel the profiler records. `busy_ms_per_step` is the CPU
  time inside those calls. This is what CI tracks to see fusion without a GPU.

Categories (by name): gemm/conv, attention, normalisation, elementwise, layout (NCHW<->NHWC
conversions, copies, transposes), other. Backend names are those of benchmarks.latency
(`eager` means `eager-fp32`).
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd import DeviceType

from benchmarks.latency import SPECS, describe_backend, provenance, sync
from objaudio_rt.core.config import ModelConfig
from objaudio_rt.core.denoise import Conditions, denoise
from objaudio_rt.core.errors import check, command
from objaudio_rt.modelio.model import Calibration, ObjaudioModel
from objaudio_rt.core.pipeline import Pipeline
from objaudio_rt.core.samplers import SamplerPlan

ALIASES = {"eager": "eager-fp32"}
# First match wins: normalisation first (a compiled kernel named "..._group_norm_permute" is a norm),
# layout before elementwise (a copy kernel is "elementwise" by name).
CATEGORIES = (
    ("normalisation", r"norm|Moments|ComputeFusedParams"),
    ("layout", r"nchwToNhwc|nhwcToNchw|memcpy|memset|transpose|permute|contiguous|aten::copy_|aten::clone|"
               r"aten::to$|aten::_to_copy|copy_kernel|CatArrayBatched|aten::cat"),
    ("attention", r"flash|fmha|attention|softmax|sdpa|scaled_dot_product"),
    ("gemm/conv", r"gemm|conv|cutlass|xmma|cublas|nvjet|implicit|sm\d\d_|aten::mm|aten::bmm|aten::addmm|linear|"
                  r"aten::matmul|aten::baddbmm|mkldnn|_mm_out|triton_tem"),
    ("elementwise", r"elementwise|vectorized|unrolled|reduce|triton_poi|triton_red|triton_per|cpp_fused|silu|gelu|"
                    r"geglu|aten::(add|sub|mul|div|silu|gelu|exp|sin|cos|neg|sigmoid|where|clamp|pow|rsqrt|"
                    r"mean|sum|fill_|zero_|arange|index_select|lerp|addcmul)"),
)
CATEGORY_NAMES = tuple(name for name, _ in CATEGORIES) + ("other",)
_PATTERNS = tuple((name, re.compile(rx, re.IGNORECASE)) for name, rx in CATEGORIES)
CONTAINERS = re.compile(r"^(## |Torch-Compiled Region|CompiledFunction|ProfilerStep|<)")


def category(name: str) -> str:
    for cat, rx in _PATTERNS:
        if rx.search(name):
            return cat
    return "other"


def is_cpu_op(name: str) -> bool:
    """An operator call (eager, or an AOTInductor package's call through its `aoti_torch_*` shim) or a
    compiled kernel; not a user annotation around them."""
    return not CONTAINERS.match(name) and ("::" in name or "fused" in name or name.startswith("aoti_torch_"))


def outermost_ops(events) -> list:
    """CPU operator events with no operator among their ancestors (one count per call issued)."""
    out = []
    for e in events:
        if e.device_type != DeviceType.CPU or not is_cpu_op(e.name):
            continue
        parent = e.cpu_parent
        while parent is not None and not is_cpu_op(parent.name):
            parent = parent.cpu_parent
        if parent is None:
            out.append(e)
    return out


def device_activities(events) -> list:
    """Device-side activities (kernels, memcpy, memset) as the profiler recorded them."""
    return [e for e in events if e.device_type == DeviceType.CUDA]


def summarise(items: list[tuple[str, float]], steps: int, top: int) -> dict:
    """items: (name, microseconds) per call. Per-step count, time, categories and the top names."""
    total_us = sum(us for _, us in items) or 1e-9
    cats: dict[str, dict] = {c: {"count_per_step": 0.0, "share_of_time": 0.0} for c in CATEGORY_NAMES}
    by_name: dict[str, list[float]] = defaultdict(list)
    for name, us in items:
        c = cats[category(name)]
        c["count_per_step"] += 1 / steps
        c["share_of_time"] += us / total_us
        by_name[name].append(us)
    ranked = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]
    return {
        "count_per_step": len(items) / steps,
        "busy_ms_per_step": total_us / 1e3 / steps,
        "mean_us": total_us / max(len(items), 1),
        "categories": {k: {"count_per_step": round(v["count_per_step"], 2),
                           "share_of_time": round(v["share_of_time"], 4)} for k, v in cats.items()},
        "top": [{"name": n[:160], "category": category(n), "share_of_time": round(sum(t) / total_us, 4),
                 "count_per_step": round(len(t) / steps, 2), "mean_us": round(sum(t) / len(t), 2)}
                for n, t in ranked],
    }


def profile_backend(spec: str, model: ObjaudioModel, args, device: torch.device) -> dict:
    config = model.config
    name, options = SPECS[ALIASES.get(spec, spec)]
    backend = Pipeline(model, Calibration.uncalibrated(config.image.num_patches), device, backend=name,
                       backend_options=options).backend
    plan = SamplerPlan.build(args.sampler, args.steps, config.schedule)
    shape, _ = config.latent_shape(args.duration)                                  # (C, H, W)
    gen = torch.Generator().manual_seed(args.seed)
    noise = torch.randn((args.batch, *shape), generator=gen).to(device)           # (B, C, H, W)
    cond = torch.randn((args.batch, config.unet.cond_dim), generator=gen).to(device)               # (B, cond_dim)
    rows = Conditions.single(cond)
    denoise(backend, noise, rows, plan, args.cfg, progress=False)                  # warm-up: capture, compile, JIT
    sync(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        denoise(backend, noise, rows, plan, args.cfg, progress=False)
        sync(device)
    events = prof.events()
    result = {"backend": spec, "device": str(device), **describe_backend(backend), "steps": args.steps,
              "latent_shape": [args.batch, *shape]}
    if device.type == "cuda":
        acts = device_activities(events)
        s = summarise([(e.name, e.device_time) for e in acts], args.steps, args.top)
        result.update(kernels_per_step=s["count_per_step"], mean_kernel_us=s["mean_us"],
                      counted="device activities (kernels, memcpy, memset) per guided step")
    else:
        ops = outermost_ops(events)
        s = summarise([(e.name, e.cpu_time_total) for e in ops], args.steps, args.top)
        result.update(ops_per_step=s["count_per_step"], mean_op_us=s["mean_us"],
                      counted="CPU: operator calls per guided step (outermost calls, torch.profiler); not kernels")
    result.update(busy_ms_per_step=s["busy_ms_per_step"], categories=s["categories"], top=s["top"])
    return result


def print_table(report: dict) -> None:
    c, p, rows = report["config"], report["provenance"], report["results"]
    cuda = rows[0]["device"].startswith("cuda")
    unit = "kernels" if cuda else "operator calls (CPU)"
    print(f"\nobjaudio profile: {c['preset']} (RANDOM weights), {c['sampler']} x {c['steps']} guided steps, "
          f"batch {c['batch']}, {c['duration']:g} s audio")
    print(f"device {p['device']} | torch {p['torch']} | triton {p['triton']} | commit {p['git_commit'][:12]}")
    width = max(16, *(len(r["backend"]) + 2 for r in rows))
    count_key = "kernels_per_step" if cuda else "ops_per_step"
    mean_key = "mean_kernel_us" if cuda else "mean_op_us"
    print(f"{'per guided step':<26}" + "".join(f"{r['backend']:>{width}}" for r in rows))
    print(f"{unit:<26}" + "".join(f"{r[count_key]:>{width}.1f}" for r in rows))
    base = rows[0][count_key]
    print(f"{'  vs ' + rows[0]['backend']:<26}" + "".join(f"{r[count_key] / base:>{width}.0%}" for r in rows))
    print(f"{'busy ms':<26}" + "".join(f"{r['busy_ms_per_step']:>{width}.3f}" for r in rows))
    print(f"{'mean us':<26}" + "".join(f"{r[mean_key]:>{width}.1f}" for r in rows))
    for cat in CATEGORY_NAMES:
        print(f"{cat + ' (count, % time)':<26}" + "".join(
            f"{r['categories'][cat]['count_per_step']:>{width - 7}.1f} {r['categories'][cat]['share_of_time']:>5.1%}"
            for r in rows))
    for r in rows:
        print(f"\ntop {len(r['top'])} of {r['backend']} ({unit}):")
        for t in r["top"]:
            print(f"  {t['share_of_time']:>6.1%} {t['count_per_step']:>7.1f}/step {t['mean_us']:>9.1f} us  "
                  f"[{t['category']}] {t['name'][:90]}")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="audioldm-s")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backends", default="eager,fast", help=f"some of eager, {', '.join(SPECS)}")
    ap.add_argument("--steps", type=int, default=3, help="guided steps profiled (after one untimed loop)")
    ap.add_argument("--sampler", default="dpmpp")
    ap.add_argument("--cfg", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=None, help="seconds of audio (default: the preset's clip)")
    ap.add_argument("--batch", type=int, default=1, help="selections per call (the UNet runs at 2x this)")
    ap.add_argument("--top", type=int, default=12, help="kernels/operators listed per backend")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the report here")
    args = ap.parse_args(argv)
    config = ModelConfig.from_name(args.preset)
    args.duration = config.clip_seconds if args.duration is None else args.duration
    check(args.steps >= 1 and args.batch >= 1 and args.top >= 1, "steps, batch and top must be >= 1")
    return args, config


@command("python -m benchmarks.profile")
def main(argv=None) -> int:
    args, config = parse_args(argv)
    device = torch.device(args.device)
    specs = [s.strip() for s in args.backends.split(",") if s.strip()]
    for s in specs:
        check(ALIASES.get(s, s) in SPECS,
              f"unknown backend {s!r}: use some of eager, {', '.join(SPECS)}")
    model = ObjaudioModel.random(config, args.seed)
    results = []
    for spec in specs:
        print(f"[profile] {spec} ...", file=sys.stderr, flush=True)
        results.append(profile_backend(spec, copy.deepcopy(model), args, device))
        gc.collect()
    report = {"provenance": provenance(device),
              "config": {"preset": args.preset, "weights": "random", "steps": args.steps, "sampler": args.sampler,
                         "cfg": args.cfg, "duration": args.duration, "batch": args.batch, "unet_batch": 2 * args.batch},
              "results": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
