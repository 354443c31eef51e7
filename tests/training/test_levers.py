"""Inference-time levers: the signed-row loop reproduces the runtime's loops at their settings, and
the negative term is exactly eps_u + cfg (eps_c - eps_u) - lam (eps_neg - eps_u)."""
import numpy as np
import pytest
import torch

from objaudio_rt.backends.base import Backend
from objaudio_rt.core.config import ModelConfig
from objaudio_rt.core.denoise import Conditions, denoise
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.pipeline import Pipeline
from objaudio_rt.core.samplers import SamplerPlan
from objaudio_rt.core.selection import Mask, Text
from training.levers import Levers, complement, levered_generate_many


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return Pipeline.from_pretrained("random:tiny", seed=0)


def _scene(pipe):
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    a = np.zeros((64, 64), bool)
    a[:32] = True
    b = np.zeros((64, 64), bool)
    b[40:, 40:] = True
    return pipe.encode_image(image), a, b


def test_default_levers_reproduce_the_runtime(pipe):
    scene, a, b = _scene(pipe)
    sels = [Mask(a), Mask(a) | Mask(b), Text("a dog barking")]
    ref = pipe.generate_many(scene, sels, steps=3, sampler="dpmpp", cfg=4.0, seed=5, progress=False)
    got = levered_generate_many(pipe, Levers())(scene, sels, steps=3, sampler="dpmpp", cfg=4.0, seed=5)
    for r, g in zip(ref, got):
        # the same float32 operations in another order: a few ulps of the waveform's scale
        tol = 64 * torch.finfo(torch.float32).eps * max(1.0, float(r.wave.abs().max()))
        torch.testing.assert_close(g.wave, r.wave, atol=tol, rtol=0)
        torch.testing.assert_close(g.weights, r.weights)


class LinearBackend:
    """eps(x, c) = x + c[0]: every guidance combination can be computed by hand."""
    device, graphs = torch.device("cpu"), None
    null_condition = torch.zeros(4)
    step = Backend.step                                   # the reference sampler step

    def unet_eps(self, x, t, cond):
        return x + cond[:, :1, None, None]


def test_negative_term_is_the_documented_combination():
    plan = SamplerPlan.build("ddim", 1, ModelConfig.from_name("tiny").schedule)
    x = torch.randn(1, 2, 3, 3)
    cond, neg = torch.tensor([[0.5, 0, 0, 0]]), torch.tensor([[-0.25, 0, 0, 0]])
    cfg, lam = 4.0, 1.5
    backend = LinearBackend()
    rows = Conditions.signed(torch.cat([cond, neg]), torch.tensor([0, 0]), torch.tensor([1.0, -lam / cfg]), 1,
                             backend.null_condition)
    assert rows.rows.shape[0] == 3 and float(rows.weights.sum()) == pytest.approx(1.0)   # + a null row
    out = denoise(backend, x, rows, plan, cfg, progress=False)
    eps_u, eps_c, eps_n = x, x + 0.5, x - 0.25
    eps = eps_u + cfg * (eps_c - eps_u) - lam * (eps_n - eps_u)
    c = [float(v) for v in plan.coefs[0]]
    torch.testing.assert_close(out, c[0] * x + c[1] * eps)
    single = Conditions.signed(cond, torch.tensor([0]), torch.tensor([1.0]), 1, backend.null_condition)
    assert single.rows.shape[0] == 1   # weights sum to 1: no null row
    thirds = Conditions.signed(torch.cat([cond] * 3), torch.zeros(3, dtype=torch.int64),
                               torch.full((3,), 1 / 3), 1, backend.null_condition)
    assert thirds.rows.shape[0] == 3   # float32 thirds sum to 1 within rounding: no null row
    with pytest.raises(ObjaudioError, match="finite"):
        Conditions.signed(cond, torch.tensor([0]), torch.tensor([float('nan')]), 1, backend.null_condition)
    with pytest.raises(ObjaudioError, match="owner"):
        Conditions.signed(cond, torch.tensor([1]), torch.tensor([1.0]), 1, backend.null_condition)


def test_negative_and_union_gain_change_only_what_they_should(pipe):
    scene, a, b = _scene(pipe)
    sels = [Mask(a), Mask(a) | Mask(b), Text("a dog barking")]
    base = levered_generate_many(pipe, Levers())(scene, sels, steps=2, sampler="ddim", cfg=4.0, seed=1)
    neg = levered_generate_many(pipe, Levers(negative=1.0))(scene, sels, steps=2, sampler="ddim", cfg=4.0, seed=1)
    gain = levered_generate_many(pipe, Levers(union_gain=2.0))(scene, sels, steps=2, sampler="ddim", cfg=4.0, seed=1)
    assert not torch.equal(neg[0].wave, base[0].wave)           # a mask gets the rest-of-scene negative
    torch.testing.assert_close(neg[2].wave, base[2].wave)       # text: no negative row
    torch.testing.assert_close(gain[0].wave, base[0].wave)      # a single part: gain does not apply
    assert not torch.equal(gain[1].wave, base[1].wave)


def test_complement_and_lever_checks():
    m = np.zeros((4, 4), np.float32)
    m[:2] = 1
    assert complement(m).sum() == 8 and complement(np.ones((4, 4), np.float32)) is None and complement(None) is None
    with pytest.raises(ObjaudioError, match="negative"):
        Levers(negative=-1)
    with pytest.raises(ObjaudioError, match="union_gain"):
        Levers(union_gain=0)



def test_core_drops_the_partly_covered_patches_of_a_mask(pipe):
    from training.levers import cored_weights

    scene, a, b = _scene(pipe)
    edge = np.zeros((64, 64), np.float32)
    edge[:20, :20] = 1                                     # whole patches and partly covered ones
    full = cored_weights(pipe, edge, 0.0)
    cored = cored_weights(pipe, edge, 1.0)
    ref, _ = pipe.select(scene, Mask(edge))
    torch.testing.assert_close(full, ref)                  # core 0 is the runtime's weights
    assert (cored > cored.amin()).sum() < (full > full.amin()).sum()
    kw = dict(steps=2, sampler="ddim", cfg=4.0, seed=1)
    base = levered_generate_many(pipe, Levers())(scene, [Mask(edge), Text("a dog barking")], **kw)
    got = levered_generate_many(pipe, Levers(core=1.0))(scene, [Mask(edge), Text("a dog barking")], **kw)
    assert not torch.equal(got[0].wave, base[0].wave)
    torch.testing.assert_close(got[1].wave, base[1].wave)  # text: untouched
    with pytest.raises(ObjaudioError, match="core"):
        Levers(core=2.0)
