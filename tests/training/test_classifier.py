"""The committed SynthScenes sound classifier: accuracy on fresh test-split stems, silence, API."""
from pathlib import Path

import numpy as np
import pytest
import torch

from training.classifier import (ClassifierConfig, SoundClassifier, load_classifier, save_classifier,
                                 train_classifier)
from training.synthscenes import SOUNDING_CLASSES, generate_scene, split_seeds

WEIGHTS = Path(__file__).resolve().parents[2] / "training" / "assets" / "classifier.safetensors"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return load_classifier(WEIGHTS)


@pytest.fixture(scope="module")
def fresh_scenes():
    # Test-split seeds past the 200 that the committed metrics were measured on.
    return [generate_scene(s) for s in split_seeds("test", 30, start=5000)]


def test_committed_weights_are_small():
    assert WEIGHTS.stat().st_size < 2 * 1024 * 1024
    assert WEIGHTS.with_suffix(".json").is_file()


def test_classifies_fresh_stems(model, fresh_scenes):
    stems, labels = [], []
    for scene in fresh_scenes:
        heard = [c for c, on in zip(scene.classes, scene.sounding) if on]
        stems += list(scene.stems)
        labels += [SOUNDING_CLASSES.index(c) for c in heard]
    stems, labels = stems[:40], labels[:40]
    assert len(stems) == 40 and len(set(labels)) == len(SOUNDING_CLASSES)
    with torch.no_grad():
        predicted = model(torch.from_numpy(np.stack(stems))).argmax(dim=1)
    assert (predicted == torch.tensor(labels)).float().mean() >= 0.9


def test_names_the_sounds_of_mixtures(model, fresh_scenes):
    mixtures = torch.from_numpy(np.stack([s.mixture for s in fresh_scenes[:20]]))
    hits = [set(p) == {c for c, on in zip(s.classes, s.sounding) if on}
            for p, s in zip(model.predict(mixtures), fresh_scenes)]
    assert np.mean(hits) >= 0.7


def test_silence_is_no_class(model):
    rng = np.random.default_rng(0)
    quiet = [np.zeros(40960), 1e-4 * rng.standard_normal(40960), 1e-3 * rng.standard_normal(16000)]
    for wave in quiet:
        assert model.predict(torch.from_numpy(wave).float()) == [[]]


def test_any_length_and_embedding(model):
    for n in (8000, 70000):
        wave = torch.randn(3, n) * 0.1
        assert model(wave).shape == (3, len(SOUNDING_CLASSES))
        assert model.embed(wave).shape == (3, model.cfg.embed_dim)


def test_save_load_round_trip(tmp_path):
    model = SoundClassifier(ClassifierConfig(channels=(4, 8, 8, 8), embed_dim=16)).eval()
    path = save_classifier(model, tmp_path / "c.safetensors", {"note": "test"})
    loaded = load_classifier(path)
    wave = torch.randn(2, 12000)
    assert loaded.cfg == model.cfg
    torch.testing.assert_close(loaded(wave), model(wave))


def test_training_smoke(tmp_path):
    model, info = train_classifier(steps=2, seed=0, out_path=tmp_path / "c.safetensors", batch_size=8,
                                   per_class=2, eval_scenes=3, log_every=1)
    assert (tmp_path / "c.json").is_file() and info["steps"] == 2
    assert 0 <= info["test_metrics"]["stem_top1"] <= 1
