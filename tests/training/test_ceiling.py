"""training.ceiling: the real audio scores perfectly, and each re-synthesis path runs through the
checkpoint's own vocoder and VAE (a vocoder that says nothing makes every path but the real one silent)."""
import json
from pathlib import Path

import pytest
import torch

from objaudio_rt.modelio.checkpoint import load_checkpoint
from training import ceiling as ceiling_mod
from training.ceiling import PATHS, ceiling, main
from training.evaluate import test_seeds as seeds_of

ROOT = Path(__file__).resolve().parents[2]
ASSET = ROOT / "objaudio_rt" / "assets" / "tiny-synth"
RANGES = "14000:3"


def test_real_audio_is_perfect_and_the_embedded_decoder_is_scored_on_the_same_selections(tmp_path, capsys):
    assert main(["--checkpoint", str(ASSET), "--ranges", RANGES, "--json", str(tmp_path / "c.json"),
                 "--threads", "2"]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    real = result["real"]
    assert real["object_accuracy"] == 1.0 and real["leakage"] == 0.0 and real["silent_accuracy"] == 1.0
    assert real["union_recall"] == 1.0 and real["fad"] == pytest.approx(0.0, abs=1e-3)
    for path in PATHS:                                        # the same selections on every path
        assert result[path]["counts"] == real["counts"] and real["counts"]["object"] >= 2
    assert result["vocoder"]["object_accuracy"] > 0.5          # the embedded vocoder is a trained one
    assert "vae+vocoder" in capsys.readouterr().out


def test_every_path_but_the_real_one_goes_through_the_checkpoint_vocoder(monkeypatch):
    model, cal = load_checkpoint(ASSET)
    model.vocoder.forward = lambda mel: torch.zeros(mel.shape[0], mel.shape[1] * 160)   # says nothing
    monkeypatch.setattr(ceiling_mod, "load_checkpoint", lambda _: (model, cal))
    result = ceiling(ASSET, seeds_of(RANGES))
    assert result["real"]["object_accuracy"] == 1.0
    for path in ("vocoder", "vae+vocoder"):
        assert result[path]["object_accuracy"] == 0.0 and result[path]["silent_accuracy"] == 1.0
