"""training.widen: a vocoder made wider computes what it computed, and its new channels train."""
import dataclasses

import pytest
import torch

from objaudio_rt.core.config import ModelConfig
from objaudio_rt.core.errors import ObjaudioError
from training.widen import widen_vocoder, widenable


def _old():
    config = ModelConfig.from_name("tiny-synth").vocoder
    torch.manual_seed(0)
    vocoder = config.build().eval()
    with torch.no_grad():                     # trained-looking weights: every old weight nonzero, biases too
        for p in vocoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vocoder, config


def test_the_widened_vocoder_computes_the_same_waveform():
    old, config = _old()
    wide_config = dataclasses.replace(config, upsample_initial_channel=2 * config.upsample_initial_channel)
    wide = widen_vocoder(old, config, wide_config).eval()
    assert wide.conv_post.weight.shape[1] == 2 * old.conv_post.weight.shape[1]        # the last stage doubled
    mel = torch.randn(2, 24, config.model_in_dim) - 4
    with torch.no_grad():
        a, b = old(mel), wide(mel)
        # what float32 itself gives: the same old vocoder in float64, the error of the reference's arithmetic
        ref64 = old.double()(mel.double())
    own = (a.double() - ref64).abs().max().item()
    assert (a - b).abs().max().item() <= 4 * own + 1e-7
    # the new channels are alive: they carry signal (only their way out starts at zero)
    acts = {}
    wide.conv_pre.register_forward_hook(lambda m, i, o: acts.setdefault("pre", o))
    with torch.no_grad():
        wide(mel)
    assert acts["pre"][:, config.upsample_initial_channel:].abs().mean() > 0.1 * acts["pre"].abs().mean()


def test_training_moves_the_new_channels_into_the_waveform():
    old, config = _old()
    wide = widen_vocoder(old, config, dataclasses.replace(config, upsample_initial_channel=192)).train()
    opt = torch.optim.Adam(wide.parameters(), lr=1e-3)
    mel, target = torch.randn(2, 8, config.model_in_dim) - 4, torch.randn(2, 8 * 160) * 0.1
    n_old = old.conv_post.weight.shape[1]
    assert wide.conv_post.weight[:, n_old:].abs().max() == 0
    for _ in range(2):
        opt.zero_grad()
        (wide(mel)[:, :target.shape[1]] - target).abs().mean().backward()
        opt.step()
    assert wide.conv_post.weight[:, n_old:].abs().min() > 0          # the new channels now reach the output


def test_only_the_width_may_grow():
    old, config = _old()
    assert widenable(config, dataclasses.replace(config, upsample_initial_channel=256))
    assert not widenable(config, dataclasses.replace(config, upsample_initial_channel=64))
    assert not widenable(config, dataclasses.replace(config, upsample_initial_channel=256, resblock_kernel_sizes=(3, 5)))
    with pytest.raises(ObjaudioError, match="only upsample_initial_channel may grow"):
        widen_vocoder(old, config, dataclasses.replace(config, upsample_initial_channel=64))
