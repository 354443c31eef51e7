"""One clip on the CPU: the C host program (libobjaudio) against `objaudio generate`, plus the library's
size on disk and its start-up time.

    cmake -S . -B build/cmake -DOBJAUDIO_KERNELS=OFF && cmake --build build/cmake -j2
    python -m export.engine --out build/engine
    python -m benchmarks.native --host build/cmake/csrc/libobjaudio/objaudio-generate --engine build/engine \
        --json native.json

Both commands generate the demo scene's bird (objaudio_rt/assets/demo) with the same seed, steps,
sampler and cfg, each as a fresh process: the wall time of the whole command (process start,
loading, encoding, generating, writing the WAV) is what a user waits for. The C host also prints its
own split (engine open = start-up, scene encode, generate); the Python side's in-process split is
measured here with the same Pipeline calls `objaudio generate` makes. One run each (`--repeats` for more):
a ratio from one run on a shared machine is a rough figure, not a benchmark of record.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from objaudio_rt.core.errors import ObjaudioError, command
from objaudio_rt.core.selection import Mask

from .latency import provenance

DEMO = Path(__file__).resolve().parents[1] / "objaudio_rt" / "assets" / "demo"
TORCH_LIBS = ("libtorch.so", "libtorch_cpu.so", "libc10.so", "libgomp.so.1")


def _wall(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if r.returncode:
        raise ObjaudioError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-2000:]}")
    return seconds, r.stdout


def _mib(paths) -> float:
    return sum(p.stat().st_size for p in paths) / 2 ** 20


@command("python -m benchmarks.native")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.native", description=__doc__.split("\n")[0])
    p.add_argument("--host", required=True, help="the objaudio-generate program (CMake build)")
    p.add_argument("--engine", required=True, help="engine folder (python -m export.engine)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sampler", default="dpmpp", choices=("ddim", "dpmpp"))
    p.add_argument("--cfg", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    from PIL import Image

    from objaudio_rt.core.pipeline import Pipeline

    host, engine = Path(args.host), Path(args.engine)
    opts = ["--steps", str(args.steps), "--sampler", args.sampler, "--cfg", str(args.cfg), "--seed", str(args.seed)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        Image.open(DEMO / "scene.png").convert("RGB").save(tmp / "scene.ppm")
        Image.open(DEMO / "mask_bird.png").convert("L").save(tmp / "bird.pgm")
        c_cmd = [str(host), "--engine", str(engine), "--image", str(tmp / "scene.ppm"), "--mask", str(tmp / "bird.pgm"),
                 *opts, "--out", str(tmp / "c.wav")]
        py_cmd = [sys.executable, "-m", "objaudio_rt", "generate", "--image", str(DEMO / "scene.png"), "--mask",
                  str(DEMO / "mask_bird.png"), *opts, "--no-png", "--force", "--out", str(tmp / "py.wav")]
        c_runs, py_runs, splits = [], [], []
        for _ in range(args.repeats):
            seconds, out = _wall(c_cmd)
            c_runs.append(seconds)
            m = re.search(r"open ([\d.]+) s, encode ([\d.]+) s, generate ([\d.]+) s", out)
            splits.append({k: float(v) for k, v in zip(("open_s", "encode_s", "generate_s"), m.groups())})
            py_runs.append(_wall(py_cmd)[0])

    pipe_start = time.perf_counter()
    pipe = Pipeline.from_pretrained(None)
    load_s = time.perf_counter() - pipe_start
    gen_start = time.perf_counter()
    scene = pipe.encode_image(DEMO / "scene.png")
    pipe.generate(scene, Mask(DEMO / "mask_bird.png"), steps=args.steps, sampler=args.sampler, cfg=args.cfg,
                  seed=args.seed, progress=False)
    py_generate_s = time.perf_counter() - gen_start

    torch_lib = Path(torch.__file__).parent / "lib"
    lib = host.parent / "libobjaudio.so"
    result = {
        "c_host_wall_s": c_runs, "python_cli_wall_s": py_runs,
        "ratio_python_over_c": float(np.median(py_runs) / np.median(c_runs)),
        "c_host_split": splits, "python_load_s": load_s, "python_encode_and_generate_s": py_generate_s,
        "libobjaudio_mib": _mib([lib]), "libtorch_cpu_runtime_mib": _mib(torch_lib / n for n in TORCH_LIBS),
        "engine_mib": _mib(f for f in engine.rglob("*") if f.is_file()),
        "engine_networks_mib": _mib((engine / "networks").glob("*.pt2")),
        "clip_seconds": pipe.config.clip_seconds, "steps": args.steps, "sampler": args.sampler, "cfg": args.cfg,
        "dtype": "float32", "threads": torch.get_num_threads(),
        "provenance": {**provenance(torch.device("cpu")), "timestamp": datetime.now(timezone.utc).isoformat()},
    }
    s = splits[0]
    print(f"one {pipe.config.clip_seconds:g} s clip, {args.sampler} {args.steps} steps, CPU fp32 "
          f"({result['provenance']['device']}, {result['threads']} threads)")
    print(f"{'':34}{'wall s':>10}")
    print(f"{'objaudio-generate (libobjaudio)':34}{np.median(c_runs):>10.2f}   open {s['open_s']:.2f}, "
          f"encode {s['encode_s']:.3f}, generate {s['generate_s']:.2f}")
    print(f"{'objaudio generate (Python)':34}{np.median(py_runs):>10.2f}   in-process: load {load_s:.2f}, "
          f"encode + generate {py_generate_s:.2f}")
    print(f"ratio python / C: {result['ratio_python_over_c']:.2f}x   libobjaudio.so {result['libobjaudio_mib']:.2f} MiB; "
          f"LibTorch CPU libraries {result['libtorch_cpu_runtime_mib']:.0f} MiB; engine {result['engine_mib']:.1f} MiB "
          f"(networks {result['engine_networks_mib']:.1f} MiB)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
