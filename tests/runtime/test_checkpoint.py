"""Our checkpoint format: round trip, integrity checks, atomic writes, `objaudio info`."""
import json
import shutil

import pytest
import torch

from objaudio_rt import ObjaudioError, Pipeline
from objaudio_rt.modelio.checkpoint import describe, load_checkpoint, save_checkpoint
from objaudio_rt.modelio.model import COMPONENTS


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_pipe):
    return tiny_pipe.save_pretrained(tmp_path_factory.mktemp("ck") / "tiny")


def test_round_trip_is_exact(saved, tiny_pipe):
    model, calibration = load_checkpoint(saved)
    assert calibration == tiny_pipe.calibration
    ref = dict(tiny_pipe.model.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p, ref[name]), name
    assert model.text_encoder.tokenizer("a dog")["input_ids"] == tiny_pipe.model.text_encoder.tokenizer("a dog")["input_ids"]


def test_layout(saved):
    names = {p.name for p in saved.iterdir()}
    assert {"config.json", "manifest.json", "tokenizer"} | {f"{c}.safetensors" for c in COMPONENTS} <= names
    manifest = json.loads((saved / "manifest.json").read_text())
    assert "unet.safetensors" in manifest["files"] and len(manifest["files"]["unet.safetensors"]) == 64


def test_describe(saved):
    info = describe(saved)
    assert info["preset"] == "tiny"
    assert info["total_parameters"] == sum(info["parameters"].values()) > 0
    assert set(info["calibration"]) == {"attn_mean", "attn_std", "num_samples"}


def _copy(saved, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(saved, dst)
    return dst


def test_missing_file(saved, tmp_path):
    ck = _copy(saved, tmp_path)
    (ck / "vae.safetensors").unlink()
    with pytest.raises(ObjaudioError, match="missing vae.safetensors"):
        Pipeline.from_pretrained(ck)


def test_truncated_file_is_a_checksum_mismatch(saved, tmp_path):
    ck = _copy(saved, tmp_path)
    data = (ck / "unet.safetensors").read_bytes()
    (ck / "unet.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ObjaudioError, match="checksum mismatch"):
        Pipeline.from_pretrained(ck)


def test_changed_byte_is_a_checksum_mismatch(saved, tmp_path):
    ck = _copy(saved, tmp_path)
    data = bytearray((ck / "grounding.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (ck / "grounding.safetensors").write_bytes(bytes(data))
    with pytest.raises(ObjaudioError, match="checksum mismatch.*grounding"):
        Pipeline.from_pretrained(ck)


def test_truncated_with_matching_manifest_is_caught_on_read(saved, tmp_path):
    """Someone re-hashed a broken file: safetensors itself must refuse it."""
    from objaudio_rt.modelio.checkpoint import sha256_file

    ck = _copy(saved, tmp_path)
    data = (ck / "vocoder.safetensors").read_bytes()
    (ck / "vocoder.safetensors").write_bytes(data[:100])
    manifest = json.loads((ck / "manifest.json").read_text())
    manifest["files"]["vocoder.safetensors"] = sha256_file(ck / "vocoder.safetensors")
    (ck / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ObjaudioError, match="truncated or corrupt"):
        Pipeline.from_pretrained(ck)


def test_corrupt_config(saved, tmp_path):
    ck = _copy(saved, tmp_path)
    (ck / "config.json").write_text("{not json")
    with pytest.raises(ObjaudioError, match="corrupt config.json"):
        Pipeline.from_pretrained(ck)


def test_missing_folder():
    with pytest.raises(ObjaudioError, match="not found"):
        Pipeline.from_pretrained("/no/such/checkpoint")


def test_save_refuses_to_overwrite_and_leaves_nothing_behind(saved, tiny_pipe, tmp_path):
    with pytest.raises(ObjaudioError, match="already exists"):
        tiny_pipe.save_pretrained(saved)
    target = tmp_path / "out"

    class Boom(RuntimeError):
        pass

    def exploding_save(*args, **kwargs):
        raise Boom("disk full")

    import objaudio_rt.modelio.checkpoint as ck

    original = ck.save_file
    ck.save_file = exploding_save
    try:
        with pytest.raises(Boom):
            save_checkpoint(tiny_pipe.model, tiny_pipe.calibration, target)
    finally:
        ck.save_file = original
    assert list(tmp_path.iterdir()) == []


def test_embedded_default_model_loads_and_generates():
    """The shipped checkpoint passes its own sha256 manifest and makes a finite clip."""
    from objaudio_rt.core.config import default_checkpoint

    path = default_checkpoint()
    if path.startswith("random:"):
        pytest.skip("no embedded checkpoint in this checkout")
    info = describe(path)
    assert info["preset"] == "tiny-synth" and info["calibration"]["num_samples"] > 0
    pipe = Pipeline.from_pretrained()
    from objaudio_rt.core.config import ModelSource

    assert pipe.source == str(ModelSource.parse(None).folder)          # its few-step path where it carries one
    assert Pipeline.from_pretrained(path="full").source == path
    from objaudio_rt.frontends.cli import DEMO

    wave = pipe.generate(pipe.encode_image(DEMO / "scene.png"), None, steps=2, duration=0.5, progress=False)
    assert wave.shape == (8000,) and torch.isfinite(wave).all() and wave.abs().max() > 0
