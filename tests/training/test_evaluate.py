"""Evaluation on a tiny random checkpoint: JSON keys, value ranges, saving and rescoring clips."""
import json

import numpy as np
import pytest

from objaudio_rt.core.config import ModelConfig
from objaudio_rt.core.selection import Mask
from objaudio_rt.modelio.model import Calibration, ObjaudioModel
from objaudio_rt.modelio.checkpoint import save_checkpoint
from training.classifier import SoundClassifier, save_classifier
from objaudio_rt.core.errors import ObjaudioError
from training.evaluate import Item, Results, badness, breakdown, main, mu_law_decode, mu_law_encode, scene_selections
from training.synthscenes import SOUNDING_CLASSES, generate_scene, split_seeds

KEYS = ("object_accuracy", "leakage", "union_recall", "union_recall_mask", "whole_recall", "silent_accuracy",
        "text_vs_mask_gap",
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


def test_revocoding_leaves_the_gates_silences_silent(files, tmp_path):
    """A clip whose log-mel is digital silence (the silence gate's: the pipeline runs no vocoder for it)
    keeps its saved waveform under --revocode; every other clip is the new vocoder's."""
    import math

    import torch

    from objaudio_rt.core.audio import MEL_FLOOR
    from objaudio_rt.modelio.checkpoint import load_checkpoint
    from training.evaluate import load_audio, save_audio

    n = 2560
    gen = np.random.default_rng(0)
    mels = np.stack([np.full((16, 64), math.log(MEL_FLOOR)), gen.normal(-4, 1, (16, 64))]).astype(np.float32)
    waves = np.stack([np.zeros(n), 0.1 * gen.standard_normal(n)]).astype(np.float32)
    path = tmp_path / "two.npz"
    save_audio(path, [7], [waves], [mels], {"layout": 2})
    config = ModelConfig.from_name("tiny")
    model = ObjaudioModel.random(config, 1)
    with torch.no_grad():
        model.vocoder.conv_post.bias.fill_(0.3)                # a vocoder that hums under any log-mel
    save_checkpoint(model, Calibration.uncalibrated(16), tmp_path / "hum")
    vocoder = load_checkpoint(tmp_path / "hum")[0].vocoder
    with torch.no_grad():
        vocoded = vocoder(torch.from_numpy(mels.astype(np.float16).astype(np.float32)))[:, :n].numpy()
    assert np.abs(vocoded[0]).max() > 0.1                      # it sounds the silent log-mel
    _, (got,), meta = load_audio(path, revocode=str(tmp_path / "hum"))
    assert np.abs(got[0]).max() < 1e-3                         # the gate's silence stays silence
    np.testing.assert_allclose(got[1], vocoded[1], rtol=1e-5, atol=1e-6)
    assert meta["revocoded_with"] == str(tmp_path / "hum")


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
    save_audio(legacy, seeds, old_waves, old_mels, {k: v for k, v in meta.items() if k not in ("layout", "union_mode")})
    out = tmp_path / "legacy.json"
    assert main(["--checkpoint", "-", "--json", str(out), "--classifier", str(files / "classifier.safetensors"),
                 "--rescore", str(legacy)]) == 0
    result = json.loads(out.read_text())
    assert result["union_recall"] is None and result["counts"]["union"] == 0
    assert result["counts"]["union_mask"] == sum(1 for s in seeds
                                                 if sum(generate_scene(s).sounding) >= 2)


def test_union_modes_keep_one_kind_of_union_each():
    scene = next(generate_scene(s) for s in split_seeds("test", 50) if sum(generate_scene(s).sounding) >= 2)
    kinds = {m: [it.kind for it in scene_selections(scene, m)[1]] for m in ("compose", "mask", "both")}
    assert kinds["compose"].count("union") == 1 and "union_mask" not in kinds["compose"]
    assert kinds["mask"].count("union_mask") == 1 and "union" not in kinds["mask"]
    assert sorted(kinds["both"]) == sorted(kinds["compose"] + ["union_mask"])
    with pytest.raises(ObjaudioError, match="union mode"):
        scene_selections(scene, "sum")


def _fake_results(rows):
    """Results from (kind, targets, others, layout, silent_class, probs dict) rows."""
    res = Results()
    for kind, targets, others, layout, silent_class, p in rows:
        probs = np.zeros(len(SOUNDING_CLASSES), np.float32)
        for c, v in p.items():
            probs[SOUNDING_CLASSES.index(c)] = v
        res.items.append(Item(kind, targets, others, None, layout=layout, silent_class=silent_class,
                              sounding=len(targets) + len(others)))
        res.probs.append(probs)
    return res


def test_breakdown_per_class_and_layout_and_badness_ranks_the_misses():
    a, b = SOUNDING_CLASSES[:2]
    res = _fake_results([
        ("object", [a], [b], "overlap", None, {a: 0.9}),                 # right, no leakage
        ("object", [b], [a], "sequence", None, {a: 0.8, b: 0.6}),        # wrong and leaks a
        ("silent", [], [a, b], "overlap", "rock", {b: 0.7}),             # makes a sound
        ("union", [a, b], [], "sequence", None, {a: 0.9, b: 0.9}),       # both heard
    ])
    parts = breakdown(res)
    assert parts["by_class"][a]["object_accuracy"] == 1.0 and parts["by_class"][b]["object_accuracy"] == 0.0
    assert parts["by_class"][b]["leakage"] == 1.0 and parts["by_class"][a]["union_recall"] == 1.0
    assert parts["by_class"]["rock"]["silent_accuracy"] == 0.0 and parts["by_class"]["rock"]["counts"]["silent"] == 1
    assert parts["by_layout"]["overlap"]["object_accuracy"] == 1.0
    assert parts["by_layout"]["sequence"]["counts"] == {"object": 1, "union": 1, "union_mask": 0, "silent": 0}
    leaks = parts["leaked_into"]
    assert leaks[a] == {"selections": 1, "absent": {}} and leaks[b] == {"selections": 1, "absent": {}, a: 1}
    assert leaks["rates"] == {"other": 0.5, "absent": 0.0}
    c = SOUNDING_CLASSES[2]                                              # absent from the scene, heard
    res.probs[0][SOUNDING_CLASSES.index(c)] = 0.9
    leaks = breakdown(res)["leaked_into"]
    assert leaks[a]["absent"] == {c: 1} and leaks["rates"]["absent"] == pytest.approx(1 / 12)
    scores = [badness(it, p) for it, p in zip(res.items, res.probs)]
    assert scores[1] == pytest.approx(1 - 0.6 + 0.8) and scores[2] == pytest.approx(0.7)
    assert max(scores) == scores[1] and min(scores) == scores[0] == pytest.approx(0.1)


def test_worst_selections_are_written_as_wav_and_png(files, tmp_path):
    import soundfile as sf

    clips = files / "clips.npz"
    if not clips.is_file():
        test_evaluate_json_keys_and_ranges(files)
    out = tmp_path / "compose.json"
    assert main(["--checkpoint", "-", "--json", str(out), "--classifier", str(files / "classifier.safetensors"),
                 "--rescore", str(clips), "--union-mode", "compose", "--worst", "3"]) == 0
    result = json.loads(out.read_text())
    assert result["union_mode"] == "compose" and result["counts"]["union_mask"] == 0
    assert result["counts"]["union"] > 0 and "by_class" in result and "by_layout" in result
    index = json.loads((tmp_path / "compose-worst" / "worst.json").read_text())
    assert len(index) == 3 and [r["rank"] for r in index] == [1, 2, 3]
    assert index[0]["badness"] >= index[1]["badness"] >= index[2]["badness"]
    for row in index:
        wave, sr = sf.read(tmp_path / "compose-worst" / f"{row['file']}.wav")
        assert sr == 16000 and wave.shape == (int(2.56 * 16000),)
        assert (tmp_path / "compose-worst" / f"{row['file']}.png").stat().st_size > 1000
    assert main(["--checkpoint", "-", "--json", str(tmp_path / "x.json"), "--classifier",
                 str(files / "classifier.safetensors"), "--rescore", str(tmp_path / "missing.npz")]) != 0
    first = tmp_path / "first.json"
    assert main(["--checkpoint", "-", "--json", str(first), "--classifier", str(files / "classifier.safetensors"),
                 "--rescore", str(clips), "--first", "1"]) == 0
    assert json.loads(first.read_text())["scenes"] == 1


def test_an_interrupted_evaluation_continues_from_its_saved_clips(files, tmp_path):
    from training.evaluate import load_audio, load_mels, save_audio

    clips = files / "clips.npz"
    if not clips.is_file():
        test_evaluate_json_keys_and_ranges(files)
    seeds, waves, meta = load_audio(clips)
    partial = tmp_path / "partial.npz"
    save_audio(partial, seeds[:1], waves[:1], load_mels(clips)[:1], meta)       # as if stopped after scene 1
    args = ["--checkpoint", str(files / "ckpt"), "--scenes", "2", "--steps", "2", "--sampler", "dpmpp",
            "--classifier", str(files / "classifier.safetensors"), "--save-audio", str(partial)]
    assert main(args + ["--json", str(tmp_path / "r.json")]) == 0
    again, again_waves, _ = load_audio(partial)
    assert again == seeds and np.array_equal(again_waves[0], waves[0])            # scene 1 kept, not regenerated
    assert json.loads((tmp_path / "r.json").read_text())["selections"] == sum(len(w) for w in waves)
    assert main(args + ["--json", str(tmp_path / "x.json"), "--cfg", "3"]) == 2             # other settings


def test_kinds_keeps_only_the_named_selections_and_re_pairs_text():
    scene = next(generate_scene(s) for s in split_seeds("test", 50)
                 if sum(generate_scene(s).sounding) >= 2 and not all(generate_scene(s).sounding))
    sels, items = scene_selections(scene, "compose", ("object", "silent", "union"))
    assert {it.kind for it in items} == {"object", "silent", "union"} and len(sels) == len(items)
    sels, items = scene_selections(scene, "both", ("object", "text"))
    for it in items:
        if it.kind == "text":
            assert items[it.pair].kind == "object" and items[it.pair].targets == it.targets
    _, items = scene_selections(scene, "both", ("text",))
    assert all(it.pair == -1 for it in items)
    with pytest.raises(ObjaudioError, match="unknown selection kinds"):
        scene_selections(scene, "both", ("objects",))


def test_union_runtime_mix_generates_unions_part_by_part(files, tmp_path, capsys):
    common = ["--checkpoint", str(files / "ckpt"), "--ranges", "4:1", "--steps", "2", "--sampler", "ddim",
              "--classifier", str(files / "classifier.safetensors"), "--kinds", "union,object"]
    out = {}
    for rule in ("compose", "mix"):
        out[rule] = tmp_path / f"{rule}.json"
        assert main([*common, "--union-runtime", rule, "--json", str(out[rule]),
                     "--save-audio", str(tmp_path / f"{rule}.npz")]) == 0
    mix, compose = (json.loads(out[r].read_text()) for r in ("mix", "compose"))
    assert mix["union_runtime"] == "mix" and compose["union_runtime"] == "compose"
    assert mix["counts"]["union"] == compose["counts"]["union"] > 0
    from training.evaluate import load_audio
    (w_mix,), (w_comp,) = load_audio(tmp_path / "mix.npz")[1], load_audio(tmp_path / "compose.npz")[1]
    kinds = [it.kind for it in scene_selections(generate_scene(split_seeds("test", 1, start=4)[0]), "both",
                                                ("union", "object"))[1]]
    unions = [n for n, k in enumerate(kinds) if k == "union"]
    objects = [n for n, k in enumerate(kinds) if k == "object"]
    assert not np.array_equal(w_mix[unions], w_comp[unions])                   # the unions differ ...
    np.testing.assert_allclose(w_mix[objects], w_comp[objects], atol=2 / 255)  # ... single objects do not
    assert main([*common, "--union-runtime", "mix", "--negative", "1", "--json", str(tmp_path / "x.json")]) != 0
    assert "leave out --union-runtime mix" in capsys.readouterr().err
