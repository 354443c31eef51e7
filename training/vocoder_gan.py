"""HiFi-GAN's discriminators and losses, for training the vocoder adversarially (`train_vocoder`'s
`adversarial` weight; `python -m training.train --stage vocoder --vocoder-adversarial W`).

Kong et al. 2020 (HiFi-GAN), section 2.2-2.3: a multi-period discriminator (the waveform folded into
(T / p, p) for p = 2, 3, 5, 7, 11, 2-D convolutions along time) and a multi-scale one (1-D convolutions
on the waveform at 1x, 2x and 4x average-pooled), least-squares GAN losses and feature matching
(L1 between the discriminators' feature maps of real and generated audio). What differs: the widths
are `width` times the paper's (the paper's 32-1024 channels cost more than the generator on a CPU),
and the losses are means over the discriminators rather than sums, so that `adversarial` is a
weight on the mean against the mel + STFT reconstruction loss.

Written here because no library installable beside torch 2.14 provides them: `bigvgan` and
`descript-audio-codec` import torchaudio, whose newest wheel (2.11) pins an older torch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

SLOPE = 0.1


def _stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A discriminator's body: leaky-ReLU convolutions, then the score map; (score (B, N), feature maps)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), SLOPE)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's DiscriminatorP: the waveform as (T / period, period), 2-D convolutions along time."""

    def __init__(self, period: int, width: float = 0.25):
        super().__init__()
        self.period = period
        ch = [1] + [max(4, int(c * width)) for c in (32, 128, 512, 1024, 1024)]
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(ch[i], ch[i + 1], (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i in range(5)])
        self.post = weight_norm(nn.Conv2d(ch[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # wave: (B, T) -> score (B, N), feature maps
        b, t = wave.shape
        x = F.pad(wave, (0, (-t) % self.period), mode="reflect")[:, None]
        return _stack(self.convs, self.post, x.view(b, 1, -1, self.period))


class ScaleDiscriminator(nn.Module):
    """HiFi-GAN's DiscriminatorS: strided and grouped 1-D convolutions over the waveform."""

    def __init__(self, width: float = 0.25):
        super().__init__()
        w = lambda c: max(4, int(c * width))                                        # noqa: E731
        spec = [(1, w(128), 15, 1, 1), (w(128), w(128), 41, 2, 4), (w(128), w(256), 41, 2, 16),
                (w(256), w(512), 41, 4, 16), (w(512), w(1024), 41, 4, 16), (w(1024), w(1024), 41, 1, 16),
                (w(1024), w(1024), 5, 1, 1)]
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv1d(cin, cout, k, s, groups=g if cin % g == 0 and cout % g == 0 else 1,
                                  padding=k // 2))
            for cin, cout, k, s, g in spec])
        self.post = weight_norm(nn.Conv1d(w(1024), 1, 3, padding=1))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _stack(self.convs, self.post, wave[:, None])


class Discriminators(nn.Module):
    """The multi-period (periods) and multi-scale (scales, each one average-pooled 2x more) sets."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), scales: int = 3, width: float = 0.25):
        super().__init__()
        self.period = nn.ModuleList([PeriodDiscriminator(p, width) for p in periods])
        self.scale = nn.ModuleList([ScaleDiscriminator(width) for _ in range(scales)])

    def forward(self, wave: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        out = [d(wave) for d in self.period]
        x = wave
        for n, d in enumerate(self.scale):
            if n:
                x = F.avg_pool1d(x[:, None], 4, 2, padding=2)[:, 0]
            out.append(d(x))
        return out


def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """Least squares: real scores toward 1, generated toward 0 (mean over the discriminators)."""
    return torch.stack([((1 - r) ** 2).mean() + (f ** 2).mean() for (r, _), (f, _) in zip(real, fake)]).mean()


def generator_losses(real: list, fake: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(least-squares adversarial loss, feature-matching L1), each a mean over the discriminators;
    `real` is computed without gradients (its feature maps are targets)."""
    adv = torch.stack([((1 - f) ** 2).mean() for f, _ in fake]).mean()
    fm = torch.stack([torch.stack([(a - b).abs().mean() for a, b in zip(rf, ff)]).mean()
                      for (_, rf), (_, ff) in zip(real, fake)]).mean()
    return adv, fm
