"""AudioLDM's mel frontend and WAV output.

The frontend reproduces AudioLDM 1 (see ARCHITECTURE.md, "Mel frontend"): 16 kHz mono,
waveform mean-removed and peak-normalised to 0.5, reflect-padded STFT (n_fft 1024, hop 160,
Hann window 1024), magnitude, librosa-style Slaney mel basis (64 bands, 0-8000 Hz),
`log(clamp(x, 1e-5))`. 100 frames per second: 1024 frames are 10.24 s.

A written WAV is the model's 16 kHz unless asked for another rate (`resample`, through libsoxr).
"""
from __future__ import annotations

import math
import os
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .config import MelConfig
from .errors import ObjaudioError, check
from .options import WAV_FORMATS, check_sample_rate


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / f_sp
    log_region = hz >= min_log_hz
    mel[log_region] = min_log_mel + np.log(hz[log_region] / min_log_hz) / logstep
    return mel


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * f_sp
    log_region = mel >= min_log_mel
    hz[log_region] = min_log_hz * np.exp(logstep * (mel[log_region] - min_log_mel))
    return hz


@lru_cache(maxsize=8)
def mel_basis(cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """Slaney-normalised triangular mel filters, as `librosa.filters.mel(htk=False, norm='slaney')`.

    Returns (n_mels, n_fft // 2 + 1) float32.
    """
    n_freqs = cfg.n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, cfg.sample_rate / 2, n_freqs)
    mel_points = np.linspace(_hz_to_mel_slaney(np.array([cfg.f_min]))[0],
                             _hz_to_mel_slaney(np.array([cfg.f_max]))[0], cfg.n_mels + 2)
    hz_points = _mel_to_hz_slaney(mel_points)
    fdiff = np.diff(hz_points)
    ramps = hz_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_points[2:cfg.n_mels + 2] - hz_points[:cfg.n_mels]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def normalize_waveform(wave: torch.Tensor) -> torch.Tensor:
    """AudioLDM's pre-analysis normalisation: remove the mean, scale the peak to 0.5."""
    wave = wave - wave.mean(dim=-1, keepdim=True)
    peak = wave.abs().amax(dim=-1, keepdim=True)
    return 0.5 * wave / (peak + 1e-8)


MEL_FLOOR = 1e-5          # the log-mel's clamp: log(MEL_FLOOR) is what digital silence reads as


def mel_spectrogram(wave: torch.Tensor, cfg: MelConfig = MelConfig(), normalize: bool = True) -> torch.Tensor:
    """Log-mel spectrogram of a waveform.

    wave: (T,) or (B, T) float at cfg.sample_rate. Returns (B, frames, n_mels) with
    frames = T // hop + 1 (centre padding), float32.
    """
    check(wave.ndim in (1, 2), f"waveform must be (T,) or (B, T), got shape {tuple(wave.shape)}")
    check(bool(torch.isfinite(wave).all()), "waveform contains NaN or inf: clean the audio first")
    wave = wave.float().reshape(-1, wave.shape[-1])
    check(wave.shape[-1] > cfg.n_fft // 2, f"waveform too short: needs more than {cfg.n_fft // 2} samples")
    if normalize:
        wave = normalize_waveform(wave)
    window = torch.hann_window(cfg.win_length, device=wave.device)
    spec = torch.stft(wave, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                      window=window, center=True, pad_mode="reflect", return_complex=True)
    magnitude = spec.abs()                                     # (B, n_fft/2+1, frames)
    mel = mel_basis(cfg).to(wave.device) @ magnitude           # (B, n_mels, frames)
    return torch.log(torch.clamp(mel, min=MEL_FLOOR)).transpose(1, 2)


def load_wav(path: str | os.PathLike, sample_rate: int = 16000) -> torch.Tensor:
    """Read an audio file as mono float32 at `sample_rate` (polyphase resampling if needed)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    path = Path(path)
    check(path.is_file(), f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt files
        raise ObjaudioError(f"cannot read audio file {path}: {exc}") from None
    mono = data.mean(axis=1)
    if sr != sample_rate:
        g = math.gcd(int(sr), sample_rate)
        mono = resample_poly(mono, sample_rate // g, int(sr) // g).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(mono))


def resample(wave: torch.Tensor | np.ndarray, sample_rate: int, rate: int, loop: bool = False) -> np.ndarray:
    """(T,) samples at `sample_rate` -> (round(T * rate / sample_rate),) float32 at `rate`, through libsoxr
    at its very high quality setting (a linear-phase band-limited resampler; 16 kHz -> 48 kHz keeps the
    model's 0-8 kHz and adds nothing above it). The same samples give the same result every run.

    `loop`: the samples repeat (a seamless loop); they are resampled as one period of that repetition
    (one second of the loop wrapped on to each end, and cut off again at the new rate), so the filter
    sees the start after the end and the resampled loop has no click at its seam."""
    import soxr

    check_sample_rate(rate, "the sample rate")
    data = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    data = np.ascontiguousarray(data, dtype=np.float32).reshape(-1)
    if rate == sample_rate:
        return data
    if not loop:
        return np.ascontiguousarray(soxr.resample(data, sample_rate, rate, quality="VHQ"), dtype=np.float32)
    pad = sample_rate                                     # one second: `rate` samples at the new rate
    wrapped = np.take(data, np.arange(-pad, data.size + pad), mode="wrap")
    out = soxr.resample(wrapped, sample_rate, rate, quality="VHQ")
    return np.ascontiguousarray(out[rate: rate + round(data.size * rate / sample_rate)], dtype=np.float32)


def wav_bytes(wave: torch.Tensor | np.ndarray, sample_rate: int = 16000, fmt: str = "float",
              rate: int | None = None, loop: bool = False) -> bytes:
    """A mono WAV file's bytes: "float" (32-bit IEEE float, the model's samples unchanged) or "pcm16"
    (16-bit integers, clipped to [-1, 1], readable by every player and Python's `wave` module).
    `rate`: the file's sample rate, the samples resampled to it (`resample`); None keeps `sample_rate`.
    `loop`: the samples are a seamless loop: resampled as one (`resample(loop=True)`), and the file
    carries a `smpl` chunk with one forward loop over all of them, which samplers and game engines
    (FMOD, Wwise, Unity, Unreal) read to loop the sound by themselves.

    The header is written here, field by field, so the same samples always give the same bytes
    (libsndfile adds a PEAK chunk with a timestamp).
    """
    check(fmt in WAV_FORMATS, f"unknown WAV format {fmt!r}: use one of {', '.join(WAV_FORMATS)}")
    data = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    data = data.astype(np.float32).reshape(-1)
    check(data.size > 0, "refusing to write a WAV with no samples")
    check(bool(np.isfinite(data).all()), "refusing to write a waveform with NaN or inf samples")
    if rate is not None and rate != sample_rate:
        data, sample_rate = resample(data, sample_rate, rate, loop=loop), rate
    if fmt == "pcm16":
        samples = np.round(np.clip(data, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        fmt_chunk = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)      # PCM
        chunks = [(b"fmt ", fmt_chunk), (b"data", samples)]
    else:
        samples = data.astype("<f4").tobytes()
        fmt_chunk = struct.pack("<HHIIHHH", 3, 1, sample_rate, sample_rate * 4, 4, 32, 0)  # IEEE float
        chunks = [(b"fmt ", fmt_chunk), (b"fact", struct.pack("<I", data.size)), (b"data", samples)]
    if loop:
        chunks.append((b"smpl", smpl_chunk(data.size, sample_rate)))
    body = b"".join(tag + struct.pack("<I", len(c)) + c + b"\0" * (len(c) % 2) for tag, c in chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def smpl_chunk(samples: int, sample_rate: int) -> bytes:
    """A RIFF `smpl` chunk's body: MIDI unity note 60, no SMPTE offset, one forward loop over samples
    [0, samples - 1], played forever (play count 0)."""
    header = struct.pack("<9I", 0, 0, round(1e9 / sample_rate), 60, 0, 0, 0, 1, 0)
    return header + struct.pack("<6I", 0, 0, 0, samples - 1, 0, 0)


def save_wav(path: str | os.PathLike, wave: torch.Tensor | np.ndarray, sample_rate: int = 16000,
             force: bool = False, fmt: str = "float", rate: int | None = None, loop: bool = False) -> Path:
    """Write a mono WAV atomically (see `wav_bytes`; `rate` resamples, e.g. to 48000); never overwrites
    an existing file unless `force`."""
    from ..frontends.outputs import write_together

    return write_together([(path, wav_bytes(wave, sample_rate, fmt, rate, loop))], force=force)[0]
