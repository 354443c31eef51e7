"""Smoke test of benchmarks/fewstep.py: random tiny weights, one test scene, two samplers at two step counts.

It checks the table and the JSON a comparison reads, and that the UNet rows are counted as the loop
runs them: 2 per step for a single selection (classifier-free guidance), 1 + k for a composed union of
k parts. No timing or quality is asserted (random weights).
"""
import json
import subprocess
import sys
from pathlib import Path

from objaudio_rt.core.config import ModelConfig
from training.evaluate import scene_selections
from training.synthscenes import generate_scene, split_seeds

ROOT = Path(__file__).resolve().parents[2]
SEED_START = 4          # a test scene with two sounding objects (composed and pixel-mask unions) and a silent one


def test_fewstep_tiny_random_writes_table_and_json(tmp_path):
    out = tmp_path / "fewstep.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.fewstep", "--checkpoint", "random:tiny",
                          "--samplers", "ddim,unipc", "--steps", "2,3", "--seed-start", str(SEED_START),
                          "--scenes", "1", "--threads", "1", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rows/clip" in run.stdout and "union rec" in run.stdout
    report = json.loads(out.read_text())
    assert {"timestamp", "git_commit", "device", "cpu_model", "torch", "cpu_threads", "load_average_before",
            "load_average_after", "checkpoint_fingerprint"} <= set(report["provenance"])
    assert report["provenance"]["cpu_threads"] == 1
    (seed,) = report["config"]["seeds"]
    assert seed == split_seeds("test", 1, start=SEED_START)[0]

    sels, items = scene_selections(generate_scene(seed, seconds=ModelConfig.from_name("tiny").clip_seconds))
    assert {"union", "union_mask", "object"} <= {it.kind for it in items}, "pick a scene with a union"
    rows_per_step = sum(2 * len(s.parts()) for s in sels)      # each part alone: its unconditional row and its own
    assert rows_per_step == 2 * (len(sels) - 1) + 4            # 2 per plain selection, 4 for the mixed union
    assert [(r["sampler"], r["steps"]) for r in report["results"]] == [("ddim", 2), ("ddim", 3), ("unipc", 2),
                                                                       ("unipc", 3)]
    for r in report["results"]:
        assert r["clips"] == len(sels) and r["unet_rows"] == r["steps"] * rows_per_step
        assert r["unet_rows_per_clip"] > 2 * r["steps"]             # the mixed union's second part per step
        assert r["seconds_per_clip"] > 0 and r["cpu_seconds_per_clip"] > 0
        m = r["metrics"]
        assert {"object_accuracy", "leakage", "union_recall", "union_recall_mask", "silent_accuracy",
                "text_vs_mask_gap", "acc", "fad", "kl", "is"} <= set(m)
        assert m["steps"] == r["steps"] and m["sampler"] == r["sampler"] and m["counts"]["union"] == 1
        assert not any(k.startswith("by_") for k in m)


def test_fewstep_student_runs_one_row_per_condition_and_step(tmp_path):
    """A guidance-distilled student beside its teacher: the same scenes, one UNet row per condition a step
    (no unconditional row), and the comparison against the teacher's most-steps row."""
    import copy

    import torch

    from objaudio_rt import Pipeline
    from objaudio_rt.core.guidance import GuidanceEmbedding
    from objaudio_rt.core.samplers import SamplerPlan
    from objaudio_rt.modelio.checkpoint import load_checkpoint
    from training.distill import DistillConfig, Student, student_checkpoint

    teacher_dir = tmp_path / "teacher"
    Pipeline.from_pretrained("random:tiny", seed=0).save_pretrained(teacher_dir)
    teacher, cal = load_checkpoint(teacher_dir)
    student = Student(copy.deepcopy(teacher.unet), GuidanceEmbedding(teacher.config.unet.cond_dim))
    student_checkpoint(teacher, cal, student, DistillConfig(), SamplerPlan.build("dpmpp", 2, teacher.config.schedule),
                       tmp_path / "student")
    out = tmp_path / "fewstep.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.fewstep", "--checkpoint", str(teacher_dir),
                          "--samplers", "dpmpp", "--steps", "3", "--student", str(tmp_path / "student"),
                          "--student-steps", "2", "--seed-start", str(SEED_START), "--scenes", "1",
                          "--threads", "1", "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "against the baseline (teacher dpmpp 3)" in run.stdout
    report = json.loads(out.read_text())
    assert report["baseline"] == ["teacher", "dpmpp", 3] and "student_fingerprint" in report["provenance"]
    (seed,) = report["config"]["seeds"]
    sels, _ = scene_selections(generate_scene(seed, seconds=ModelConfig.from_name("tiny").clip_seconds))
    conditions = sum(len(s.parts()) for s in sels)
    (t, s) = report["results"]
    assert (t["model"], s["model"], s["sampler"], s["steps"]) == ("teacher", "student", "dpmpp", 2)
    # the default union "mix": every part is generated alone, with its own unconditional row in the teacher
    assert t["unet_rows"] == 3 * 2 * conditions and s["unet_rows"] == 2 * conditions
    assert torch.isfinite(torch.tensor([s["seconds_per_clip"], s["metrics"]["acc"]])).all()
