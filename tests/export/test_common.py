"""export.common: every exporter names its weights in the runtime's words (config.ModelSource): a checkpoint
folder, an embedded model's name, or random:PRESET; any other form is one line on stderr and exit 2."""
import json

import pytest

from export import aoti as export_aoti
from export import engine as export_engine
from export import onnx as export_onnx
from objaudio_rt.modelio.artifacts import MANIFEST

EXPORTERS = [(export_onnx, "python -m export.onnx", ["--out", "{tmp}/out"]),
             (export_aoti, "python -m export.aoti", ["--device", "cpu", "--out", "{tmp}/out"]),
             (export_engine, "python -m export.engine", ["--out", "{tmp}/out"])]


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]


@pytest.mark.parametrize("module,prog,argv", EXPORTERS)
@pytest.mark.parametrize("checkpoint,words", [("random:nope", "no preset 'nope'"),
                                              ("tiny", "pass 'random:tiny'"),     # no embedded tiny model
                                              ("{tmp}/none", "checkpoint folder not found")])
def test_an_unknown_checkpoint_is_one_line_before_any_work(module, prog, argv, checkpoint, words, tmp_path, capsys):
    rc = module.main(["--checkpoint", checkpoint.format(tmp=tmp_path), *(a.format(tmp=tmp_path) for a in argv)])
    err = _errors(capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"{prog}: error: ") and words in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module", [export_onnx, export_aoti, export_engine])
def test_the_old_preset_flags_are_gone(module, capsys):
    with pytest.raises(SystemExit) as exc:
        module.main(["--preset", "tiny", "--random-init", "--out", "unused"])
    assert exc.value.code == 2 and "unrecognized arguments: --preset tiny --random-init" in capsys.readouterr().err


def test_onnx_exports_random_weights_named_by_checkpoint(tmp_path, capsys):
    rc = export_onnx.main(["--checkpoint", "random:tiny", "--seed", "2", "--out", str(tmp_path),
                           "--only", "grounding_condition", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    checkpoint = json.loads((tmp_path / MANIFEST).read_text())["checkpoint"]
    assert checkpoint["source"] == "random:tiny:seed2 (random weights)" and checkpoint["manifest_sha256"] is None


def test_aoti_and_engine_take_random_weights_named_by_checkpoint(tmp_path, monkeypatch, capsys):
    """The build itself (minutes of inductor) is tests/export/test_aoti.py's and tests/native's: here only
    which weights reach it."""
    seen = {}

    def package(model, device, dtype, frames, max_batch, folder, source):
        seen["aoti"] = model.config.name, source
        return {"path": "p", "platform": "cpu", "dtype": "fp32", "latent_shape": "8x4x16", "min_unet_batch": 2,
                "max_unet_batch": 2,
                "export_s": 0.0, "compile_s": 0.0, "load_s": 0.0, "check": {"rel_err_vs_module": 0.0}}

    def engine(model, calibration, out, device, source, **kwargs):
        seen["engine"] = model.config.name, source

    monkeypatch.setattr(export_aoti, "build_package", package)
    monkeypatch.setattr(export_engine, "build_engine", engine)
    assert export_aoti.main(["--checkpoint", "random:tiny", "--seed", "4", "--device", "cpu"]) == 0
    assert export_engine.main(["--checkpoint", "random:tiny", "--out", str(tmp_path / "engine")]) == 0
    assert seen == {"aoti": ("tiny", "random:tiny:seed4 (random weights)"),
                    "engine": ("tiny", "random:tiny:seed0 (random weights)")}, capsys.readouterr().err
