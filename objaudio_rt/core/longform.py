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
from .config import VOCODER_CONTEXT
from .errors import check

OVERLAP = 4               # windows overlap by 1/OVERLAP of their length
MAX_WINDOW_ROWS = 32      # UNet rows per call: bounds the memory of a long clip's step
CONTEXT = VOCODER_CONTEXT  # log-mel frames of context on each side of a vocoded block (HiFi-GAN's reach is less;
                           # a Vocos' is checked against it: VocosConfig.reach)


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
        self.guidance_embedding = getattr(inner, "guidance_embedding", None)   # a distilled UNet: one row a step
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
    mel = MelAssembly(windows, factor)
    for k in range(len(windows.starts)):
        mel.add(backend, z, k)
    return mel.mel


class MelAssembly:
    """The log-mel of a windowed latent, built window by window: `add` decodes window k alone (the
    decoder only ever sees a window) and adds it, weighted by `Windows.weights` on the mel axis; a
    frame is final once every window covering it has been added (`final`)."""

    def __init__(self, windows: Windows, factor: int):
        self.windows = windows.scaled(factor)
        self.latent_index = windows.index()                                # (n, W) latent frames
        self.index, self.weights = self.windows.index(), self.windows.weights()   # (n, W f) mel frames
        self.cover = torch.zeros(self.windows.total, dtype=torch.int64).index_add_(
            0, self.index.flatten(), torch.ones(self.index.numel(), dtype=torch.int64))
        self.added = torch.zeros_like(self.cover)
        self.mel: torch.Tensor | None = None                               # (B, frames, n_mels)

    def add(self, backend: Backend, z: torch.Tensor, k: int) -> None:
        """Decodes window k of z (B, C, T, M), whose frames must be final, into the log-mel."""
        mel = backend.decode(z[:, :, self.latent_index[k].to(z.device)])           # (B, W f, n_mels)
        mel = mel * self.weights[k].to(mel.device).view(1, -1, 1)
        if self.mel is None:
            self.mel = torch.zeros(z.shape[0], self.windows.total, mel.shape[-1], dtype=mel.dtype, device=mel.device)
        self.mel.index_add_(1, self.index[k].to(mel.device), mel)
        self.added.index_add_(0, self.index[k], torch.ones(self.index.shape[1], dtype=torch.int64))

    def final(self) -> torch.Tensor:
        """(frames,) bool: the log-mel frames every covering window has been added to."""
        return self.added == self.cover


@dataclass(frozen=True)
class Span:
    """One vocoder call: the log-mel frames [start, start + size) in, the waveform of frames
    [keep, stop) kept (frames modulo the total for a loop)."""
    start: int
    keep: int
    stop: int


def vocoder_size(windows: Windows, factor: int) -> int:
    """The log-mel frames of one vocoder call for these windows: a window's, and at least 4 CONTEXT (a short
    loop's windows are shorter than that; the engine's windows never are)."""
    return max(windows.size * factor, 4 * CONTEXT)


def vocoder_spans(frames: int, size: int, loop: bool, origin: int = 0) -> list[Span]:
    """The vocoder calls that turn a log-mel of `frames` frames into its waveform, each on exactly
    `size` frames (the length the vocoder was built for; an AOTInductor engine runs no other) with
    CONTEXT frames of context before and after what it keeps (none past the ends of a clip; a
    loop's wrap around and its waveform starts at frame `origin`). A clip no longer than `size`
    is one call on the whole of it."""
    if not loop and size >= frames:
        return [Span(0, 0, frames)]
    check(size > 2 * CONTEXT, f"a vocoder span of {size} frames leaves nothing between its contexts")
    spans, keep, end = [], origin, origin + frames
    while keep < end:
        if loop:
            start, stop = keep - CONTEXT, min(end, keep + size - 2 * CONTEXT)
        else:
            start = max(0, min(keep - CONTEXT, frames - size))
            stop = frames if start + size == frames else start + size - CONTEXT
        spans.append(Span(start, keep, stop))
        keep = stop
    return spans


def span_ready(span: Span, size: int, final: torch.Tensor, loop: bool) -> bool:
    """Whether every log-mel frame a span reads is final."""
    n = size if loop else min(size, final.numel())
    return bool(final[torch.arange(span.start, span.start + n) % final.numel()].all())


@torch.no_grad()
def vocode_span(backend: Backend, mel: torch.Tensor, span: Span, size: int, loop: bool, hop: int) -> torch.Tensor:
    """The waveform (B, (stop - keep) * hop) of one span of mel (B, frames, n_mels)."""
    frames = mel.shape[1]
    n = size if loop else min(size, frames)
    idx = torch.arange(span.start, span.start + n, device=mel.device) % frames
    wave = backend.vocode(mel[:, idx])                                              # (B, n * hop)
    lo = (span.keep - span.start) * hop
    return wave[:, lo:lo + (span.stop - span.keep) * hop]


@torch.no_grad()
def vocode_blocks(backend: Backend, mel: torch.Tensor, size: int, loop: bool, hop: int,
                  origin: int = 0) -> Iterator[torch.Tensor]:
    """mel: (B, frames, n_mels). Yields the waveform block after block (`vocoder_spans`), each
    vocoded on `size` frames with its context cut off again."""
    for span in vocoder_spans(mel.shape[1], size, loop, origin):
        yield vocode_span(backend, mel, span, size, loop, hop)


# ---- streaming: the windows in order, each continuing the ones before -----------------------------
def plan_sequential(total: int, size: int, loop: bool) -> Windows | None:
    """Windows for a generation made window after window (a stream): the joint plan for a clip; for a
    loop, evenly spaced windows whose hop is at least (size + overlap) / 2, so that the last one,
    which continues both the one before it and the first, keeps a free middle of at least the
    overlap between them. None for a loop too short for that (it is denoised jointly)."""
    if not loop:
        return Windows.plan(total, size, False)
    size = min(size, total)
    n = math.floor(2 * total / (size + size // OVERLAP))
    if n < 2:
        return None
    return Windows(total, size, tuple(round(i * total / n) for i in range(n)), True)


@dataclass
class Held:
    """Frames of a window that earlier windows made: at every step they are pulled back towards the
    final latent noised to the step's level (inpainting by replacement), with a weight (W,) in [0, 1]
    that is 1 far inside the made part and ramps down towards the free frames, so the window's own
    prediction takes over gradually there and the free frames are denoised to continue the made
    ones. clean, noise: (B, C, W, M); levels: (alpha, sigma) before the first step and after each."""
    weight: torch.Tensor
    clean: torch.Tensor
    noise: torch.Tensor
    levels: list[tuple[float, float]]

    def apply(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """x at level i (0: the start, i: after step i - 1) with the held frames pulled back."""
        a, s = self.levels[i]
        held = self.clean * a + self.noise * s if s > 0 else self.clean
        return torch.lerp(x, held.to(x.dtype), self.weight.to(x.dtype).view(1, 1, -1, 1))


def held_weights(known: torch.Tensor, ramp: int) -> torch.Tensor:
    """(W,) float32: 0 on free frames; on known ones min(1, d / (ramp + 1)), d the distance in frames to
    the nearest free frame (ramp 0: 1 on every known frame, plain replacement)."""
    n = known.numel()
    free = torch.nonzero(~known).flatten()
    if free.numel() == 0:
        return torch.ones(n)
    d = (torch.arange(n)[:, None] - free[None]).abs().min(dim=1).values.float()
    return torch.where(known, torch.clamp(d / (ramp + 1), max=1.0), torch.zeros(n))


def noise_levels(timesteps: list[int], alphas_cumprod) -> list[tuple[float, float]]:
    """(alpha, sigma) of the latent before the first step (at timesteps[0]) and after each step (at the
    next step's t; after the last, the clean latent (1, 0), where every sampler here lands)."""
    ts = [int(t) for t in timesteps]
    out = [(math.sqrt(alphas_cumprod[t]), math.sqrt(1.0 - alphas_cumprod[t])) for t in ts]
    return out + [(1.0, 0.0)]


def sequential_latents(run_window, noise: torch.Tensor, windows: Windows, levels: list[tuple[float, float]],
                       ramp: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Denoises the windows of noise (B, C, T, M) one after another; each window's frames that earlier
    windows made are held (`Held`, weights ramping over `ramp` frames, default size / OVERLAP - 1, so a
    quarter-window overlap is ramped whole and its far frame held exactly) and the window's result
    replaces them. run_window(x, held) runs the guided loop on one window
    (B, C, W, M). Yields (k, latent) after window k: frames covered by windows 0..k and by no later
    window are final."""
    ramp = max(0, windows.size // OVERLAP - 1) if ramp is None else ramp
    z = torch.zeros_like(noise)
    made = torch.zeros(windows.total, dtype=torch.bool)
    for k, idx in enumerate(windows.index()):
        known = made[idx]
        x = noise[:, :, idx]
        held = (Held(held_weights(known, ramp).to(noise.device), z[:, :, idx], x, levels)
                if bool(known.any()) else None)
        z[:, :, idx] = run_window(x.clone(), held).to(z.dtype)
        made[idx] = True
        yield k, z


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
