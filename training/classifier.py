"""A small sound classifier for SynthScenes: this project's stand-in for PANNs.

It judges generated audio (which class sounds?) and gives the embeddings for FAD. A CNN over the
AudioLDM log-mel (`objaudio_rt.core.audio.mel_spectrogram`), any input length (global pooling over
time), 8 sigmoid outputs, one per sounding class: multi-label, so "nothing sounds" is all
outputs below 0.5.

Level: AudioLDM's frontend peak-normalises every clip to 0.5, which would blow near-silence up
into full-scale noise. `classifier_mel` therefore scales by 0.5 / max(peak, silence_peak): clips
louder than `silence_peak` (0.01) are normalised as AudioLDM does, quieter ones keep their level.

Training (`train_classifier`) draws single stems, mixtures of 2-3 stems (multi-hot targets) and
negatives (digital silence, faint noise, stationary coloured noise at any level; all-zero
targets) from the train split, with augmentation so that audio smeared by a VAE + vocoder still
classifies: random gain, added noise, time crops, Gaussian blur, low-pass and noise on the mel.

    python -m training.classifier --steps 1500 --seed 0 --out training/assets/classifier.safetensors
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from objaudio_rt.core.audio import MelConfig, mel_spectrogram
from objaudio_rt.core.errors import command
from objaudio_rt.core.threads import use_threads

from .synthscenes import SOUNDING_CLASSES, generate_scene, split_seeds, synth_sound


@dataclass(frozen=True)
class ClassifierConfig:
    classes: tuple[str, ...] = SOUNDING_CLASSES
    channels: tuple[int, ...] = (16, 32, 48, 64)   # one 3x3 conv block each; 2x2 pooling after all but the last
    embed_dim: int = 128
    silence_peak: float = 0.01
    sample_rate: int = 16000


def classifier_mel(wave: torch.Tensor, silence_peak: float = 0.01, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """Log-mel as AudioLDM computes it, but level-preserving below `silence_peak`.

    wave: (T,) or (B, T). Returns (B, frames, n_mels).
    """
    wave = wave.float().reshape(-1, wave.shape[-1])
    wave = wave - wave.mean(dim=-1, keepdim=True)
    peak = wave.abs().amax(dim=-1, keepdim=True)
    return mel_spectrogram(wave * (0.5 / peak.clamp(min=silence_peak)), cfg, normalize=False)


class SoundClassifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig = ClassifierConfig(), n_mels: int = 64):
        super().__init__()
        self.cfg = cfg
        self.bn0 = nn.BatchNorm1d(n_mels)                            # per-band input normalisation (as PANNs)
        blocks, c_in = [], 1
        for i, c_out in enumerate(cfg.channels):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            if i < len(cfg.channels) - 1:
                blocks.append(nn.AvgPool2d(2))
            c_in = c_out
        self.convs = nn.Sequential(*blocks)
        bands = n_mels // 2 ** (len(cfg.channels) - 1)
        self.fc = nn.Linear(2 * c_in * bands, cfg.embed_dim)
        self.head = nn.Linear(cfg.embed_dim, len(cfg.classes))

    def embed_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, frames, n_mels) -> penultimate features (B, embed_dim)."""
        x = self.bn0(mel.transpose(1, 2)).unsqueeze(1)               # (B, 1, n_mels, frames)
        x = self.convs(x)                                            # (B, C, bands, frames / 8)
        x = x.flatten(1, 2)                                          # (B, C * bands, frames / 8)
        x = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)       # global pooling over time
        return F.relu(self.fc(x))

    def forward_mel(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed_mel(mel))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave (B, T) or (T,) at 16 kHz, any length over 512 samples -> logits (B, n_classes)."""
        return self.forward_mel(classifier_mel(wave, self.cfg.silence_peak))

    @torch.no_grad()
    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, embed_dim) of waves (B, T): the FAD embedding."""
        return self.embed_mel(classifier_mel(wave, self.cfg.silence_peak))

    @torch.no_grad()
    def predict(self, wave: torch.Tensor, threshold: float = 0.5) -> list[list[str]]:
        """Names of the classes heard in each wave (empty list: nothing sounds)."""
        probs = torch.sigmoid(self(wave))
        return [[self.cfg.classes[i] for i in torch.nonzero(row > threshold).flatten().tolist()] for row in probs]


def save_classifier(model: SoundClassifier, path: str | Path, extra: dict | None = None) -> Path:
    """Weights to `path` (safetensors), config (and `extra`) to the same name with .json."""
    from safetensors.torch import save_file

    path = Path(path)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
    config = {"config": asdict(model.cfg), **(extra or {})}
    path.with_suffix(".json").write_text(json.dumps(config, indent=2) + "\n")
    return path


def load_classifier(path: str | Path) -> SoundClassifier:
    """Load a classifier written by `save_classifier`, in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    raw = json.loads(path.with_suffix(".json").read_text())["config"]
    cfg = ClassifierConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    model = SoundClassifier(cfg)
    model.load_state_dict(load_file(str(path)))
    return model.eval()


# --------------------------------------------------------------------------------------------
# Training data
# --------------------------------------------------------------------------------------------

class StemPool:
    """Train-split stems per class, some cut to a random window (as in "and then" scenes)."""

    def __init__(self, per_class: int, n_samples: int, seed: int, sample_rate: int = 16000):
        seeds = split_seeds("train", per_class * len(SOUNDING_CLASSES), start=5_000_000 + 100_000 * seed)
        self.stems = np.zeros((len(SOUNDING_CLASSES), per_class, n_samples), dtype=np.float32)  # (C, P, T)
        for i, s in enumerate(seeds):
            c, p = divmod(i, per_class)
            rng = np.random.default_rng(s)
            wave = synth_sound(SOUNDING_CLASSES[c], rng, n_samples, sample_rate)
            if rng.random() < 0.3:
                start = rng.uniform(0, 0.5) * n_samples
                end = start + rng.uniform(0.3, 0.9) * n_samples
                t = np.arange(n_samples)
                wave = wave * ((t >= start) & (t < end))
            self.stems[c, p] = wave


def _coloured_noise(rng, n: int) -> np.ndarray:
    """White, pink or brown stationary noise with unit peak. (T,) float32."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    spectrum = spectrum * freqs ** (-0.5 * rng.integers(0, 3))
    noise = np.fft.irfft(spectrum, n)
    return (noise / np.abs(noise).max()).astype(np.float32)


def make_batch(pool: StemPool, rng: np.random.Generator, batch: int, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Waves (B, crop) and multi-hot targets (B, C): singles, 2-3 stem mixtures and negatives."""
    n_classes, per_class, n_samples = pool.stems.shape
    waves = np.zeros((batch, crop), dtype=np.float32)
    targets = np.zeros((batch, n_classes), dtype=np.float32)
    for b in range(batch):
        kind = rng.random()
        start = rng.integers(0, n_samples - crop + 1)
        if kind < 0.15:                                              # negative: silence or noise
            level = 10 ** rng.uniform(-5, -0.3) if rng.random() < 0.8 else 0.0
            waves[b] = level * _coloured_noise(rng, crop)
            continue
        k = 1 if kind < 0.6 else int(rng.integers(2, 4))
        for c in rng.choice(n_classes, k, replace=False):
            stem = pool.stems[c, rng.integers(per_class)]
            piece = stem[start:start + crop] * 10 ** (rng.uniform(-10, 0) / 20)
            waves[b] += piece
            # A class is present if its crop holds a fair share of the stem's energy.
            targets[b, c] = float(np.sqrt(np.mean(stem[start:start + crop] ** 2)) > 0.25 * np.sqrt(np.mean(stem ** 2)))
        peak = np.abs(waves[b]).max() + 1e-8
        waves[b] *= 10 ** rng.uniform(-2.5, 0) / peak                 # overall level: peak in [0.003, 1]
        if rng.random() < 0.5:                                       # background noise, 15-40 dB below
            rms = np.sqrt(np.mean(waves[b] ** 2))
            waves[b] += rms * 10 ** (-rng.uniform(15, 40) / 20) * rng.standard_normal(crop).astype(np.float32)
    return waves, targets


def augment_mel(mel: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Smear log-mels (B, frames, n_mels) as a VAE + vocoder might: blur, low-pass, noise.

    Each augmentation hits a random half (or third) of the batch; the blur width is drawn per batch.
    """
    batch, _, n_mels = mel.shape
    pick = torch.rand(batch, 4, generator=gen)                      # (B, 4) per-sample draws
    sigma_t, sigma_f = (0.3 + 1.7 * torch.rand(2, generator=gen)).tolist()
    out = torch.where((pick[:, 0] < 0.5)[:, None, None], _blur_mel(mel, sigma_t, sigma_f), mel)
    cutoff = 40 + (pick[:, 3] * (n_mels - 40)).long()                # low-pass: damp the bands above
    damp = (torch.arange(n_mels)[None, :] >= cutoff[:, None]) & (pick[:, 1] < 0.3)[:, None]   # (B, n_mels)
    out = torch.where(damp[:, None, :], torch.clamp(out - 2 - 4 * pick[:, 2, None, None], min=float(np.log(1e-5))), out)
    noise_scale = 0.3 * pick[:, 2] * (pick[:, 2] < 0.5)              # log-domain noise
    return out + noise_scale[:, None, None] * torch.randn(out.shape, generator=gen)


def _blur_mel(mel: torch.Tensor, sigma_t: float, sigma_f: float) -> torch.Tensor:
    """Gaussian blur of log-mels (B, frames, n_mels) along time and frequency."""
    x = mel[:, None]
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), _gauss(sigma_f).view(1, 1, 1, 5))
    x = F.conv2d(F.pad(x, (0, 0, 3, 3), mode="replicate"), _gauss(sigma_t, 7).view(1, 1, 7, 1))
    return x[:, 0]


def _lowpass(wave: torch.Tensor, cutoff_hz: float, sample_rate: int = 16000) -> torch.Tensor:
    """Brick-wall low-pass of waves (B, T)."""
    spectrum = torch.fft.rfft(wave)
    spectrum[..., torch.fft.rfftfreq(wave.shape[-1], 1 / sample_rate) > cutoff_hz] = 0
    return torch.fft.irfft(spectrum, wave.shape[-1])


def _gauss(sigma: float, size: int = 5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_classifier(model: SoundClassifier, n_scenes: int = 200, split: str = "test") -> dict:
    """Top-1 accuracy on single stems, multi-label F1 on mixtures, false alarms on silence."""
    model.eval()
    stems, labels, mixtures, truth = [], [], [], []
    for seed in split_seeds(split, n_scenes):
        scene = generate_scene(seed)
        sounding = [c for c, s in zip(scene.classes, scene.sounding) if s]
        stems += list(scene.stems)
        labels += [SOUNDING_CLASSES.index(c) for c in sounding]
        mixtures.append(scene.mixture)
        truth.append([float(c in sounding) for c in SOUNDING_CLASSES])
    stems_t, labels_t = torch.from_numpy(np.stack(stems)), torch.tensor(labels)

    def top1_of(mel_fn) -> float:
        logits = torch.cat([model.forward_mel(mel_fn(stems_t[i:i + 64])) for i in range(0, len(stems), 64)])
        return (logits.argmax(dim=1) == labels_t).float().mean().item()

    def mel(wave):
        return classifier_mel(wave, model.cfg.silence_peak)

    gen = torch.Generator().manual_seed(0)
    degraded = {   # smeared inputs the classifier must survive (a stand-in for VAE + vocoder output)
        "lowpass_4k": lambda w: mel(_lowpass(w, 4000.0)),
        "noise_20db": lambda w: mel(w + w.std(dim=-1, keepdim=True) * 0.1 * torch.randn(w.shape, generator=gen)),
        "mel_blur": lambda w: _blur_mel(mel(w), 1.5, 1.0),
    }
    top1 = top1_of(mel)
    top1_degraded = {name: top1_of(fn) for name, fn in degraded.items()}
    pred = torch.cat([torch.sigmoid(model(torch.from_numpy(np.stack(mixtures[i:i + 64])))) > 0.5
                      for i in range(0, len(mixtures), 64)]).float()
    true = torch.tensor(truth)
    tp, fp, fn = (pred * true).sum(), (pred * (1 - true)).sum(), ((1 - pred) * true).sum()
    rng = np.random.default_rng(0)
    silent = torch.from_numpy(np.stack([np.zeros(40960, np.float32)] +
                                       [10 ** rng.uniform(-5, -2.5) * _coloured_noise(rng, 40960) for _ in range(31)]))
    silence_alarm = (torch.sigmoid(model(silent)) > 0.5).any(dim=1).float().mean().item()
    return {"stem_top1": top1, "stem_top1_degraded": top1_degraded, "n_stems": len(stems), "mixture_f1": (2 * tp / (2 * tp + fp + fn)).item(),
            "mixture_exact": (pred == true).all(dim=1).float().mean().item(), "n_mixtures": len(mixtures),
            "silence_false_alarm": silence_alarm}


def train_classifier(steps: int, seed: int, out_path: str | Path | None = None, batch_size: int = 32,
                     per_class: int = 120, crop_seconds: float = 1.0, lr: float = 2e-3,
                     eval_scenes: int = 200, log_every: int = 100) -> tuple[SoundClassifier, dict]:
    """Train from scratch on the train split; evaluate on the test split; save if `out_path`."""
    t0 = time.time()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    pool = StemPool(per_class, 40960, seed)
    model = SoundClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    crop = int(crop_seconds * 16000)
    model.train()
    for step in range(1, steps + 1):
        waves, targets = make_batch(pool, rng, batch_size, crop)
        mel = augment_mel(classifier_mel(torch.from_numpy(waves), model.cfg.silence_peak), gen)
        loss = F.binary_cross_entropy_with_logits(model.forward_mel(mel), torch.from_numpy(targets))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps:
            print(f"step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    train_seconds = time.time() - t0
    metrics = evaluate_classifier(model, eval_scenes)
    info = {"steps": steps, "seed": seed, "batch_size": batch_size, "train_wall_seconds": round(train_seconds),
            "torch_threads": torch.get_num_threads(), "test_metrics": metrics}
    if out_path is not None:
        save_classifier(model, out_path, info)
    return model.eval(), info


@command("python -m training.classifier")
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the SynthScenes sound classifier.")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, 1 to the cores this process may use (1 is fastest on a shared machine)")
    parser.add_argument("--evaluate-only", action="store_true", help="evaluate the classifier at --out; no training")
    args = parser.parse_args(argv)
    use_threads(args.threads)
    if args.evaluate_only:
        print(json.dumps(evaluate_classifier(load_classifier(args.out)), indent=2))
        return
    _, info = train_classifier(args.steps, args.seed, args.out)
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    sys.exit(main())
