"""The silence gate (core/gate.py): a selection the gate calls silent is digital silence and runs no
network past the grounding; a composed union drops its silent parts; everything else is generated
exactly as without a gate; switching it off is the paper's behaviour. On the `tiny` preset with random
weights and a gate set by hand so that the red square is silent and the blue disc is not."""
import dataclasses
import math

import pytest
import torch

from objaudio_rt import Pipeline
from objaudio_rt.core.config import ModelConfig, SilenceGateConfig
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.gate import SILENT_LOG_MEL, SilenceGate, silent_rows
from objaudio_rt.core.options import RunOptions
from objaudio_rt.core.selection import Mask, Whole
from objaudio_rt.modelio.checkpoint import checkpoint_fingerprint, describe, load_checkpoint, load_graph_model
from objaudio_rt.modelio.model import Calibration, ObjaudioModel

RUN = dict(steps=2, seed=3, progress=False)


def _pipe(model) -> Pipeline:
    return Pipeline(model, Calibration.uncalibrated(model.config.image.num_patches), backend="eager")


@pytest.fixture(scope="module")
def models(scene_image, square_mask, disc_mask):
    """(gated, plain): the same random tiny weights, the gated one's gate calling the square silent."""
    plain = ObjaudioModel.random(ModelConfig.from_name("tiny"), seed=0)
    config = dataclasses.replace(plain.config, silence_gate=SilenceGateConfig(hidden_dim=2, threshold=0.5))
    gated = ObjaudioModel.random(config, seed=0)
    gated.load_state_dict(plain.state_dict(), strict=False)
    pipe = _pipe(plain)
    scene = pipe.encode_image(scene_image)
    c_sq, c_disc = (pipe.condition(scene, pipe.select(scene, Mask(m))[0])[0] for m in (square_mask, disc_mask))
    u = (c_sq - c_disc) / (c_sq - c_disc).norm()
    mid = float(u @ (c_sq + c_disc)) / 2
    with torch.no_grad():                # logit = silu(K (u.c - mid)) - 0.01: > 0 for the square only
        first, last = gated.silence_gate.mlp[0], gated.silence_gate.mlp[2]
        first.weight.zero_()
        first.bias.zero_()
        first.weight[0] = 200.0 * u
        first.bias[0] = -200.0 * mid
        last.weight.zero_()
        last.weight[0, 0] = 1.0
        last.bias.fill_(-0.01)
    return gated, plain


@pytest.fixture(scope="module")
def pipes(models, scene_image):
    gated, plain = models
    g, p = _pipe(gated), _pipe(plain)
    return g, p, g.encode_image(scene_image), p.encode_image(scene_image)


def test_the_gate_is_its_formula():
    torch.manual_seed(0)
    gate = SilenceGate(6, 5)
    c = torch.randn(4, 6)
    first, last = gate.mlp[0], gate.mlp[2]
    want = torch.sigmoid(torch.nn.functional.silu(c @ first.weight.T + first.bias) @ last.weight.T + last.bias)[:, 0]
    torch.testing.assert_close(gate(c), want, rtol=0, atol=1e-6)
    assert silent_rows(gate, 0.5, c) == (want >= 0.5).tolist()
    assert silent_rows(None, 0.5, c) == [False] * 4


def test_the_gate_calls_the_square_silent_and_the_disc_not(pipes, square_mask, disc_mask):
    g, _, scene, _ = pipes
    batch = g.conditions(scene, [Mask(square_mask), Mask(disc_mask), Mask(square_mask) | Mask(disc_mask)],
                         union="compose")
    assert batch.silent == [True, False, False] and batch.kept == [1, 2]
    assert batch.conditions.rows.shape[0] == 2                        # the union kept its disc part only
    assert g.conditions(scene, [Mask(square_mask)], silence_gate=False).silent == [False]


def test_a_silent_selection_is_zeros_and_runs_no_network(pipes, square_mask, monkeypatch):
    g, p, scene, scene_p = pipes
    for name in ("unet_eps", "decode", "vocode"):
        monkeypatch.setattr(g.backend, name, lambda *a, **k: pytest.fail("a network ran for a silent selection"))
    gen = g.generate_many(scene, [Mask(square_mask)], **RUN)[0]
    ref = p.generate_many(scene_p, [Mask(square_mask)], **RUN)[0]
    assert gen.wave.shape == ref.wave.shape and not gen.wave.any()
    assert gen.mel.shape == ref.mel.shape and bool((gen.mel == SILENT_LOG_MEL).all())
    assert gen.mask is not None and gen.weights.shape == ref.weights.shape      # what was selected is still shown
    assert gen.silent and not ref.silent


def test_sounding_items_and_a_unions_sounding_part_are_as_without_the_gate(pipes, square_mask, disc_mask):
    g, p, scene, scene_p = pipes
    gens = g.generate_many(scene, [Mask(square_mask), Mask(disc_mask), Mask(square_mask) | Mask(disc_mask)], **RUN)
    ref = p.generate_many(scene_p, [Mask(disc_mask), Mask(disc_mask)], **RUN)    # the rows the gate leaves
    alone = ref[0]
    assert not gens[0].wave.any() and [g.silent for g in gens] == [True, False, False]
    assert torch.equal(gens[1].wave, alone.wave) and torch.equal(gens[1].mel, alone.mel)
    assert torch.equal(gens[2].wave, ref[1].wave)                       # the union is its sounding part
    assert alone.wave.abs().max() > 0


def test_switched_off_it_is_the_paper(pipes, square_mask, disc_mask):
    g, p, scene, scene_p = pipes
    sels = [Mask(square_mask), Mask(disc_mask) | Mask(square_mask), Whole()]
    off = g.generate_many(scene, sels, silence_gate=False, **RUN)
    ref = p.generate_many(scene_p, sels, **RUN)
    for a, b in zip(off, ref):
        assert torch.equal(a.wave, b.wave)


def test_a_model_without_a_gate_refuses_it(pipes, square_mask):
    _, p, _, scene_p = pipes
    with pytest.raises(ObjaudioError, match="has no silence gate"):
        p.generate_many(scene_p, [Mask(square_mask)], silence_gate=True, **RUN)
    with pytest.raises(ObjaudioError, match="has no silence gate"):
        p.conditions(scene_p, [Mask(square_mask)], silence_gate=True)
    with pytest.raises(ObjaudioError, match="true or false"):
        RunOptions(silence_gate="yes").resolve(p.config)
    assert RunOptions().resolve(p.config).silence_gate is False
    assert RunOptions().resolve(pipes[0].config).silence_gate is True


@pytest.mark.parametrize("run", [RunOptions(steps=2, seed=3), RunOptions(steps=2, seed=3, duration=3.0, loop=True)],
                         ids=["clip", "loop"])
def test_streams_hand_out_zeros_for_silent_items(pipes, square_mask, disc_mask, run):
    g, p, scene, scene_p = pipes
    silent = g.stream(g.conditions(scene, [Mask(square_mask)]), run)
    wave = torch.cat(list(silent), dim=1)
    assert wave.shape == (1, silent.samples) and not wave.any()
    assert silent.samples == p.stream(p.conditions(scene_p, [Mask(square_mask)]), run).samples
    mixed = g.stream(g.conditions(scene, [Mask(square_mask), Mask(disc_mask)]), run)
    both = torch.cat(list(mixed), dim=1)
    ref_stream = p.stream(p.conditions(scene_p, [Mask(disc_mask)]), run)
    ref = torch.cat(list(ref_stream), dim=1)
    assert not both[0].any() and torch.equal(both[1], ref[0])
    assert mixed.origin == ref_stream.origin


def test_a_checkpoint_keeps_its_gate(models, tmp_path):
    gated, plain = models
    calib = Calibration.uncalibrated(gated.config.image.num_patches)
    from objaudio_rt.modelio.checkpoint import save_checkpoint

    save_checkpoint(gated, calib, tmp_path / "g")
    save_checkpoint(plain, calib, tmp_path / "p")
    back, _ = load_checkpoint(tmp_path / "g")
    assert back.config.silence_gate == gated.config.silence_gate
    for a, b in zip(back.silence_gate.state_dict().values(), gated.silence_gate.state_dict().values()):
        assert torch.equal(a, b)
    graph, _ = load_graph_model(tmp_path / "g")
    assert graph.silence_gate is not None and graph.fingerprint == checkpoint_fingerprint(tmp_path / "g")
    assert checkpoint_fingerprint(tmp_path / "g") != checkpoint_fingerprint(tmp_path / "p")
    assert describe(tmp_path / "g")["silence_gate"]["threshold"] == 0.5
    assert "silence_gate" not in load_checkpoint(tmp_path / "p")[0].config.to_dict()    # older fingerprints hold
    (tmp_path / "g" / "silence_gate.safetensors").unlink()
    with pytest.raises(ObjaudioError, match="missing silence_gate.safetensors"):
        load_checkpoint(tmp_path / "g")


def test_the_engine_carries_the_gate_inline(models):
    from export.engine import engine_constants

    gated, plain = models
    calib = Calibration.uncalibrated(gated.config.image.num_patches)
    g = engine_constants(gated, calib)["silence_gate"]
    h, d = 2, gated.config.unet.cond_dim
    assert (g["hidden_dim"], len(g["w1"]), len(g["b1"]), len(g["w2"]), len(g["b2"])) == (h, h * d, h, h, 1)
    assert g["threshold"] == 0.5 and all(math.isfinite(v) for v in g["w1"])
    assert torch.equal(torch.tensor(g["w1"]).view(h, d), gated.silence_gate.mlp[0].weight)    # float32 exactly
    assert "silence_gate" not in engine_constants(plain, calib)


def test_config_refuses_a_bad_gate():
    with pytest.raises(ObjaudioError, match="threshold"):
        SilenceGateConfig(threshold=1.0)
    with pytest.raises(ObjaudioError, match="hidden_dim"):
        SilenceGateConfig(hidden_dim=0)


def test_every_front_door_takes_the_switch(tmp_path, pipes, square_mask):
    """The CLI's --no-silence-gate, the service's "silence_gate" and a batch line's: each refuses a non-boolean;
    a generation's JSON over HTTP says whether the gate silenced it."""
    from objaudio_rt.core.options import RunOptions
    from objaudio_rt.frontends.cli import _run_options, build_parser
    from objaudio_rt.frontends.jobs import read_jobs
    from objaudio_rt.frontends.serve.limits import ServeLimits
    from objaudio_rt.frontends.serve.requests import parse_generate
    from objaudio_rt.frontends.serve.service import generation_json

    args = build_parser().parse_args(["generate", "--image", "x.png", "--no-silence-gate", "--out", "y.wav"])
    assert _run_options(args).silence_gate is False
    args = build_parser().parse_args(["generate", "--image", "x.png", "--out", "y.wav"])
    assert _run_options(args).silence_gate is None
    body = {"scene_id": "s", "selections": [{"whole": True}]}
    assert parse_generate(body, ServeLimits()).options.silence_gate is None
    assert parse_generate({**body, "silence_gate": False}, ServeLimits()).options.silence_gate is False
    with pytest.raises(ObjaudioError, match="'silence_gate' must be true or false"):
        parse_generate({**body, "silence_gate": "no"}, ServeLimits())
    lines = tmp_path / "jobs.jsonl"
    lines.write_text('{"image": "a.png", "silence_gate": false}\n{"image": "a.png"}\n')
    jobs = read_jobs(lines, tmp_path, RunOptions())
    assert [j.options.silence_gate for j in jobs] == [False, None]
    lines.write_text('{"image": "a.png", "silence_gate": "off"}\n')
    with pytest.raises(ObjaudioError, match="must be true or false"):
        read_jobs(lines, tmp_path, RunOptions())
    g, _, scene, _ = pipes
    gen = g.generate_many(scene, [Mask(square_mask)], **RUN)[0]
    assert generation_json(gen)["silent"] is True
