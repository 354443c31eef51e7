"""CI smoke test of benchmarks/profile.py: the tiny preset on the CPU, operator calls per guided step.

It checks the report's shape and that the counts are real profiler counts (positive, per category
summing to the total); the fast/eager ratio is a figure the profiler reports, not asserted here.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.profile import CATEGORY_NAMES, category

ROOT = Path(__file__).resolve().parents[2]


def test_profile_tiny_cpu_writes_report(tmp_path, aoti_package):
    """With the session's AOTInductor package in its cache, `fast` is the CPU fast path (the package)."""
    out = tmp_path / "P.json"
    env = {**os.environ, "OBJAUDIO_CACHE": str(aoti_package["cache"])}
    run = subprocess.run([sys.executable, "-m", "benchmarks.profile", "--preset", "tiny", "--device", "cpu",
                          "--backends", "eager,fast", "--steps", "1", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "operator calls (CPU)" in run.stdout and "RANDOM weights" in run.stdout
    report = json.loads(out.read_text())
    assert {"timestamp", "git_commit", "device", "torch", "triton"} <= set(report["provenance"])
    assert [r["backend"] for r in report["results"]] == ["eager", "fast"]
    for r in report["results"]:
        assert r["device"] == "cpu" and "kernels_per_step" not in r
        assert r["ops_per_step"] > 0 and r["busy_ms_per_step"] > 0
        assert set(r["categories"]) == set(CATEGORY_NAMES)
        total = sum(c["count_per_step"] for c in r["categories"].values())
        assert abs(total - r["ops_per_step"]) < 0.1 * len(CATEGORY_NAMES)
        assert r["top"] and all({"name", "category", "share_of_time", "count_per_step"} <= set(t) for t in r["top"])
    eager, fast = ({t["name"] for t in r["top"]} for r in report["results"])
    assert "aten::conv2d" in eager                         # outermost calls, not the convolution's internals
    assert any(name.startswith("aoti_torch_") for name in fast)     # the package's calls, counted as operators


def test_categories_of_known_kernel_names():
    assert category("void cudnn::nchwToNhwcKernel<__half>") == "layout"
    assert category("sm90_xmma_fprop_implicit_gemm_f16f16") == "gemm/conv"
    assert category("at::native::RowwiseMomentsCUDAKernel<float>") == "normalisation"
    assert category("_group_norm_kernel") == "normalisation"
    assert category("void at::native::vectorized_elementwise_kernel<4, silu>") == "elementwise"
    assert category("pytorch_flash::flash_fwd_kernel") == "attention"
    assert category("aten::conv2d") == "gemm/conv" and category("aten::add") == "elementwise"
