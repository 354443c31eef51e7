"""What half precision costs each network: relative error of fp16 and bf16 against fp32, beside fp32's own.

    python -m benchmarks.precision                                  # the embedded trained model, CPU
    python -m benchmarks.precision --checkpoint CKPT --device cuda --json precision.json

For the UNet (one guided call, batch 2), the VAE decoder and the vocoder of a checkpoint (trained
weights: activations of the real scale), each network runs in float64 (the truth), float32, fp16
and bf16 on the same inputs: a unit-normal latent (what the sampler hands the VAE), and the
float64 VAE's mel for the vocoder. The error is ||out - truth|| / ||truth||; the table marks a
dtype whose error stays under `--budget` (default 1e-2: a chosen engineering bound, not a
listening test). CPU half-precision kernels round like the GPU's in storage but may accumulate
differently: the figures that decide CUDA defaults should come from a `--device cuda` run.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from benchmarks.latency import provenance
from objaudio_rt.modelio.networks import UNetEps
from objaudio_rt.core.errors import command
from objaudio_rt.core.pipeline import Pipeline

DTYPES = {"fp64": torch.float64, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def rel_err(out: torch.Tensor, truth: torch.Tensor) -> float | None:
    out = out.double().cpu()
    return ((out - truth).norm() / truth.norm()).item() if bool(torch.isfinite(out).all()) else None


def measure(net: torch.nn.Module, inputs: tuple, device: torch.device) -> dict:
    """Relative error of each dtype of `net` against its float64 run (non-float inputs pass unchanged)."""
    outs = {}
    for name, dtype in DTYPES.items():
        m = copy.deepcopy(net).to(device=device, dtype=dtype).eval()
        args = [a.to(device, dtype) if a.is_floating_point() else a.to(device) for a in inputs]
        with torch.no_grad():
            outs[name] = m(*args).double().cpu()
    return {name: rel_err(out, outs["fp64"]) for name, out in outs.items() if name != "fp64"}


class VocoderCall(torch.nn.Module):
    def __init__(self, vocoder):
        super().__init__()
        self.vocoder = vocoder

    def forward(self, mel):
        return self.vocoder(mel)


class DecodeCall(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z / self.vae.config.scaling_factor).sample.squeeze(1)      # (B, T, n_mels)


@command("python -m benchmarks.precision")
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder or preset (default: the embedded model)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--budget", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    pipe = Pipeline.from_pretrained(args.checkpoint, device="cpu")
    model, cfg = pipe.model, pipe.model.config
    (c, h, w), _ = pipe.latent_shape(cfg.clip_seconds)
    g = torch.Generator().manual_seed(args.seed)
    z = torch.randn(1, c, h, w, generator=g)                                              # (1, C, H, W)
    x2 = torch.randn(2, c, h, w, generator=g)
    cond2 = torch.randn(2, cfg.unet.cond_dim, generator=g)
    with torch.no_grad():
        mel = DecodeCall(copy.deepcopy(model.vae).double())(z.double()).float()          # (1, T, n_mels)
    results = {"unet": measure(UNetEps(model.unet), (x2, torch.tensor([500]), cond2), device),
               "vae": measure(DecodeCall(model.vae), (z,), device),
               "vocoder": measure(VocoderCall(model.vocoder), (mel,), device)}
    report = {"provenance": provenance(device), "config": {"checkpoint": pipe.source, "budget": args.budget,
                                                           "latent_shape": [1, c, h, w]}, "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"relative error vs float64, {pipe.source}, {report['provenance']['device']} (budget {args.budget:g})")
    print(f"{'network':<10}" + "".join(f"{d:>10}" for d in ("fp32", "fp16", "bf16")))
    for net, errs in results.items():
        cells = ["nan/inf" if e is None else format(e, ".1e") + ("" if e < args.budget else "!") for e in errs.values()]
        print(f"{net:<10}" + "".join(f"{cell:>10}" for cell in cells))
    print("(! marks an error over the budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
