"""CI smoke test of benchmarks/latency.py: the tiny preset on the CPU, 2 steps, one timed run.

It checks that the script runs and writes the JSON a comparison tool reads; no timing is asserted.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGES = {"image_encoder", "grounding", "denoise", "vae", "vocoder", "end_to_end"}


def test_latency_tiny_cpu_writes_report(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.latency", "--preset", "tiny", "--device", "cpu",
                          "--backends", "eager-fp32,fast", "--steps", "2", "--sampler", "dpmpp",
                          "--repeats", "1", "--warmup", "0", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "RANDOM weights" in run.stdout and "end_to_end" in run.stdout
    report = json.loads(out.read_text())
    assert {"timestamp", "git_commit", "device", "torch", "triton", "cuda"} <= set(report["provenance"])
    config = report["config"]
    assert (config["preset"], config["steps"], config["sampler"], config["weights"]) == ("tiny", 2, "dpmpp", "random")
    assert [r["backend"] for r in report["results"]] == ["eager-fp32", "fast"]
    for r in report["results"]:
        assert set(r["stages"]) == STAGES
        for stats in r["stages"].values():
            assert stats["p20_s"] <= stats["median_s"] <= stats["p80_s"] and len(stats["times_s"]) == 1
        assert {"denoise_per_step_s", "rtf", "peak_memory_bytes", "unet_dtype", "latent_shape"} <= set(r)
        assert r["rtf"] > 0


def test_throughput_tiny_cpu_times_each_batch(tmp_path):
    out = tmp_path / "throughput.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.latency", "--preset", "tiny", "--device", "cpu",
                          "--backends", "fast", "--steps", "1", "--throughput", "1,2", "--repeats", "1",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "objaudio throughput" in run.stdout
    (row,) = json.loads(out.read_text())["results"]
    assert [t["selections"] for t in row["throughput"]] == [1, 2]
    for t in row["throughput"]:
        assert t["per_call_s"] > 0 and abs(t["per_selection_s"] * t["selections"] - t["per_call_s"]) < 1e-9


def test_latency_times_a_checkpoint_with_its_calibration(tmp_path):
    """--checkpoint: the embedded model (issue 20: a user profiles their own model), not random weights."""
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.latency", "--checkpoint", "tiny-synth", "--device", "cpu",
                          "--backends", "eager-fp32", "--steps", "2", "--repeats", "1", "--warmup", "0",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "RANDOM" not in run.stdout and "weights of" in run.stdout
    config = json.loads(out.read_text())["config"]
    from objaudio_rt.core.config import ModelSource

    assert config["preset"] == "tiny-synth" and config["weights"] == str(ModelSource.parse("tiny-synth").folder)
    bad = subprocess.run([sys.executable, "-m", "benchmarks.latency", "--checkpoint", "random:nope"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no preset 'nope'" in bad.stderr


def test_latency_runs_what_the_model_runs_unless_told():
    """Without --steps/--sampler/--cfg the benchmark times the model's own defaults (the embedded model's few-step
    path: 4 DPM-Solver++ steps at cfg 4), not AudioLDM's 200 DDIM steps at cfg 2; flags still win."""
    from benchmarks.latency import parse_args
    from objaudio_rt.core.config import ModelSource

    own = ModelSource.parse("tiny-synth").config()
    args, config = parse_args(["--checkpoint", "tiny-synth"])
    assert (args.steps, args.sampler, args.cfg) == (own.default_steps, own.default_sampler, own.default_cfg)
    assert (args.steps, args.sampler) != (200, "ddim")
    args, _ = parse_args(["--checkpoint", "tiny-synth", "--steps", "7", "--sampler", "ddim", "--cfg", "1.5"])
    assert (args.steps, args.sampler, args.cfg) == (7, "ddim", 1.5)
    full = ModelSource.parse("tiny-synth", path="full").config()
    assert (full.default_steps, full.default_sampler) == (20, "dpmpp")        # the teacher's, for comparison
