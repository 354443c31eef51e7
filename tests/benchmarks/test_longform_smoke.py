"""CI smoke test of benchmarks/longform.py on random tiny weights: both tables, the JSON's keys and
the lengths it measured; no timing or quality is asserted."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_longform_writes_cost_seams_and_accuracy(tmp_path):
    out = tmp_path / "longform.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.longform", "--checkpoint", "random:tiny", "--ranges", "0:2",
                          "--steps", "1", "--long", "5", "--loop", "1", "--cost-seconds", "6", "--threads", "1",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "first samples s" in run.stdout and "loop_wrap" in run.stdout and "control" in run.stdout
    report = json.loads(out.read_text())
    one, long, stream = report["cost"]
    assert (one["seconds"], one["windows"], long["seconds"]) == (5.12, 0, 6.0) and long["windows"] >= 2
    assert (long["mode"], stream["mode"], stream["seconds"], stream["windows"]) == ("joint", "stream", 6.0, long["windows"])
    for row in (long, stream):
        assert row["samples"] == 6 * 16000 and 0 < row["first_samples_s"] <= row["wall_s"]
    q = report["quality"]
    assert q["seam_ratio_loop_wrap"]["n"] == q["seam_ratio_stream_loop_wrap"]["n"] == q["selections"] > 0
    assert q["object_accuracy_per_window_long"]["n"] == q["object_accuracy_per_window_long_stream"]["n"] \
        == 5 * q["selections"]
    assert {"git_commit", "load_before", "load_after", "cpu_threads"} <= set(report["provenance"])
