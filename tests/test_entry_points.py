"""One CLI error wrapper (objaudio_rt.core.errors.command) for every entry point: `objaudio` and every
`python -m export.* / training.* / benchmarks.*` with a main. A user error prints one line and
exits 2; no main calls sys.exit itself."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY_MODULES = sorted(p for pkg in ("objaudio_rt", "export", "training", "benchmarks")
                       for p in (ROOT / pkg).rglob("*.py") if "def main(" in p.read_text())


def test_every_main_is_wrapped_and_never_exits():
    assert len(ENTRY_MODULES) >= 9
    for path in ENTRY_MODULES:
        tree = ast.parse(path.read_text())
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        decorators = [d.func.id for d in main.decorator_list
                      if isinstance(d, ast.Call) and isinstance(d.func, ast.Name)]
        assert decorators == ["command"], f"{path.relative_to(ROOT)}: main is not wrapped by errors.command"
        exits = [n.lineno for n in ast.walk(main) if isinstance(n, ast.Attribute) and n.attr == "exit"]
        assert not exits, f"{path.relative_to(ROOT)}: sys.exit inside main (lines {exits})"


def _run(capsys, main, argv):
    rc = main([str(a) for a in argv])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if ": error: " in line]
    return rc, err


@pytest.mark.parametrize("module,prog,argv", [
    ("objaudio_rt.frontends.cli", "objaudio", ["info", "--checkpoint", "{tmp}/none"]),
    ("export.trt", "python -m export.trt", ["--onnx", "{tmp}/none", "--out", "{tmp}/engines"]),
    ("training.ablate", "python -m training.ablate", ["--init-from", "{tmp}", "--out", "{tmp}/o", "--variants", "x"]),
    ("benchmarks.latency", "python -m benchmarks.latency", ["--preset", "tiny", "--device", "cpu", "--backends", "x"]),
])
def test_a_user_error_is_one_line_and_exit_2(module, prog, argv, tmp_path, capsys):
    import importlib

    main = importlib.import_module(module).main
    rc, err = _run(capsys, main, [a.format(tmp=tmp_path) for a in argv])
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"{prog}: error: "), err


def test_a_reader_that_left_gets_no_traceback():
    """`objaudio info | head -1`: the pipe's reader is gone before the output is written."""
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)                                  # every write to w now fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "objaudio_rt", "info"], stdout=w, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        os.close(w)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("module,argv", [
    ("training.train", ["--out", "{tmp}/o"]),
    ("training.evaluate", ["--checkpoint", "{tmp}/none", "--json", "{tmp}/e.json"]),
    ("training.snapshot", ["--run", "{tmp}", "--init-from", "{tmp}", "--out", "{tmp}/o"]),
    ("training.ablate", ["--init-from", "{tmp}", "--out", "{tmp}/o"]),
    ("training.classifier", ["--out", "{tmp}/c"]),
    ("training.distill", ["--teacher", "{tmp}/none", "--out", "{tmp}/o"]),
    ("benchmarks.serve_load", []),
    ("benchmarks.fewstep", []),
])
def test_every_thread_count_is_bounded_by_the_cores(module, argv, tmp_path, capsys):
    """`--threads 100000` started that many threads (263 GB of virtual memory, the host's thread limit):
    every entry point with a --threads flag refuses a count above the cores in one line, before any work."""
    import importlib

    from objaudio_rt.core.threads import usable_cores

    main = importlib.import_module(module).main
    rc, err = _run(capsys, main, [a.format(tmp=tmp_path) for a in argv] + ["--threads", "100000"])
    assert rc == 2 and len(err) == 1, err
    assert f"--threads must be an integer from 1 to {usable_cores()}" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_no_entry_point_sets_torch_threads_itself():
    """A thread count a user gives goes through objaudio_rt.core.threads (check_threads), nowhere else."""
    for pkg in ("objaudio_rt", "export", "training", "benchmarks"):
        for path in (ROOT / pkg).rglob("*.py"):
            if path.name == "threads.py":
                continue
            calls = [n.lineno for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
                     and getattr(n.func, "attr", None) == "set_num_threads"
                     and not (n.args and isinstance(n.args[0], ast.Constant))]
            assert not calls, f"{path.relative_to(ROOT)}:{calls}: use objaudio_rt.core.threads.use_threads"
