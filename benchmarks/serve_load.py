"""Throughput and latency of `objaudio serve` under 1, 4 and 16 concurrent clients, micro-batching on and off.

    nice -n 15 python -m benchmarks.serve_load --json serve_load.json          # the embedded model, CPU

One process: the service runs under uvicorn on a loopback port; each client sends its requests one
after another (closed loop) on the demo scene, cycling through its four objects with one seed, so
batches can form. Every configuration is run with batching on (the default limits) and off (the
`unbatched` preset: one request per generate_many call) on the same pipeline, so the gain is a
ratio from one run. Prints a table; writes JSON with provenance and the machine's load average.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import torch

from benchmarks.latency import provenance
from objaudio_rt import Pipeline
from objaudio_rt.core.errors import command
from objaudio_rt.frontends.serve import ServeLimits, Service
from objaudio_rt.frontends.serve.main import ThreadedServer
from objaudio_rt.core.threads import use_threads


def run_clients(url: str, clients: int, per_client: int, body: dict) -> dict:
    def client(c: int) -> list[float]:
        times = []
        with httpx.Client(base_url=url, timeout=3600) as http:
            for k in range(per_client):
                start = time.perf_counter()
                r = http.post("/v1/generate", json={**body, "selections": [{"mask_index": (c + k) % 4}]})
                r.raise_for_status()
                times.append(time.perf_counter() - start)
        return times

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [t for ts in pool.map(client, range(clients)) for t in ts]
    wall = time.perf_counter() - start
    return {"clients": clients, "requests": len(latencies), "wall_s": wall, "requests_per_s": len(latencies) / wall,
            "p50_s": float(np.percentile(latencies, 50)), "p95_s": float(np.percentile(latencies, 95)),
            "mean_s": statistics.fmean(latencies)}


@command("python -m benchmarks.serve_load")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the embedded model")
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--requests-per-client", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="default: the model's")
    p.add_argument("--duration", type=float, default=None, help="seconds; default: the model's clip")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads, 1 to the cores this process may use (default: torch's)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads is not None:
        use_threads(args.threads)
    pipe = Pipeline.from_pretrained(args.checkpoint, device="cpu")
    body = {"scene_id": "demo", "seed": 0}
    body.update({k: v for k, v in (("steps", args.steps), ("duration", args.duration)) if v is not None})
    load_before = os.getloadavg()
    rows = []
    for mode in ("batched", "unbatched"):
        server = ThreadedServer(Service(pipe, ServeLimits.from_name("default" if mode == "batched" else mode)))
        try:
            with httpx.Client(base_url=server.url, timeout=3600) as http:
                http.get("/v1/demo").raise_for_status()
            run_clients(server.url, max(map(int, args.clients.split(","))), 1, body)     # warm-up, every batch size
            for clients in map(int, args.clients.split(",")):
                before = len(server.service.batcher.batch_sizes)
                row = run_clients(server.url, clients, args.requests_per_client, body)
                sizes = server.service.batcher.batch_sizes[before:]
                row.update(mode=mode, mean_batch=statistics.fmean(sizes), max_batch=max(sizes))
                rows.append(row)
                print(f"{mode:<10} {clients:>3} clients  {row['requests_per_s']:.3f} req/s  p50 {row['p50_s']:.2f} s  "
                      f"p95 {row['p95_s']:.2f} s  mean batch {row['mean_batch']:.1f}", file=sys.stderr, flush=True)
        finally:
            server.stop()
    load_after = os.getloadavg()
    gains = {str(c): next(r["requests_per_s"] for r in rows if r["mode"] == "batched" and r["clients"] == c)
             / next(r["requests_per_s"] for r in rows if r["mode"] == "unbatched" and r["clients"] == c)
             for c in map(int, args.clients.split(","))}
    cfg = pipe.config
    report = {"provenance": {**provenance(torch.device("cpu")), "load_average_before": load_before,
                             "load_average_after": load_after, "model": pipe.source, "dtype": "float32",
                             "steps": args.steps or cfg.default_steps, "sampler": cfg.default_sampler,
                             "duration_s": args.duration or cfg.clip_seconds, "backend": "eager",
                             "requests_per_client": args.requests_per_client,
                             "batch_window_ms": ServeLimits().batch_window_ms, "max_batch": ServeLimits().max_batch},
              "rows": rows, "batching_gain_requests_per_s": gains}
    prov = report["provenance"]
    print(f"\nobjaudio serve on {prov['device']} ({prov['cpu_threads']} threads), {prov['model']}, "
          f"{prov['sampler']} {prov['steps']} steps, {prov['duration_s']:g} s clips; load average "
          f"{load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"{'mode':<10} {'clients':>7} {'requests':>8} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'batch':>6}")
    for r in rows:
        print(f"{r['mode']:<10} {r['clients']:>7} {r['requests']:>8} {r['requests_per_s']:>7.3f} {r['p50_s']:>7.2f} "
              f"{r['p95_s']:>7.2f} {r['mean_batch']:>6.1f}")
    print("batching gain (req/s on / off): " + ", ".join(f"{c} clients {g:.2f}x" for c, g in gains.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
