"""training/gpu_train.sh run dry on the CPU (DEVICE=cpu, two training steps, one evaluation scene): every
stage runs, the new checkpoint comes back split under the size limit and joins into a checkpoint that
loads; and the script exits non-zero when its stages fail."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_train_runs_every_stage_dry_on_the_cpu(tmp_path):
    from objaudio_rt.core.pipeline import Pipeline
    from training.shard import join

    out = tmp_path / "out"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OUT=str(out), DEVICE="cpu",
               TRAIN_MINUTES="0.05", SCENES="12", MAX_STEPS="2", EVAL_RANGES="20000:1", RUN=str(tmp_path / "run"),
               BATCH_SCALE="1", SETUP_SECONDS="400",
               OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(ROOT / "training" / "gpu_train.sh")], env=env, capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    assert "0 stage(s) failed" in summary and "object_accuracy" in summary and "ldm: " in summary
    assert "Traceback" not in summary
    assert (out / "eval_new.json").is_file() and (out / "eval_base.json").is_file()
    assert all(p.stat().st_size <= 15 * 2**20 for p in (out / "ckpt").rglob("*") if p.is_file())
    pipe = Pipeline.from_pretrained(str(join(out / "ckpt", tmp_path / "joined")))
    assert pipe.config.clip_seconds == 2.56


def test_gpu_train_exits_nonzero_when_stages_fail(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python3", "nvidia-smi"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", OUT=str(tmp_path / "out"), RUN=str(tmp_path / "r"))
    proc = subprocess.run(["bash", str(ROOT / "training" / "gpu_train.sh")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "stage(s) failed" in proc.stderr, proc.stderr[-2000:]
