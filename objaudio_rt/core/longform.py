"""Any length and seamless loops: one latent denoised jointly over overlapping windows (MultiDiffusion).

A clip longer than the model's `max_seconds`, or any loop, is one latent of T frames. At every step
the UNet runs on windows of the model's clip length (W frames, what it was trained on) that overlap by
W/4, and each frame's noise prediction is the weighted mean of the predictions of the windows that
cover it, the weights ramping down towards each window's edges. The samplers' update is affine in eps
(samplers.py), so this is MultiDiffusion's averaging of the windows' updates (Bar-Tal et al., 2023)
with every sampler unchanged: the clip is one sample, not clips glued after the fact.

For a loop the windows wrap around the time axis (the last one overlaps the first), so the last frames
are denoised next to the first ones and the clip's end flows into its start. A loop shorter than a
window is covered by two rotations of itself.

Decoding uses the same windows: the VAE decoder runs per window (its mid-block attention would grow
with the square of the length) and the log-mel is the ramp-weighted mean; the vocoder (convolutions
only) runs over blocks of the log-mel with `CONTEXT` frames of context on each side, wrapped around
for a loop. Memory and time grow linearly with the length.

    Windows.plan        where the windows lie (start frames, indices modulo T for a loop)
    WindowedUNet        the backend seen by denoise.guided_loop: unet_eps over the windows
    decode_windows      latent (B, C, T, M) -> log-mel (B, T * f, n_mels)
    vocode_blocks       log-mel -> waveform blocks in order (what a stream hands out)
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..backends.base import Backend

OVERLAP = 4               # windows overlap by 1/OVERLAP of their length
MAX_WINDOW_ROWS = 32      # UNet rows per call: bounds the memory of a long clip's step
CONTEXT = 32              # log-mel frames of context on each side of a vocoded block (HiFi-GAN's reach is less)


@dataclass(frozen=True)
class Windows:
    """Windows of `size` frames over a time axis of `total` frames, starting at `starts`; for a loop
    a window's frames are taken modulo `total`."""
    total: int
    size: int
    starts: tuple[int, ...]
    loop: bool

    @staticmethod
    def plan(total: int, size: int, loop: bool, overlap: int | None = None) -> "Windows":
        """The fewest windows of `size` frames (at most `total`) overlapping by at least `overlap`
        (default size / OVERLAP), spread evenly; a loop has at least two (the wrap is then overlapped)."""
        size = min(size, total)
        overlap = size // OVERLAP if overlap is None else overlap
        if loop:
            overlap = min(overlap, size // 2)
            n = max(2, math.ceil(total / (size - overlap)))
            return Windows(total, size, tuple(round(i * total / n) for i in range(n)), True)
        if size == total:
            return Windows(total, size, (0,), False)
        n = math.ceil((total - overlap) / (size - overlap))
        return Windows(total, size, tuple(round(i * (total - size) / (n - 1)) for i in range(n)), False)

    def scaled(self, factor: int) -> "Windows":
        """The same windows on an axis `factor` times finer (latent frames -> log-mel frames)."""
        return Windows(self.total * factor, self.size * factor, tuple(s * factor for s in self.starts), self.loop)

    def index(self) -> torch.Tensor:
        """(n, size) int64: the frames of each window (modulo total for a loop)."""
        idx = torch.tensor(self.starts, dtype=torch.int64)[:, None] + torch.arange(self.size)[None]
        return idx % self.total

    def weights(self) -> torch.Tensor:
        """(n, size) float32: each window's share of each of its frames. A window's own weight ramps
        linearly from its edges over a quarter of its length; the shares of a frame sum to 1."""
        ramp = max(1, self.size // OVERLAP)
        j = torch.arange(self.size, dtype=torch.float64)
        own = torch.minimum(torch.minimum(j + 1, self.size - j), torch.tensor(ramp + 1.0)) / (ramp + 1)
        idx = self.index()
        own = own.expand(len(self.starts), -1)
        cover = torch.zeros(self.total, dtype=torch.float64).index_add_(0, idx.flatten(), own.flatten())
        return (own / cover[idx]).float()

    def boundaries(self) -> list[int]:
        """The frames where a window begins or ends inside the clip (0 and total excluded unless a loop
        wraps there), sorted: where a seam would be heard if the windows did not blend."""
        ends = {s for s in self.starts} | {(s + self.size) % self.total if self.loop else s + self.size
                                            for s in self.starts}
        return sorted(f for f in ends if self.loop or 0 < f < self.total)


class WindowedUNet:
    """What `denoise.guided_loop` calls for a windowed latent: `unet_eps` on (N, C, T, M) runs `inner`'s
    UNet on the windows (at most MAX_WINDOW_ROWS rows a call) and blends them (`Windows.weights`);
    the sampler step is `inner`'s. Captured graphs are not used (`graphs` is None)."""
    graphs = None

    def __init__(self, inner: Backend, windows: Windows):
        self.inner = inner
        self.device = inner.device
        self.null_condition = inner.null_condition
        self.windows = windows
        self.index = windows.index().to(inner.device)                   # (n, W)
        self.weights = windows.weights().to(inner.device)               # (n, W)

    def unet_eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, M); t: (1,); cond: (N, cond_dim). Returns the blended eps (N, C, T, M) float32."""
        N, C, T, M = x.shape
        n, W = self.index.shape
        xw = x[:, :, self.index].permute(0, 2, 1, 3, 4).reshape(N * n, C, W, M)     # (N n, C, W, M)
        cw = cond.repeat_interleave(n, dim=0)                                         # (N n, cond_dim)
        eps = torch.cat([self.inner.unet_eps(xw[i:i + MAX_WINDOW_ROWS], t, cw[i:i + MAX_WINDOW_ROWS]).float()
                         for i in range(0, N * n, MAX_WINDOW_ROWS)])
        eps = eps.view(N, n, C, W, M) * self.weights.view(1, n, 1, W, 1)
        out = torch.zeros(N, C, T, M, dtype=torch.float32, device=x.device)
        return out.index_add_(2, self.index.flatten(), eps.permute(0, 2, 1, 3, 4).reshape(N, C, n * W, M))

    def step(self, *args, **kwargs):
        return self.inner.step(*args, **kwargs)


@torch.no_grad()
def decode_windows(backend: Backend, z: torch.Tensor, windows: Windows, factor: int) -> torch.Tensor:
    """z: (B, C, T, M) latent; windows over its T frames; factor: log-mel frames per latent frame.
    Returns the log-mel (B, T * factor, n_mels): each window decoded alone, blended by the windows' weights."""
    mel_windows = windows.scaled(factor)
    index, weights = windows.index().to(z.device), mel_windows.weights().to(z.device)   # (n, W), (n, W f)
    out = None
    for k in range(index.shape[0]):
        mel = backend.decode(z[:, :, index[k]]) * weights[k].view(1, -1, 1)          # (B, W f, n_mels)
        if out is None:
            out = torch.zeros(z.shape[0], mel_windows.total, mel.shape[-1], dtype=mel.dtype, device=mel.device)
        out.index_add_(1, mel_windows.index()[k].to(mel.device), mel)
    return out


@torch.no_grad()
def vocode_blocks(backend: Backend, mel: torch.Tensor, block: int, loop: bool, hop: int) -> Iterator[torch.Tensor]:
    """mel: (B, frames, n_mels). Yields the waveform (B, block * hop) block after block (the last may
    be shorter), each vocoded with CONTEXT frames of the log-mel on either side (wrapped around for a
    loop, none past the ends of a clip) and the context's samples cut off again."""
    frames = mel.shape[1]
    if block >= frames and not loop:
        yield backend.vocode(mel)                                                      # one pass: no context to cut
        return
    for start in range(0, frames, block):
        stop = min(start + block, frames)
        if loop:
            idx = torch.arange(start - CONTEXT, stop + CONTEXT, device=mel.device) % frames
            left, right = CONTEXT, CONTEXT
        else:
            lo, hi = max(0, start - CONTEXT), min(frames, stop + CONTEXT)
            idx = torch.arange(lo, hi, device=mel.device)
            left, right = start - lo, hi - stop
        wave = backend.vocode(mel[:, idx])                                             # (B, len(idx) * hop)
        yield wave[:, left * hop: wave.shape[1] - right * hop]


def seam_ratios(wave: torch.Tensor, mel_cfg, seams: list[int], loop: bool) -> tuple[list[float], float]:
    """How much a seam stands out: (per seam, statistic at the seam / median statistic in the clip; that median).

    wave: (T,) at mel_cfg.sample_rate; seams: sample positions (for a loop, 0 is the wrap point). The
    statistic at a position is the largest log-mel flux (mean |difference| over the mel bands between
    adjacent frames) among the frame pairs whose STFT windows reach it; the clip's median is the same
    statistic at every frame of the clip. A loop is measured on the waveform turned round (torch.roll)
    so that each seam lies inside it: what a player hears when the loop repeats."""
    from .audio import mel_spectrogram

    hop, reach = mel_cfg.hop_length, mel_cfg.n_fft // mel_cfg.hop_length + 1
    n = wave.shape[-1]

    def sliding_max(flux: torch.Tensor) -> torch.Tensor:                # (pairs,) -> (pairs,)
        padded = torch.nn.functional.pad(flux[None, None], (reach // 2, reach // 2), mode="replicate")
        return torch.nn.functional.max_pool1d(padded, reach, stride=1)[0, 0][:flux.numel()]

    def flux_of(w: torch.Tensor) -> torch.Tensor:
        mel = mel_spectrogram(w, mel_cfg)[0]                            # (frames, n_mels)
        return (mel[1:] - mel[:-1]).abs().mean(dim=1)                   # (frames - 1,)

    base = sliding_max(flux_of(wave))
    median = float(base.median())
    ratios = []
    for p in seams:
        if loop:
            shift = n // 2 - p                                          # the seam to the middle
            stat = sliding_max(flux_of(torch.roll(wave, shift)))[(n // 2) // hop]
        else:
            stat = base[min(p // hop, base.numel() - 1)]
        ratios.append((float(stat) + 1e-3) / (median + 1e-3))
    return ratios, median
