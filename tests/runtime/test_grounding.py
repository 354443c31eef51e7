"""Grounding math: the paper's attention, its single-query algebra and the mask rescaling."""
import math

import pytest
import torch

from objaudio_rt.core.config import GroundingConfig
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.grounding import GroundingAttention, mask_to_patch_coverage, rescale_patch_weights


def make(attention="dot", heads=1, p=49, l=40, seed=0):
    torch.manual_seed(seed)
    cfg = GroundingConfig(attention=attention, num_heads=heads, query_dim=24, token_dim=l, key_dim=32,
                          value_dim=32, mlp_hidden=48, cond_dim=20, num_patches=p)
    return GroundingAttention(cfg).double()


@pytest.mark.parametrize("attention,heads", [("dot", 1), ("multihead", 4), ("additive", 1)])
def test_weights_are_a_distribution(attention, heads):
    g = make(attention, heads)
    a = g.attention(torch.randn(3, 24, dtype=torch.float64), torch.randn(3, 49, 40, dtype=torch.float64))
    assert a.shape == (3, heads, 49)
    assert torch.all(a >= 0)
    torch.testing.assert_close(a.sum(-1), torch.ones(3, heads, dtype=torch.float64))


def test_dot_attention_matches_textbook_qkv():
    """softmax(Q K^T / sqrt(d_k)) V with full K and V matrices, computed the long way."""
    g = make()
    q_in, tok = torch.randn(2, 24, dtype=torch.float64), torch.randn(2, 49, 40, dtype=torch.float64)
    x = tok + g.pe
    q, k, v = g.w_q(q_in)[:, None], g.w_k(x), x @ g.w_v.weight.T
    a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(32), dim=-1)          # (B, 1, P)
    expected = g.mlp((a @ v).squeeze(1))
    cond, weights = g(q_in, tok)
    torch.testing.assert_close(weights, a)
    torch.testing.assert_close(cond, expected)


@pytest.mark.parametrize("attention,heads", [("dot", 1), ("multihead", 4), ("additive", 1)])
def test_mask_path_equals_attention_path_when_mask_is_the_attention(attention, heads):
    g = make(attention, heads)
    q_in, tok = torch.randn(2, 24, dtype=torch.float64), torch.randn(2, 49, 40, dtype=torch.float64)
    cond, a = g(q_in, tok)
    torch.testing.assert_close(g.condition_from_weights(a, tok), cond)
    if heads == 1:   # a (B, P) weight vector is broadcast to the one head
        torch.testing.assert_close(g.condition_from_weights(a[:, 0], tok), cond)


def test_positional_encoding_changes_the_output():
    g = make()
    q_in, tok = torch.randn(1, 24, dtype=torch.float64), torch.randn(1, 49, 40, dtype=torch.float64)
    before, a_before = g(q_in, tok)
    with torch.no_grad():
        g.pe.add_(torch.randn_like(g.pe))
    after, a_after = g(q_in, tok)
    assert (before - after).abs().max() > 1e-3
    assert (a_before - a_after).abs().max() > 1e-4


def test_positional_encoding_tells_identical_patches_apart():
    """With equal tokens everywhere only PE can make one patch win the attention."""
    g = make()
    tok = torch.ones(1, 49, 40, dtype=torch.float64)
    a = g.attention(torch.randn(1, 24, dtype=torch.float64), tok)
    assert a.std() > 1e-4
    with torch.no_grad():
        g.pe.zero_()
    torch.testing.assert_close(g.attention(torch.randn(1, 24, dtype=torch.float64), tok),
                               torch.full((1, 1, 49), 1 / 49, dtype=torch.float64))


def test_coverage_is_area_average():
    mask = torch.zeros(1, 64, 64)
    mask[0, :16, :8] = 1                       # half of patch 0 (16 px patches at 64 px)
    cov = mask_to_patch_coverage(mask, image_size=64, patch_size=16)
    assert cov.shape == (1, 16)
    assert cov[0, 0].item() == pytest.approx(0.5)
    assert cov[0, 1:].abs().max().item() == 0


def test_rescaled_mask_matches_attention_moments():
    p = 49
    cov = torch.zeros(1, p)
    cov[0, :12] = 1.0                          # a large object: sigma is reachable
    sigma = 0.02
    m = rescale_patch_weights(cov, sigma)
    assert m.mean().item() == pytest.approx(1 / p, rel=1e-6)
    assert m.std(unbiased=False).item() == pytest.approx(sigma, rel=1e-5)
    assert torch.all(m >= 0)


def test_rescaled_mask_never_goes_negative():
    cov = torch.zeros(2, 49)
    cov[0, 3] = 1.0                            # one patch: sigma 0.5 is not reachable
    cov[1, :30] = torch.rand(30)
    m = rescale_patch_weights(cov, 0.5)
    assert torch.all(m >= -1e-9)
    assert m[0, 3].item() == pytest.approx(1.0, rel=1e-6)     # all the weight on the object
    torch.testing.assert_close(m.sum(-1), torch.ones(2))


def test_full_mask_gives_uniform_weights():
    m = rescale_patch_weights(torch.ones(1, 49), 0.05)
    torch.testing.assert_close(m, torch.full((1, 49), 1 / 49))


def test_sum_mode_normalises():
    cov = torch.rand(3, 16)
    torch.testing.assert_close(rescale_patch_weights(cov, 0.1, mode="sum").sum(-1), torch.ones(3))


def test_empty_mask_is_refused():
    with pytest.raises(ObjaudioError, match="empty"):
        rescale_patch_weights(torch.zeros(1, 49), 0.05)


def test_bad_grounding_config_is_refused():
    with pytest.raises(ObjaudioError, match="unknown grounding attention"):
        GroundingConfig(attention="luong")
    with pytest.raises(ObjaudioError, match="num_heads"):
        GroundingConfig(attention="dot", num_heads=2)
