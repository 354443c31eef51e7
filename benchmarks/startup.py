"""Wall time a user feels from the command line: whole `objaudio` processes, start to exit.

    python -m benchmarks.startup --json startup.json [--repeats 3]
    python -m benchmarks.startup --load 2 --threads default,1,2 --json threads.json

Cases: `--help`; a bad input (answered before any model library loads); `generate` on the
bundled demo scene with the embedded model (one mask, the model's default 20 DPM-Solver++ steps,
no picture), once per `--threads` value (`default` = objaudio's own choice) and per `--backends`
value: `auto` (the default: onnxruntime when the ONNX graphs are cached, which this script first
makes sure of with `python -m export.onnx --cache`, timed as a one-time cost) and `eager` (the
plain PyTorch reference, importing diffusers, transformers and open_clip). The backend a run used is
read from its output. `--load N` starts N busy processes (pure-Python loops, one core each) for the
duration, as another user's job would.
The machine's load average before and after each case, the core count, versions and the commit
go into the JSON: on a shared machine the times mean little without them.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.latency import provenance
from objaudio_rt.core.errors import ObjaudioError, command

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "objaudio_rt" / "assets" / "demo"


def _busy() -> None:
    while True:
        pass


def _wall(argv: list[str], expect_rc: int) -> tuple[float, str | None]:
    """Wall seconds of one `objaudio` process, and the backend it reports using (None if it says none)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "objaudio_rt", *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - start
    if proc.returncode != expect_rc:
        raise ObjaudioError(f"objaudio {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    used = re.search(r"\(backend (\w+)\)", proc.stdout)
    return wall, used.group(1) if used else None


def _build_onnx_cache() -> float:
    """Seconds `python -m export.onnx --cache` took for the embedded model (near 0 when already built)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "export.onnx", "--cache", "--quiet"], capture_output=True,
                          text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise ObjaudioError(f"python -m export.onnx --cache failed: {proc.stderr.strip()[-400:]}")
    return time.perf_counter() - start


def _cases(threads: list[str], backends: list[str], tmp: Path) -> list[tuple[str, list[str], int]]:
    cases = [("--help", ["--help"], 0),
             ("bad input (missing image)",
              ["generate", "--image", str(tmp / "none.png"), "--out", str(tmp / "x.wav")], 2)]
    for backend in backends:
        for t in threads:
            argv = ["generate", "--image", str(DEMO / "scene.png"), "--mask", str(DEMO / "mask_bird.png"),
                    "--out", str(tmp / "o.wav"), "--no-png", "--force", "--backend", backend]
            cases.append((f"generate, {backend}, threads {t}", argv + ([] if t == "default" else ["--threads", t]), 0))
    return cases


@command("python -m benchmarks.startup")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="default", help="comma-separated --threads values for generate")
    ap.add_argument("--backends", default="auto,eager", help="comma-separated --backend values for generate")
    ap.add_argument("--no-build", action="store_true", help="do not build the ONNX cache first (auto then may "
                                                            "pick eager)")
    ap.add_argument("--load", type=int, default=0, help="busy processes to run alongside (0: none)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    burners = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for b in burners:
        b.start()
    rows = []
    build_s = None
    if not args.no_build:
        build_s = _build_onnx_cache()
        print(f"{'ONNX cache (build, or check current)':<36}{build_s:>9.2f} s", flush=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, case_argv, rc in _cases(args.threads.split(","), args.backends.split(","), Path(tmp)):
                load_before = os.getloadavg()[0]
                runs = [_wall(case_argv, rc) for _ in range(args.repeats)]
                walls = [w for w, _ in runs]
                used = sorted({b for _, b in runs if b})
                rows.append({"case": name, "argv": case_argv, "backend_used": used, "walls_s": walls,
                             "median_s": statistics.median(walls), "loadavg_1min_before": load_before,
                             "loadavg_1min_after": os.getloadavg()[0]})
                print(f"{name:<36}{statistics.median(walls):>9.2f} s  (min {min(walls):.2f}, max {max(walls):.2f}; "
                      f"{'backend ' + '/'.join(used) + '; ' if used else ''}"
                      f"load {load_before:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for b in burners:
            b.terminate()
    report = {"provenance": provenance(torch.device("cpu")), "extra_busy_processes": args.load,
              "repeats": args.repeats, "onnx_cache_build_s": build_s, "results": rows}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
