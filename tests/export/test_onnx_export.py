"""export.onnx: every tiny network exports and matches PyTorch; caching; clear errors, nothing half-written."""
import json
import shutil

import pytest

from export import onnx as export_onnx
from export.onnx import MODEL_NETWORKS, SAM_NETWORKS, export_networks, verify_networks
from objaudio_rt.modelio.artifacts import MANIFEST, model_fingerprint
from objaudio_rt.modelio.checkpoint import save_checkpoint
from objaudio_rt.core.config import ModelConfig
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.modelio.model import Calibration, ObjaudioModel


def _listing(folder):
    return sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())


def test_every_network_matches_pytorch(tiny_export, tiny_model, tiny_sam):
    report = verify_networks(tiny_export, tiny_model, MODEL_NETWORKS + SAM_NETWORKS, tiny_sam, seed=1,
                             progress=False)
    assert json.loads((tiny_export / "report.json").read_text()) == report
    for name, r in report["networks"].items():
        assert r["passed"], f"{name}: error {r['err_vs_float64']:.3g} > tolerance {r['tolerance']:.3g}"
        assert r["opset"] == 17 and r["file_size_bytes"] > 0 and r["export_seconds"] > 0
        assert set(r["shapes"]) == {"inputs", "outputs"}
    assert report["networks"]["vae_decoder"]["shapes"]["outputs"]["mel"][-1] == 64   # (B, T, n_mels): squeezed


def test_second_export_is_reused(tiny_export, tiny_model, tiny_sam):
    before = _listing(tiny_export)
    manifest = export_networks(tiny_model, tiny_export, MODEL_NETWORKS + SAM_NETWORKS, sam=tiny_sam,
                               sam_source="random:tiny", progress=False)
    assert [n for n in _listing(tiny_export) if n[0] != MANIFEST] == [n for n in before if n[0] != MANIFEST]
    assert manifest["checkpoint"]["fingerprint"] == model_fingerprint(tiny_model)


def test_changed_file_or_contract_version_is_reexported(tmp_path, tiny_export, tiny_model):
    out = tmp_path / "onnx"
    shutil.copytree(tiny_export, out)
    (out / "grounding_attention.onnx").write_bytes(b"truncated")
    manifest = export_networks(tiny_model, out, ("grounding_attention", "grounding_condition"), progress=False)
    assert (out / "grounding_attention.onnx").stat().st_size == manifest["networks"]["grounding_attention"][
        "file_size_bytes"] > 100
    raw = json.loads((out / MANIFEST).read_text())
    raw["contract_version"] = 0
    (out / MANIFEST).write_text(json.dumps(raw))
    manifest = export_networks(tiny_model, out, ("grounding_condition",), progress=False)
    assert list(manifest["networks"]) == ["grounding_condition"]          # stale graphs were all dropped
    assert not (out / "unet.onnx").exists()


def test_other_weights_are_refused_then_replaced_with_force(tmp_path, tiny_export):
    out = tmp_path / "onnx"
    shutil.copytree(tiny_export, out)
    before = _listing(out)
    other = ObjaudioModel.random(ModelConfig.from_name("tiny"), seed=1)
    with pytest.raises(ObjaudioError, match="exported from other weights"):
        export_networks(other, out, ("grounding_attention",), progress=False)
    assert _listing(out) == before
    manifest = export_networks(other, out, ("grounding_attention",), force=True, progress=False)
    assert manifest["checkpoint"]["fingerprint"] == model_fingerprint(other)
    assert sorted(p.name for p in out.iterdir()) == ["export_manifest.json", "grounding_attention.onnx"]


def _cli(capsys, *argv):
    rc = export_onnx.main(list(argv) + ["--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, [line for line in err if not line.startswith(("  ", "/"))]   # drop library warnings


def test_cli_missing_checkpoint_file(tmp_path, capsys, tiny_model):
    ckpt = save_checkpoint(tiny_model, Calibration.uncalibrated(16), tmp_path / "ckpt")
    (ckpt / "unet.safetensors").unlink()
    rc, err = _cli(capsys, "--checkpoint", str(ckpt), "--out", str(tmp_path / "out"))
    assert rc == 2 and len(err) == 1 and "missing unet.safetensors" in err[0]
    assert not (tmp_path / "out").exists()


def test_cli_unwritable_out(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    rc, err = _cli(capsys, "--checkpoint", "random:tiny", "--out", str(tmp_path / "file.txt" / "sub"),
                   "--only", "grounding_attention")
    assert rc == 2 and len(err) == 1 and "cannot create output folder" in err[0]


def test_cli_refuses_dir_of_another_checkpoint(tmp_path, capsys, tiny_export):
    out = tmp_path / "onnx"
    shutil.copytree(tiny_export, out)
    before = _listing(out)
    rc, err = _cli(capsys, "--checkpoint", "random:tiny", "--seed", "3", "--out", str(out),
                   "--only", "grounding_attention")
    assert rc == 2 and len(err) == 1 and "other weights" in err[0] and "--force" in err[0]
    assert _listing(out) == before


def test_cli_default_checkpoint_exports_and_verifies(tmp_path, capsys):
    """No --checkpoint: the embedded default model (the tiny preset until it is trained)."""
    rc = export_onnx.main(["--out", str(tmp_path), "--only", "grounding_attention,grounding_condition",
                           "--verify", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "report.json").read_text())
    assert all(r["passed"] for r in report["networks"].values())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary leftovers


def test_fp16_export_within_twice_pytorch_fp16_error(tmp_path, tiny_model):
    networks = ("vae_decoder", "text_encoder")
    export_networks(tiny_model, tmp_path, networks, fp16=True, progress=False)
    report = verify_networks(tmp_path, tiny_model, networks, seed=2, progress=False)
    for name, r in report["networks"].items():
        assert r["precision"] == "fp16" and r["passed"], (name, r)


def test_unknown_network_and_missing_sam(tmp_path, tiny_model):
    with pytest.raises(ObjaudioError, match="unknown network"):
        export_networks(tiny_model, tmp_path, ("unet", "vea"), progress=False)
    with pytest.raises(ObjaudioError, match="Segment Anything"):
        export_networks(tiny_model, tmp_path, ("sam_mask_decoder",), progress=False)
    assert list(tmp_path.iterdir()) == []
