"""The pipeline's public stages (issue 19): `conditions` -> `sample` -> `audio` is `generate_many`,
and one parser (`config.ModelSource`) says what a checkpoint string means everywhere."""
import os

import numpy as np
import pytest
import torch

from objaudio_rt.core.config import ModelSource, embedded_checkpoint, peek_config
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.options import ResolvedRun, RunOptions
from objaudio_rt.core.pipeline import Pipeline, conditions_per_item
from objaudio_rt.core.selection import Mask, Text, Whole


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_pretrained("random:tiny", seed=0)


def _scene(pipe):
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    a = np.zeros((64, 64), np.float32)
    a[:32] = 1
    b = np.zeros((64, 64), np.float32)
    b[40:, 40:] = 1
    return pipe.encode_image(image), a, b


def test_the_stages_compose_to_generate_many_bit_for_bit(pipe):
    scene, a, b = _scene(pipe)
    sels = [Mask(a), Mask(a) | Mask(b), Text("a dog barking")]
    ref = pipe.generate_many(scene, sels, steps=3, sampler="unipc", cfg=3.0, seed=7, union="compose", progress=False)
    run = RunOptions(steps=3, sampler="unipc", cfg=3.0, seed=7, union="compose").resolve(pipe.config)
    batch = pipe.conditions(scene, sels, run.union)
    assert len(batch.shown) == 3 and batch.conditions.rows.shape[0] == 4        # the union runs two rows
    mel, wave = pipe.audio(pipe.sample(batch, run, progress=False), run.duration)
    for i, r in enumerate(ref):
        assert torch.equal(wave[i], r.wave) and torch.equal(mel[i].cpu(), r.mel)
        assert torch.equal(batch.shown[i][0].cpu(), r.weights)


def test_single_selections_take_the_identity_rows_and_unions_follow_the_one_rule(pipe):
    scene, a, b = _scene(pipe)
    assert pipe.conditions(scene, [Mask(a), Whole()]).conditions.identity
    assert not pipe.conditions(scene, [Mask(a) | Mask(b)], union="compose").conditions.identity
    assert pipe.conditions(scene, [Mask(a) | Mask(b)], union="mask").conditions.identity
    assert conditions_per_item(Mask(a) | Mask(b), "compose") == 2 == conditions_per_item(Mask(a) | Mask(b), "mix")
    assert conditions_per_item(Mask(a) | Mask(b), "mask") == 1 and conditions_per_item(None, "compose") == 1
    with pytest.raises(ObjaudioError, match="at least one selection"):
        pipe.conditions(scene, [])
    with pytest.raises(ObjaudioError, match="union mode"):
        pipe.conditions(scene, [Mask(a)], union="sum")


def test_sample_resolves_options_once_and_checks_unresolved_ones(pipe):
    scene, a, _ = _scene(pipe)
    run = RunOptions(steps=2, seed=3).resolve(pipe.config)
    assert isinstance(run, ResolvedRun) and run.resolve(pipe.config) is run
    batch = pipe.conditions(scene, [Mask(a)])
    assert torch.equal(pipe.sample(batch, run, progress=False),
                       pipe.sample(batch.conditions, RunOptions(steps=2, seed=3), progress=False))
    with pytest.raises(ObjaudioError, match="steps must be"):
        pipe.sample(batch, RunOptions(steps=0), progress=False)


def test_model_source_one_vocabulary(tmp_path, monkeypatch):
    assert ModelSource.parse("random:tiny").random_preset == "tiny"
    assert ModelSource.parse(None).folder == ModelSource.parse("tiny-synth").folder   # the default: the embedded model
    with pytest.raises(ObjaudioError, match="no preset 'nope'"):
        ModelSource.parse("random:nope")
    with pytest.raises(ObjaudioError, match="random:tiny"):
        ModelSource.parse("tiny")                                              # no embedded tiny model
    # a preset name always means the embedded model, even beside a folder of that name
    (tmp_path / "tiny-synth").mkdir()
    monkeypatch.chdir(tmp_path)
    assert ModelSource.parse("tiny-synth", "full").folder == type(tmp_path)(embedded_checkpoint("tiny-synth"))
    assert ModelSource.parse("./tiny-synth").folder.resolve() == (tmp_path / "tiny-synth").resolve()
    assert peek_config("./tiny-synth") is None and peek_config("random:nope") is None
    assert peek_config("tiny-synth").default_cfg == Pipeline.from_pretrained("tiny-synth").config.default_cfg
