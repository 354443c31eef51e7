"""objaudio_rt.modelio.artifacts as the one home of artifact I/O: one JSON reader with one error wording, one
atomic write (all or nothing, no temporary left), one platform identity, one definition of each name table."""
import ast
import json
import os

import pytest
import torch

from objaudio_rt.modelio.artifacts import (current_platform, platform_label, read_json, replacing, write_bytes_atomic,
                                   write_json_atomic)
from objaudio_rt.core.errors import ObjaudioError
from tests.test_layering import ROOT, modules

FIX = "copy it again"


def test_read_json_returns_the_object(tmp_path):
    (tmp_path / "a.json").write_text('{"format": "x", "n": [1, 2]}')
    assert read_json(tmp_path / "a.json", "checkpoint c", FIX) == {"format": "x", "n": [1, 2]}


@pytest.mark.parametrize("content,words", [
    (None, "checkpoint c has no a.json: copy it again"),
    ("{not json", "checkpoint c has a corrupt a.json (Expecting property name"),
    (b"\xff\xfe\xfa", "checkpoint c has a corrupt a.json ("),
    ("[1, 2]", "checkpoint c has a corrupt a.json (not a JSON object): copy it again"),
    ("dir", "cannot read a.json of checkpoint c ("),
])
def test_read_json_says_what_is_wrong_and_what_to_do(tmp_path, content, words):
    path = tmp_path / "a.json"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ObjaudioError) as exc:
        read_json(path, "checkpoint c", FIX)
    assert str(exc.value).startswith(words) and str(exc.value).endswith(FIX), str(exc.value)
    assert "\n" not in str(exc.value)


def test_atomic_write_replaces_with_a_readable_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("old")
    write_json_atomic(path, {"a": 1}, fsync=True)
    assert json.loads(path.read_text()) == {"a": 1} and path.read_text() == json.dumps({"a": 1}, indent=2)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644) and os.listdir(tmp_path) == ["m.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "engine.plan"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(path) as tmp:
            tmp.write_bytes(b"half a")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["engine.plan"]
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError):                       # the rename itself fails: a folder stands there
        write_bytes_atomic(tmp_path / "folder", b"new")
    assert sorted(os.listdir(tmp_path)) == ["engine.plan", "folder"]


def test_platform_identity_is_a_dict_with_a_string_form():
    cpu = current_platform(torch.device("cpu"))
    assert cpu["device"] == "cpu" and platform_label(cpu) == f"cpu {cpu['machine']} {cpu['vec_isa']}"
    if torch.cuda.is_available():
        gpu = current_platform(torch.device("cuda"))
        assert platform_label(gpu).startswith(f"cuda sm_{gpu['compute_capability'].replace('.', '')} ")


# ---- one definition each -------------------------------------------------------------------------
HOMES = {"current_platform": "objaudio_rt/modelio/artifacts.py", "read_json": "objaudio_rt/modelio/artifacts.py",
         "replacing": "objaudio_rt/modelio/artifacts.py", "write_json_atomic": "objaudio_rt/modelio/artifacts.py",
         "write_bytes_atomic": "objaudio_rt/modelio/artifacts.py", "prepare_out_dir": "export/common.py",
         "add_model_args": "export/common.py", "MODEL_NETWORKS": "objaudio_rt/modelio/artifacts.py",
         "SAM_NETWORKS": "objaudio_rt/modelio/artifacts.py", "RUNTIME_NETWORKS": "objaudio_rt/modelio/artifacts.py",
         "ENGINE_NETWORKS": "objaudio_rt/modelio/artifacts.py", "DTYPE_NAMES": "objaudio_rt/core/options.py"}


def _definitions() -> dict[str, list[str]]:
    """name -> the files (relative to the repo) that define it as a function or a module-level name."""
    found: dict[str, list[str]] = {}
    for path in modules().values():
        tree = ast.parse(path.read_text())
        names = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        names += [t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                  for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)]
        for name in names:
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def test_each_artifact_helper_and_name_table_is_defined_once():
    found = _definitions()
    wrong = {name: found.get(name) for name, home in HOMES.items() if found.get(name) != [home]}
    assert not wrong, f"defined elsewhere or more than once (name: files): {wrong}"


def test_no_other_module_spells_out_a_network_table():
    """A tuple or list of network names, written out, belongs in artifacts.py."""
    found = []
    for path in modules().values():
        if path == ROOT / "objaudio_rt" / "modelio" / "artifacts.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List)):
                words = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if {"unet", "vae_decoder"} <= words:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


COMPILE_HELPERS = ("objaudio_rt.backends.aoti", "objaudio_rt.backends.unet_patch")   # built by export.aoti, loaded by fast


def test_exporters_import_no_backend():
    """export/ reads and writes artifacts through objaudio_rt.modelio.artifacts, never through a runtime backend
    (the backends' compile helpers excepted: export.aoti builds the packages backends/aoti.py loads)."""
    found = []
    for name, path in modules().items():
        if name.split(".")[0] != "export":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("objaudio_rt.backends")
                    and node.module not in COMPILE_HELPERS):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}")
    assert not found, found
