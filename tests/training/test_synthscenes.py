"""SynthScenes: determinism, splits, masks, stems, captions, class sounds, dataset and shards."""
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import torch
from PIL import Image

from objaudio_rt.core.audio import mel_spectrogram
from training.synthscenes import (ALL_CLASSES, CAPTION_KEYWORDS, CLASS_COLOURS, DISTRACTOR_CLASSES,
                                  SILENCE_CAPTION, SOUNDING_CLASSES, SynthScenesDataset, collate_scenes,
                                  generate_scene, read_shard, split_seeds, synth_sound, write_shard)

DEMO = Path(__file__).resolve().parents[2] / "objaudio_rt" / "assets" / "demo"


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(s) for s in split_seeds("train", 120)]


def test_same_seed_same_scene():
    a, b = generate_scene(1234), generate_scene(1234)
    for field in ("image", "masks", "stems", "mixture"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert (a.classes, a.sounding, a.caption, a.layout) == (b.classes, b.sounding, b.caption, b.layout)
    assert not np.array_equal(a.image, generate_scene(1235).image)


def test_splits_are_disjoint():
    train, val, test = (set(split_seeds(s, 1000, start=10_000_000 - 1000)) | set(split_seeds(s, 1000))
                        for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert split_seeds("val", 3) == [10_000_000, 10_000_001, 10_000_002]
    with pytest.raises(ValueError):
        split_seeds("holdout", 3)
    with pytest.raises(ValueError):
        split_seeds("train", 2, start=10_000_000 - 1)


def test_shapes_and_counts(scenes):
    n_sounding = []
    for s in scenes:
        n = len(s.classes)
        assert s.image.shape == (112, 112, 3) and s.image.dtype == np.uint8
        assert s.masks.shape == (n, 112, 112) and s.masks.dtype == bool
        assert len(s.sounding) == n and len(set(s.classes)) == n
        assert s.sounding == [c in SOUNDING_CLASSES for c in s.classes]
        assert s.stems.shape == (sum(s.sounding), 40960) and s.stems.dtype == np.float32
        assert s.mixture.shape == (40960,) and s.mixture.dtype == np.float32
        assert sum(c in DISTRACTOR_CLASSES for c in s.classes) <= 2
        n_sounding.append(sum(s.sounding))
    assert max(n_sounding) == 3 and min(n_sounding) == 0
    assert np.mean([1 <= k <= 3 for k in n_sounding]) > 0.85
    assert {c for s in scenes for c in s.classes} == set(ALL_CLASSES)


def test_masks_match_objects(scenes):
    for s in scenes:
        if len(s.classes) > 1:
            assert s.masks.sum(axis=0).max() <= 1, "visible masks must not overlap"
        for mask, cls in zip(s.masks, s.classes):
            ys, xs = np.nonzero(mask)
            assert len(ys) >= 40
            assert ys.max() - ys.min() <= 50 and xs.max() - xs.min() <= 50
            # The dominant colour under the mask is the class colour.
            colours = s.image[mask].astype(np.float32)
            distances = np.linalg.norm(colours - np.array(CLASS_COLOURS[cls], np.float32), axis=1)
            assert np.mean(distances < 60) > 0.4, (s.seed, cls)


def test_stems_sum_to_mixture(scenes):
    for s in scenes:
        assert np.abs(s.mixture).max() <= 0.9 + 1e-6
        if len(s.stems):
            np.testing.assert_allclose(s.stems.sum(axis=0), s.mixture, atol=1e-6)
            assert (np.sqrt((s.stems ** 2).mean(axis=1)) > 1e-3).all(), "every stem is audible"
        else:
            assert not s.mixture.any()


def test_captions_name_only_sounding_objects(scenes):
    for s in scenes:
        words = s.caption.replace(",", " ").split()
        heard = {c for c, on in zip(s.classes, s.sounding) if on}
        for cls in SOUNDING_CLASSES:
            named = any(k in words for k in CAPTION_KEYWORDS[cls])
            assert named == (cls in heard), (s.seed, s.caption, s.classes)
        assert not any(d in words for d in DISTRACTOR_CLASSES)
        assert (s.caption == SILENCE_CAPTION) == (not heard)
        assert ("then" in words or "followed" in words) == (s.layout == "sequence")


def test_sequence_layout_follows_caption_order(scenes):
    sequences = [s for s in scenes if s.layout == "sequence"]
    assert sequences
    for s in sequences:
        heard = [c for c, on in zip(s.classes, s.sounding) if on]
        energy = s.stems.reshape(len(heard), 64, -1).__pow__(2).mean(axis=2)          # (stems, 64 frames)
        centre = (energy * np.arange(64)).sum(axis=1) / energy.sum(axis=1)          # centre of energy in time
        position = [min(s.caption.find(k) for k in CAPTION_KEYWORDS[c] if k in s.caption) for c in heard]
        assert np.argsort(centre).tolist() == np.argsort(position).tolist(), (s.seed, s.caption)


def _spectral_centroid(wave):
    power = np.abs(scipy.fft.rfft(wave)) ** 2
    return (power * np.fft.rfftfreq(len(wave), 1 / 16000)).sum() / power.sum()


def test_class_sounds_are_distinct():
    """Spectral centroids separate the classes into bands; a nearest-mean rule on mel statistics
    tells all eight apart."""
    centroid = {c: np.median([_spectral_centroid(synth_sound(c, np.random.default_rng(s), 40960))
                              for s in range(8)]) for c in SOUNDING_CLASSES}
    assert centroid["car"] < 250 < centroid["crowd"] < 600 < centroid["dog"] < 950 < centroid["siren"] < 2000
    assert min(centroid["bird"], centroid["fire"]) > 3000

    def features(cls, seed):
        mel = mel_spectrogram(torch.from_numpy(synth_sound(cls, np.random.default_rng(seed), 40960)))[0]
        return torch.cat([mel.mean(dim=0), mel.std(dim=0)]).numpy()              # (128,)

    means = np.stack([np.mean([features(c, s) for s in range(6)], axis=0) for c in SOUNDING_CLASSES])
    correct = [np.argmin(np.linalg.norm(means - features(c, 1000 + s), axis=1)) == i
               for i, c in enumerate(SOUNDING_CLASSES) for s in range(5)]
    assert np.mean(correct) >= 0.9


def test_dataset_and_collate():
    data = SynthScenesDataset("val", 4)
    items = [data[i] for i in range(len(data))]
    scene = generate_scene(split_seeds("val", 1)[0])
    assert torch.equal(items[0]["mixture"], torch.from_numpy(scene.mixture))
    assert items[0]["image"].shape == (3, 112, 112) and items[0]["image"].max() <= 1
    assert [ALL_CLASSES[i] for i in items[0]["classes"]] == scene.classes
    batch = collate_scenes(items)
    assert batch["image"].shape == (4, 3, 112, 112) and batch["mixture"].shape == (4, 40960)
    assert len(batch["masks"]) == 4 and batch["caption"][0] == scene.caption


def test_shard_round_trip(tmp_path, scenes):
    path = write_shard(tmp_path / "s.npz", scenes[:6])
    for a, b in zip(scenes[:6], read_shard(path)):
        assert a.classes == b.classes and a.sounding == b.sounding and a.caption == b.caption
        assert a.seed == b.seed and a.layout == b.layout
        for field in ("image", "masks", "stems", "mixture"):
            assert np.array_equal(getattr(a, field), getattr(b, field))


def test_shard_cli(tmp_path):
    from training.synthscenes import main

    main(["--split", "test", "--n", "5", "--shard-size", "3", "--out", str(tmp_path)])
    shards = sorted(tmp_path.glob("*.npz"))
    assert [p.name for p in shards] == ["test-00000000.npz", "test-00000003.npz"]
    assert [s.seed for p in shards for s in read_shard(p)] == split_seeds("test", 5)


def test_generation_smoke():
    """Generates a batch of scenes at other sizes; no timing assertion (the machine is shared)."""
    for seed in range(20):
        s = generate_scene(seed, image_size=96, seconds=1.0)
        assert s.image.shape == (96, 96, 3) and s.mixture.shape == (16000,)


def test_bundled_demo_matches_its_seed():
    info = json.loads((DEMO / "scene.json").read_text())
    scene = generate_scene(info["seed"])
    assert info["seed"] in split_seeds("test", 100_000)
    assert info["classes"] == scene.classes and info["sounding"] == scene.sounding
    assert info["caption"] == scene.caption
    assert 2 <= sum(scene.sounding) <= 3 and len(scene.classes) - sum(scene.sounding) == 1
    assert np.array_equal(np.asarray(Image.open(DEMO / "scene.png").convert("RGB")), scene.image)
    for cls, mask in zip(scene.classes, scene.masks):
        png = np.asarray(Image.open(DEMO / f"mask_{cls}.png"))
        assert png.shape == (112, 112) and set(np.unique(png)) <= {0, 255}
        assert np.array_equal(png == 255, mask)
