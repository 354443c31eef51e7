"""What the evaluation's metrics give the real audio, and the real audio re-synthesised by a
checkpoint's vocoder (and VAE): the best any UNet could score through that decoder.

    python -m training.ceiling --checkpoint DIR --ranges S:N,S:N --json PATH [--threads 2]

Per test scene, every `object`, `union` (composed: the two stems summed), `silent` (digital
silence) and `whole` (the mixture) selection of `training.evaluate` gets, in place of a generated
clip, its real target audio through three paths:

    real          the target audio itself
    vocoder       its log-mel (the training frontend: `mel_spectrogram(..., normalize=False)`) through
                  the checkpoint's vocoder
    vae+vocoder   that log-mel through the VAE (encode, mode, decode) and then the vocoder

and each path is scored exactly as `training.evaluate` scores generated clips (`score`, `summarize`:
object accuracy, leakage, union and whole recall, silent accuracy, `leaked_into`, FAD against the
real audio). A generated clip goes through the VAE decoder and the vocoder too, so `vae+vocoder` is
its ceiling: a leakage there is the decoder's, not the UNet's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from objaudio_rt.core.audio import MelConfig, mel_spectrogram
from objaudio_rt.core.errors import check, command
from objaudio_rt.core.threads import use_threads
from objaudio_rt.modelio.checkpoint import load_checkpoint
from objaudio_rt.modelio.networks import VAEDecodeToMel

from .classifier import load_classifier
from .evaluate import DEFAULT_CLASSIFIER, scene_selections, score, summarize, test_seeds
from .synthscenes import generate_scene

PATHS = ("real", "vocoder", "vae+vocoder")
KINDS = ("object", "union", "silent", "whole")
SUMMARY = ("object_accuracy", "leakage", "union_recall", "whole_recall", "silent_accuracy", "fad")


@torch.no_grad()
def resynthesise(model, waves: torch.Tensor, frames: int) -> dict[str, torch.Tensor]:
    """(n, T) real waveforms -> {path: (n, T) waveform} for the three PATHS."""
    vae, vocoder = model.vae.eval(), model.vocoder.eval()
    mel = mel_spectrogram(waves, model.config.mel, normalize=False)[:, :frames]              # (n, frames, n_mels)
    latent = vae.encode(mel[:, None].to(vae.dtype)).latent_dist.mode() * vae.config.scaling_factor
    out = {"real": waves, "vocoder": vocoder(mel), "vae+vocoder": vocoder(VAEDecodeToMel(vae)(latent).float())}
    return {k: torch.nn.functional.pad(v, (0, max(0, waves.shape[1] - v.shape[1])))[:, :waves.shape[1]].float()
            for k, v in out.items()}


def ceiling(checkpoint: str | Path, seeds: list[int], classifier=None) -> dict[str, dict]:
    """{path: training.evaluate's summary} over the scenes of `seeds` (see the module docstring)."""
    model, _ = load_checkpoint(checkpoint)
    check(model.config.mel == MelConfig(), f"{checkpoint}: its mel frontend is not SynthScenes' (MelConfig())")
    classifier = classifier or load_classifier(DEFAULT_CLASSIFIER)
    seconds = model.config.clip_seconds
    n = int(round(seconds * model.config.mel.sample_rate))                           # samples a clip
    frames = n // model.config.mel.hop_length                                        # its mel frames
    clips = {p: [] for p in PATHS}
    for seed in seeds:
        _, items = scene_selections(generate_scene(seed, seconds=seconds), "compose", KINDS)
        real = [it.real[:n] if it.real is not None else np.zeros(n, np.float32) for it in items]
        waves = torch.from_numpy(np.stack(real).astype(np.float32)) if items else torch.zeros(0, n)
        out = resynthesise(model, waves, frames) if items else {p: waves for p in PATHS}
        for p in PATHS:
            clips[p].append(out[p].numpy())
    return {p: summarize(score(classifier, seeds, clips[p], seconds, union_mode="compose", kinds=KINDS),
                         len(seeds), 0, "-", 0.0) for p in PATHS}


@command("python -m training.ceiling")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ceiling", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder whose VAE and vocoder re-synthesise")
    p.add_argument("--ranges", required=True, metavar="S:N,S:N", help="test ranges, as training.evaluate's")
    p.add_argument("--json", type=Path, default=None, help="write {path: summary} here")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    use_threads(args.threads)
    result = ceiling(args.checkpoint, test_seeds(args.ranges))
    print(f"{'path':<12} " + " ".join(f"{k:>16}" for k in SUMMARY))
    for path, summary in result.items():
        print(f"{path:<12} " + " ".join(f"{'-' if summary[k] is None else round(summary[k], 3):>16}" for k in SUMMARY))
        rates = summary["leaked_into"]["rates"]
        print(f"{'':<12} detections per (selection, class): the scene's other classes {rates['other']:.3f}, "
              f"absent classes {rates['absent']:.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "ranges": args.ranges,
                                         "classifier": str(DEFAULT_CLASSIFIER), **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
