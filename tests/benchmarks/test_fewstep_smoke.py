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
    rows_per_step = sum(1 + len(s.parts()) for s in sels)      # the unconditional row + one per condition
    assert rows_per_step == 2 * (len(sels) - 1) + 3            # 2 per plain selection, 3 for the composed union
    assert [(r["sampler"], r["steps"]) for r in report["results"]] == [("ddim", 2), ("ddim", 3), ("unipc", 2),
                                                                       ("unipc", 3)]
    for r in report["results"]:
        assert r["clips"] == len(sels) and r["unet_rows"] == r["steps"] * rows_per_step
        assert r["unet_rows_per_clip"] > 2 * r["steps"]             # the composed union's third row per step
        assert r["seconds_per_clip"] > 0 and r["cpu_seconds_per_clip"] > 0
        m = r["metrics"]
        assert {"object_accuracy", "leakage", "union_recall", "union_recall_mask", "silent_accuracy",
                "text_vs_mask_gap", "acc", "fad", "kl", "is"} <= set(m)
        assert m["steps"] == r["steps"] and m["sampler"] == r["sampler"] and m["counts"]["union"] == 1
        assert not any(k.startswith("by_") for k in m)
