"""Build the ahead-of-time compiled UNet package (AOTInductor) the fast backend loads in seconds.

    python -m export.aoti --device cpu                                   # the embedded model, CPU, fp32
    python -m export.aoti --checkpoint random:audioldm-s --device cuda --dtype fp16 --max-batch 16

One package per checkpoint, device kind, dtype and latent shape (`--frames`: latent frames, default
the model's clip), with the UNet batch dynamic from 2 to 2 x `--max-batch` selections. The UNet is
exported with torch.export and compiled by inductor (`aoti_compile_and_package`); the package and
its sidecar (objaudio_rt.backends.aoti: torch version, platform, checkpoint fingerprint, dtype, shape) go to
the cache the runtime reads (`$OBJAUDIO_CACHE/aoti/<fingerprint>/`) unless `--out` says otherwise,
each written under a temporary name and renamed into place (artifacts.replacing).
Each attention block's q, k and v projections are fused into one (unet_patch.fuse_attention_qkv) before
export. Before the package is published it is loaded back and run against the unfused module.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch

from objaudio_rt.backends.aoti import DTYPES, SIDECAR_FORMAT, expected_sidecar, load_package, package_dir, package_name
from objaudio_rt.modelio.artifacts import model_fingerprint, replacing, write_json_atomic
from objaudio_rt.core.errors import check, command
from objaudio_rt.modelio.model import ObjaudioModel
from objaudio_rt.modelio.networks import UNetEps
from objaudio_rt.core.options import DTYPE_NAMES
from objaudio_rt.backends.unet_patch import fuse_attention_qkv, to_channels_last

from .common import add_model_args, load_model, model_source


def default_frames(model: ObjaudioModel) -> int:
    """Latent frames of the model's default clip (the pipeline's rule, Pipeline.latent_shape)."""
    (_, frames, _), _ = model.config.latent_shape(model.config.clip_seconds)
    return frames


def compile_package(module: torch.nn.Module, args: tuple, dynamic_shapes, path: Path) -> tuple[float, float]:
    """The one AOTInductor recipe of this project, for the fast backend's UNet packages and every network
    of libobjaudio's engine (export.engine): torch.export `module` at `args` (on the device they are on),
    then compile and package it into `path`. Returns (export seconds, compile seconds).

    freezing: weights become constants, so inductor folds them and fuses convolutions with their bias
    and pointwise neighbours (oneDNN post-ops on a CPU). On a CPU every generated kernel records itself
    in torch.profiler, so benchmarks.profile counts it."""
    from torch._inductor import aoti_compile_and_package
    from torch._inductor import config as inductor_config

    t0 = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cpu = args[0].device.type == "cpu"
    with torch.no_grad(), inductor_config.patch({"freezing": True, "cpp.enable_kernel_profile": cpu}):
        aoti_compile_and_package(program, package_path=str(path))
    return export_s, time.perf_counter() - t0


def build_package(model: ObjaudioModel, device: torch.device, dtype: torch.dtype, frames: int, max_batch: int,
                  folder: str | os.PathLike | None = None, source: str = "") -> dict:
    """Export, compile, verify and publish one package. Returns its sidecar (with timings and the check)."""
    check(max_batch >= 1 and frames >= 1, "--max-batch and --frames must be >= 1")
    cfg = model.config
    fingerprint = model_fingerprint(model)
    latent_shape = (cfg.unet.latent_channels, frames, cfg.mel.n_mels // cfg.vae.downsample_factor)
    reference = torch.nn.Module.to(copy.deepcopy(model.unet), device=device, dtype=dtype).eval()   # not diffusers'
    # own .to, which prints a "keep in float32" notice for modules this UNet lacks
    unet = copy.deepcopy(reference)
    fuse_attention_qkv(unet)                  # one GEMM for q, k, v: 2 or 3 fewer calls per attention block
    if device.type == "cuda":
        to_channels_last(unet)
    call = UNetEps(unet)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, *latent_shape, generator=g).to(device, dtype)                       # (2B, C, H, W)
    t = torch.tensor([cfg.schedule.num_train_timesteps // 2], device=device)                 # (1,) int64
    cond = torch.randn(2, cfg.unet.cond_dim, generator=g).to(device, dtype)                  # (2B, cond_dim)
    low = 1 if cfg.distilled is not None else 2          # a guidance-distilled UNet: one row per selection
    unet_batch = torch.export.Dim("unet_batch", min=low, max=2 * max_batch)
    out_dir = package_dir(fingerprint, folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / package_name(device, dtype, latent_shape)
    with replacing(path, suffix=".pt2") as tmp:                   # AOTInductor writes only to a .pt2 name
        export_s, compile_s = compile_package(call, (x, t, cond), {"sample": {0: unet_batch}, "timestep": None,
                                                                   "class_labels": {0: unet_batch}}, tmp)
    sidecar = {"format": SIDECAR_FORMAT, **expected_sidecar(fingerprint, device, dtype, latent_shape),
               "min_unet_batch": low, "max_unet_batch": 2 * max_batch, "source": source,
               "export_s": round(export_s, 2),
               "compile_s": round(compile_s, 2)}
    write_json_atomic(Path(f"{path}.json"), sidecar)
    t0 = time.perf_counter()
    engine = load_package(fingerprint, device, dtype, latent_shape, out_dir)
    sidecar["load_s"] = round(time.perf_counter() - t0, 3)
    xb = torch.cat([x, x.flip(0), x])[:6 if low == 2 else 5]                    # UNet batch 6 (5: odd, for a student)
    cb = torch.cat([cond, cond.flip(0), cond])[:xb.shape[0]]
    with torch.no_grad():
        ref, got = UNetEps(reference)(xb, t, cb).float(), engine(xb, t, cb).float()    # against the unfused UNet
    sidecar["check"] = {"unet_batch": xb.shape[0],
                        "rel_err_vs_module": ((got - ref).norm() / ref.norm()).item()}
    write_json_atomic(Path(f"{path}.json"), sidecar)
    sidecar["path"] = str(path)
    return sidecar


def _parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m export.aoti", description=__doc__.split("\n")[0])
    add_model_args(p)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default=None,
                   help="UNet dtype (default: fp16 on cuda, else fp32)")
    p.add_argument("--frames", type=int, default=None, help="latent frames (default: the model's clip)")
    p.add_argument("--max-batch", type=int, default=16, help="most selections per call (UNet batch 2x this)")
    p.add_argument("--out", default=None, help="package folder (default: the runtime's cache)")
    return p.parse_args(argv)


@command("python -m export.aoti")
def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    device = torch.device(args.device)
    check(device.type in ("cpu", "cuda"), f"--device must be cpu or cuda, got {args.device}")
    check(device.type == "cpu" or torch.cuda.is_available(), "--device cuda but no CUDA device here")
    dtype = DTYPES[args.dtype or ("fp16" if device.type == "cuda" else "fp32")]
    pipe = load_model(model_source(args), args.seed)
    frames = args.frames or default_frames(pipe.model)
    info = build_package(pipe.model, device, dtype, frames, args.max_batch, args.out, pipe.source)
    print(f"{info['path']}\n  {info['platform']}, {info['dtype']}, latent {info['latent_shape']}, UNet batch "
          f"{info['min_unet_batch']}..{info['max_unet_batch']}\n  export {info['export_s']:.1f} s, compile {info['compile_s']:.1f} s, load "
          f"{info['load_s']:.2f} s, rel. error vs module {info['check']['rel_err_vs_module']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
