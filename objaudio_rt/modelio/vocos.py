"""A Vocos vocoder (Siuzdak 2023, "Vocos: Closing the gap between time-domain and Fourier-based neural
vocoders"): a ConvNeXt backbone at the mel frame rate whose head predicts, per frame, the STFT's
log-magnitude and phase, turned into a waveform by an inverse STFT.

Why beside HiFi-GAN: SynthScenes' bird chirps (30-90 ms tones sweeping through 2-6 kHz, digital
silence between them) come out of the embedded HiFi-GAN as wave packets one mel frame apart, which
the classifier hears as a fire (training/README.md, sixteenth session). Here a chirp's energy is
predicted per frame and overlap-added by a window four frames long, so a tone is a tone even
before its phase is learned well. The pip package `vocos` needs torchaudio and encodec, which this
project does not carry; its backbone is 40 lines, written here from the paper.

    VocosVocoder(config)(mel)    (B, frames, n_mels) log-mel -> (B, frames * hop) waveform

The inverse STFT is matrix products and shifted sums (`overlap_add`), which ONNX, TorchScript and
AOTInductor all take; `istft_reference` is the plain one (torch.fft.irfft and a loop over frames)
it is held to in tests/runtime/test_vocos.py.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import VocoderConfig, VocosConfig


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (k=7) -> LayerNorm -> Linear(dim, inner) -> GELU -> Linear(inner, dim), scaled, residual."""

    def __init__(self, dim: int, inner: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, inner)
        self.pwconv2 = nn.Linear(inner, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:                   # (B, dim, T)
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


def inverse_dft_bases(n_fft: int, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(bins, n_fft) matrices C, S with irfft(re + i im) * window == re @ C + im @ S (even n_fft).
    irfft ignores the imaginary parts of the DC and Nyquist bins; so do these (sin is 0 there)."""
    bins = n_fft // 2 + 1
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None, :]
    angle = 2 * math.pi * k * n / n_fft
    weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
    weight[0] = weight[-1] = 1.0
    w = window.double()[None, :]
    return ((weight * torch.cos(angle) / n_fft * w).float(), (-weight * torch.sin(angle) / n_fft * w).float())


def overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """(B, T, n_fft) windowed frames, n_fft = R * hop -> (B, (T + R - 1) * hop): frame t added at t * hop.
    As R shifted sums of (B, T, hop) slices, not a loop over frames nor `fold` (which ONNX lacks)."""
    b, t, n_fft = frames.shape
    r = n_fft // hop
    parts = frames.reshape(b, t, r, hop)
    out = sum(F.pad(parts[:, :, j], (0, 0, j, r - 1 - j)) for j in range(r))     # (B, T + R - 1, hop)
    return out.reshape(b, (t + r - 1) * hop)


def istft_reference(re: torch.Tensor, im: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """The plain inverse STFT the vocoder's is held to: irfft of each (B, T, bins) frame, windowed,
    added at t * hop, divided by the added squared windows, the first and last (n_fft - hop) / 2
    samples dropped ("same" padding: T frames give T * hop samples)."""
    frames = torch.fft.irfft(torch.complex(re, im), n=n_fft, dim=-1) * window          # (B, T, n_fft)
    b, t, _ = frames.shape
    length = (t - 1) * hop + n_fft
    out = frames.new_zeros(b, length)
    envelope = frames.new_zeros(length)
    for i in range(t):
        out[:, i * hop:i * hop + n_fft] += frames[:, i]
        envelope[i * hop:i * hop + n_fft] += window ** 2
    trim = (n_fft - hop) // 2
    return out[:, trim:length - trim] / envelope[trim:length - trim]


def build_vocoder(config: VocoderConfig) -> nn.Module:
    """The vocoder `config` describes: a VocosVocoder when config.vocos is set, else a SpeechT5HifiGan."""
    return VocosVocoder(config.model_in_dim, config.vocos) if config.vocos is not None else config.build()


class VocosVocoder(nn.Module):
    """(B, frames, n_mels) natural-log mel -> (B, frames * hop) waveform."""

    def __init__(self, n_mels: int, config: VocosConfig):
        super().__init__()
        self.n_fft, self.hop = config.n_fft, config.hop_length
        self.embed = nn.Conv1d(n_mels, config.dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(config.dim, config.intermediate_dim, 1.0 / config.num_layers)
                                    for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.head = nn.Linear(config.dim, self.n_fft + 2)
        window = torch.hann_window(self.n_fft)
        cos_basis, sin_basis = inverse_dft_bases(self.n_fft, window)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("cos_basis", cos_basis, persistent=False)
        self.register_buffer("sin_basis", sin_basis, persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):                  # as Vocos initialises its backbone
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def spectrum(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, frames, n_mels) -> the real and imaginary STFT parts (B, frames, n_fft / 2 + 1)."""
        x = self.embed(mel.transpose(1, 2))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        log_mag, phase = self.head(self.final_norm(x.transpose(1, 2))).chunk(2, dim=-1)
        mag = torch.exp(log_mag).clamp(max=1e2)                          # Vocos' clip: no runaway at the start
        return mag * torch.cos(phase), mag * torch.sin(phase)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        re, im = self.spectrum(mel)
        frames = re @ self.cos_basis + im @ self.sin_basis                  # irfft(...) * window, (B, T, n_fft)
        t = frames.shape[1]
        out = overlap_add(frames, self.hop)
        envelope = overlap_add((self.window ** 2).expand(1, t, self.n_fft), self.hop)
        trim = (self.n_fft - self.hop) // 2               # trimmed before dividing: the envelope's ends are 0
        keep = slice(trim, out.shape[1] - trim)
        return out[:, keep] / envelope[:, keep]
