"""training/silence_gate.py: the gate's examples, its fit, the threshold rule, and the command that writes
a gated checkpoint (on the `tiny` preset with random weights)."""
import json

import numpy as np
import pytest
import torch

from objaudio_rt import Pipeline
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.modelio.checkpoint import load_checkpoint
from training.silence_gate import KINDS, choose_threshold, fit_gate, gate_examples, main, probabilities
from training.synthscenes import generate_scene, split_seeds


def test_the_fit_separates_a_separable_set_on_raw_features():
    """The standardisation is folded into the first layer: the gate reads raw conditions (here far from
    zero mean and unit scale) as the fit saw standardised ones."""
    gen = np.random.default_rng(0)
    x = (gen.normal(size=(3000, 8)) * 5 + 40).astype(np.float32)
    y = x[:, 2] + 0.5 * x[:, 5] > 60
    gate = fit_gate(x, y, hidden_dim=16, epochs=40, progress=False)
    xt = (gen.normal(size=(1000, 8)) * 5 + 40).astype(np.float32)
    yt = xt[:, 2] + 0.5 * xt[:, 5] > 60
    assert ((probabilities(gate, xt) >= 0.5) == yt).mean() > 0.95
    with pytest.raises(ObjaudioError, match="silent and sounding"):
        fit_gate(x, np.zeros(len(x), bool), progress=False)


def test_the_threshold_is_the_lowest_that_keeps_false_silence_under_the_limit():
    p = np.array([0.99, 0.98, 0.9, 0.8, 0.7, 0.6, 0.2, 0.1, 0.95, 0.97])
    y = np.array([False] * 8 + [True, True])            # sounding: 0.99 0.98 0.9 0.8 0.7 0.6 0.2 0.1
    t = choose_threshold(p, y, 0.25)                     # two of eight may be called silent
    assert 0.9 < t <= 0.98 and ((p >= t) & ~y).sum() == 2
    assert choose_threshold(p, y, 0.0) > 0.99 - 1e-9 and choose_threshold(p, y, 0.0) <= 0.999
    assert choose_threshold(np.array([0.1, 0.9]), np.array([False, True]), 0.01) == 0.5


def test_examples_are_labelled_from_the_scene():
    pipe = Pipeline.from_pretrained("random:tiny", seed=0)
    seeds = split_seeds("train", 3)
    x, y, k = gate_examples(pipe, seeds, progress=False)
    assert x.shape == (len(y), pipe.config.unet.cond_dim) and np.isfinite(x).all()
    want = []
    for seed in seeds:
        scene = generate_scene(seed, seconds=pipe.config.clip_seconds)
        want += [not s for s in scene.sounding]
        if len(scene.classes) >= 2:
            want.append(None)                            # a random pair: silent iff both are
        want.append(not any(scene.sounding))
        want += [False] * sum(scene.sounding)
    assert len(want) == len(y)
    for w, got, kind in zip(want, y, k):
        if w is not None:
            assert got == w, KINDS[kind]
    assert set(y[k == KINDS.index("silent")]) <= {True} and not y[k == KINDS.index("text")].any()


def test_the_command_writes_a_gated_checkpoint_and_refits_one(tmp_path, capsys):
    Pipeline.from_pretrained("random:tiny", seed=0).save_pretrained(tmp_path / "plain")
    assert main(["--checkpoint", str(tmp_path / "plain"), "--out", str(tmp_path / "gated"), "--scenes", "6",
                 "--val", "4", "--epochs", "3", "--threads", "1"]) == 0
    model, _ = load_checkpoint(tmp_path / "gated")
    plain, _ = load_checkpoint(tmp_path / "plain")
    g = model.config.silence_gate
    assert g is not None and 0.5 <= g.threshold <= 0.999 and g.fit["scenes"] == 6 and "val" in g.fit
    for (name, a), b in zip(model.unet.state_dict().items(), plain.unet.state_dict().values()):
        assert torch.equal(a, b), name                                       # no network changes
    assert main(["--checkpoint", str(tmp_path / "gated"), "--check", "0:2", "--json", str(tmp_path / "c.json")]) == 0
    table = json.loads((tmp_path / "c.json").read_text())
    assert table["ranges"] == "0:2" and all(v["n"] >= v["silenced"] for v in table.values() if isinstance(v, dict))
    assert main(["--checkpoint", str(tmp_path / "gated"), "--out", str(tmp_path / "gated"), "--force", "--scenes",
                 "6", "--val", "4", "--epochs", "3", "--seed", "1", "--threads", "1"]) == 0     # refit in place
    assert main(["--checkpoint", str(tmp_path / "plain"), "--check", "0:2"]) == 2
    assert "has no silence gate" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "plain"), "--out", str(tmp_path / "gated")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_training_drops_a_gate_it_would_make_stale(capsys):
    """training.train and training.snapshot write what changed the conditions without the gate fitted to
    the old ones (`drop_gate`), and say how to fit it again."""
    import dataclasses

    from objaudio_rt.core.config import ModelConfig, SilenceGateConfig
    from objaudio_rt.modelio.model import ObjaudioModel
    from training.silence_gate import drop_gate

    config = dataclasses.replace(ModelConfig.from_name("tiny"), silence_gate=SilenceGateConfig())
    model = ObjaudioModel.random(config)
    assert model.silence_gate is not None
    assert drop_gate(model, "test") and model.silence_gate is None and model.config.silence_gate is None
    assert "python -m training.silence_gate" in capsys.readouterr().err
    assert not drop_gate(model, "test")
