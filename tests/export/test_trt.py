"""TensorRT: sidecar staleness checks and profiles (pure Python); engine tests need tensorrt and a GPU."""
import json

import pytest
import torch

from export.contracts import model_contracts, profile_shapes
from export.trt import build_engines
from objaudio_rt.modelio.artifacts import CONTRACT_VERSION, check_engine_sidecar, engine_sidecar
from objaudio_rt.core.errors import ObjaudioError

PLATFORM = {"tensorrt_version": "10.8.0", "compute_capability": "9.0", "checkpoint": "a" * 64,
            "contract_version": CONTRACT_VERSION}


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "unet.plan"
    path.write_bytes(b"engine")
    sidecar = engine_sidecar("unet", "a" * 64, "10.8.0", "9.0", True, {"sample": [(2, 8, 1, 16)] * 3}, "H100")
    (tmp_path / "unet.plan.json").write_text(json.dumps(sidecar))
    return path


def test_matching_sidecar_loads(engine):
    assert check_engine_sidecar(engine, PLATFORM)["network"] == "unet"


@pytest.mark.parametrize("key, value, words", [
    ("compute_capability", "8.0", "GPU compute capability 9.0 (now 8.0)"),
    ("tensorrt_version", "10.9.1", "TensorRT version 10.8.0 (now 10.9.1)"),
    ("checkpoint", "b" * 64, "checkpoint weights aaaa"),
    ("contract_version", CONTRACT_VERSION + 1, "export contract version"),
])
def test_stale_sidecar_names_what_differs(engine, key, value, words):
    with pytest.raises(ObjaudioError, match="stale") as exc:
        check_engine_sidecar(engine, dict(PLATFORM, **{key: value}))
    assert words in str(exc.value) and "python -m export.trt" in str(exc.value)


def test_two_differences_are_both_named(engine):
    with pytest.raises(ObjaudioError) as exc:
        check_engine_sidecar(engine, dict(PLATFORM, compute_capability="8.9", tensorrt_version="10.0.0"))
    assert "compute capability" in str(exc.value) and "TensorRT version" in str(exc.value)


def test_missing_or_corrupt_sidecar(engine):
    sidecar = engine.with_name("unet.plan.json")
    sidecar.write_text("{not json")
    with pytest.raises(ObjaudioError, match="corrupt"):
        check_engine_sidecar(engine, PLATFORM)
    sidecar.unlink()
    with pytest.raises(ObjaudioError, match="no sidecar"):
        check_engine_sidecar(engine, PLATFORM)
    with pytest.raises(ObjaudioError, match="not found"):
        check_engine_sidecar(engine.with_name("vae_decoder.plan"), PLATFORM)


def test_profiles_from_the_manifest_match_the_contract(tiny_model, tiny_export):
    manifest = json.loads((tiny_export / "export_manifest.json").read_text())
    for name, contract in model_contracts(tiny_model).items():
        assert profile_shapes(manifest["networks"][name]["contract"]) == contract.profile()
    lo, opt, hi = model_contracts(tiny_model)["unet"].profile()["sample"]
    assert (lo[0], opt[0], hi[0]) == (2, 2, 8)          # CFG doubles the batch of 1..4 selections


def test_build_without_tensorrt_is_a_clear_error(tiny_export, tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed; this checks the message when it is not")
    except ImportError:
        pass
    with pytest.raises(ObjaudioError, match="TensorRT is not installed"):
        build_engines(tiny_export, tmp_path / "engines")
    assert not (tmp_path / "engines").exists()


def test_tensorrt_engine_build_and_backend(tiny_export, tiny_model, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT cannot be installed on this project's machines")
    if not torch.cuda.is_available():
        pytest.skip("the TensorRT backend needs a CUDA GPU")
    from objaudio_rt.backends.onnxruntime import OnnxRuntimeBackend
    from objaudio_rt.backends.tensorrt import TensorRTBackend

    build_engines(tiny_export, tmp_path)
    trt_backend = TensorRTBackend(tiny_model, torch.device("cuda"), engine_dir=tmp_path)
    ort_backend = OnnxRuntimeBackend(tiny_model, torch.device("cpu"), onnx_dir=tiny_export)
    z = torch.randn(1, 8, 32, 16)
    assert torch.allclose(trt_backend.decode(z.cuda()).cpu(), ort_backend.decode(z), atol=1e-3)
