"""A vocoder made wider without forgetting what it learned (Net2Net-style, new channels start silent).

`widen_vocoder(old, wide)` builds a SpeechT5HifiGan of config `wide` (the same as `old`'s but for a larger
`upsample_initial_channel`: every stage's channels scale with it) whose waveform equals `old`'s: each
weight keeps `old`'s values in its leading block; the weights from a new channel into an old one are zero,
so the old channels compute exactly what they did; the rest (new channels, fed by old and new ones) keep
the wide network's own random initialisation. Training then moves the zero weights first (their
gradient is the new channels' activation times the old channels' error) and the new channels with them.

Why: the tiny-synth vocoder's last stage, the only one running above 4 kHz, is 16 channels wide, and it
renders a bird's chirps (2.5-6 kHz) as a train of bursts (training/README.md, thirteenth session); more
steps of the same width did not move them. A wider vocoder from scratch is more CPU than a session has,
a widened one starts where the embedded one is.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from objaudio_rt.core.config import VocoderConfig
from objaudio_rt.core.errors import check


def widenable(old: VocoderConfig, wide: VocoderConfig) -> bool:
    """True when `wide` is `old` with a larger upsample_initial_channel and nothing else changed."""
    return (wide.upsample_initial_channel > old.upsample_initial_channel
            and dataclasses.replace(wide, upsample_initial_channel=old.upsample_initial_channel) == old)


def widen_vocoder(old: nn.Module, old_config: VocoderConfig, wide_config: VocoderConfig,
                  seed: int = 0) -> nn.Module:
    """A `wide_config` vocoder computing what `old` (of `old_config`) computes; see the module's text."""
    check(widenable(old_config, wide_config),
          f"cannot widen a vocoder of {old_config} to {wide_config}: only upsample_initial_channel may grow")
    with torch.random.fork_rng():                            # the caller's random stream untouched
        torch.manual_seed(seed)
        wide = wide_config.build()
    old_state = old.state_dict()
    new_state = {}
    transposed = {f"upsampler.{i}.weight" for i in range(len(wide_config.upsample_rates))}
    for name, w in wide.state_dict().items():
        o = old_state[name]
        w = w.clone()
        lead = tuple(slice(0, n) for n in o.shape)
        w[lead] = o
        if w.dim() == 3 and w.shape[:2] != o.shape[:2]:          # a convolution: (out, in, k) or (in, out, k)
            out_dim, in_dim = (1, 0) if name in transposed else (0, 1)
            block = [slice(None)] * 3
            block[out_dim] = slice(0, o.shape[out_dim])          # into the old channels ...
            block[in_dim] = slice(o.shape[in_dim], None)         # ... from the new ones: nothing
            w[tuple(block)] = 0
        new_state[name] = w
    wide.load_state_dict(new_state)
    return wide.train(old.training)
