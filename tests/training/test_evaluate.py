"""Evaluation on a tiny random checkpoint: JSON keys, value ranges, saving and rescoring clips."""
import json

import numpy as np
import pytest

from objaudio_rt.config import ModelConfig
from objaudio_rt.selection import Mask
from objaudio_rt.model import Calibration, ObjaudioModel
from objaudio_rt.checkpoint import save_checkpoint
from training.classifier import SoundClassifier, save_classifier
from training.evaluate import main, mu_law_decode, mu_law_encode, scene_selections
from training.synthscenes import generate_scene, split_seeds

KEYS = ("object_accuracy", "leakage", "union_recall", "union_recall_mask", "silent_accuracy", "text_vs_mask_gap",
        "acc", "fad", "kl", "is", "scenes", "steps", "sampler")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    config = ModelConfig.from_name("tiny")
    config.clip_seconds = 2.56
    save_checkpoint(ObjaudioModel.random(config, 0), Calibration.uncalibrated(16), root / "ckpt")
    save_classifier(SoundClassifier(), root / "classifier.safetensors")
    return root


def test_evaluate_json_keys_and_ranges(files):
    out = files / "eval.json"
    args = ["--checkpoint", str(files / "ckpt"), "--scenes", "2", "--json", str(out), "--steps", "2",
            "--sampler", "dpmpp", "--classifier", str(files / "classifier.safetensors"),
            "--save-audio", str(files / "clips.npz")]
    assert main(args) == 0
    result = json.loads(out.read_text())
    for key in KEYS:
        assert key in result
    for key in ("object_accuracy", "leakage", "union_recall", "silent_accuracy", "text_vs_mask_gap", "acc"):
        assert result[key] is None or 0.0 <= result[key] <= 1.0
    assert result["fad"] >= 0 and result["kl"] >= 0 and 1.0 <= result["is"] <= 8.0
    assert result["scenes"] == 2 and result["steps"] == 2 and result["sampler"] == "dpmpp"
    expected = sum(len(scene_selections(generate_scene(s))[1]) for s in split_seeds("test", 2))
    assert result["selections"] == expected

    rescored = files / "rescored.json"
    assert main(["--checkpoint", "-", "--json", str(rescored), "--classifier", str(files / "classifier.safetensors"),
                 "--rescore", str(files / "clips.npz"), "--revocode", str(files / "ckpt")]) == 0
    again = json.loads(rescored.read_text())
    assert again["selections"] == expected
    assert again["object_accuracy"] == pytest.approx(result["object_accuracy"], abs=0.5)


def test_scene_selections_cover_objects_unions_silent_and_text():
    scene = next(generate_scene(s) for s in split_seeds("test", 50)
                 if sum(generate_scene(s).sounding) >= 2 and not all(generate_scene(s).sounding))
    sels, items = scene_selections(scene)
    kinds = [it.kind for it in items]
    n = sum(scene.sounding)
    assert kinds.count("object") == n and kinds.count("text") == n
    assert kinds.count("union") == 1 and kinds.count("silent") == 1 and kinds.count("whole") == 1
    composed, paper = sels[kinds.index("union")], sels[kinds.index("union_mask")]
    assert len(composed.parts()) == 2 and isinstance(paper, Mask)        # Mask(a) | Mask(b) vs Mask(a | b)
    np.testing.assert_array_equal(paper.mask, composed.parts()[0].mask | composed.parts()[1].mask)
    assert items[kinds.index("union")].targets == items[kinds.index("union_mask")].targets
    for it in items:
        if it.kind == "text":
            assert items[it.pair].kind == "object" and items[it.pair].targets == it.targets


def test_mu_law_round_trip():
    x = np.linspace(-1, 1, 1001, dtype=np.float32)
    assert np.abs(mu_law_decode(mu_law_encode(x)) - x).max() < 0.05      # 8 bits: coarse near full scale
    assert np.abs(mu_law_decode(mu_law_encode(np.zeros(4, np.float32)))).max() < 1e-3


def test_rescoring_clips_saved_before_composed_unions(files, tmp_path):
    """Layout 1 files (no "layout" in their meta) hold one union clip per scene: the union mask."""
    from training.evaluate import load_audio, save_audio

    clips = files / "clips.npz"
    if not clips.is_file():
        test_evaluate_json_keys_and_ranges(files)
    seeds, waves, meta = load_audio(clips)
    mels = np.load(clips)["mels"]
    bounds = np.cumsum([0] + [len(w) for w in waves])
    old_waves, old_mels = [], []
    for seed, w, a in zip(seeds, waves, bounds[:-1]):
        keep = [n for n, it in enumerate(scene_selections(generate_scene(seed))[1]) if it.kind != "union"]
        old_waves.append(w[keep])
        old_mels.append(mels[a:a + len(w)][keep])
    legacy = tmp_path / "legacy.npz"
    save_audio(legacy, seeds, old_waves, old_mels, {k: v for k, v in meta.items() if k != "layout"})
    out = tmp_path / "legacy.json"
    assert main(["--checkpoint", "-", "--json", str(out), "--classifier", str(files / "classifier.safetensors"),
                 "--rescore", str(legacy)]) == 0
    result = json.loads(out.read_text())
    assert result["union_recall"] is None and result["counts"]["union"] == 0
    assert result["counts"]["union_mask"] == sum(1 for s in seeds
                                                 if sum(generate_scene(s).sounding) >= 2)
