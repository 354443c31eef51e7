"""Build the engine folder that libobjaudio (csrc/libobjaudio) loads: no Python at run time.

    python -m export.engine --out ENGINE [--checkpoint DIR|tiny-synth|random:PRESET] [--device cpu|cuda]
                            [--no-onnx] [--force]

ENGINE/
    engine.json        every constant the host-side math needs (see `engine_constants`; the noise
                       schedule's betas, from which libobjaudio builds every sampler's table for
                       any step count), the runtime and device the networks were compiled for, and
                       each network's contract
    networks/*.pt2     the five networks the runtime runs, as AOTInductor packages (LibTorch's
                       `torch::inductor::AOTIModelPackageLoader` loads them): image_encoder,
                       grounding_condition, unet, vae_decoder, vocoder; built by the same recipe
                       as the fast backend's UNet packages (export.aoti.compile_package). A
                       guidance-distilled checkpoint's engine has a sixth, guidance_embedding
                       (cfg -> the embedding added to each condition row), and engine.json says
                       "distilled" with the scales it was trained for
                       A model with a silence gate (core/gate.py) carries its small MLP inline in
                       engine.json "silence_gate" (engine format version 4)
    onnx/              the same networks (and the text/grounding-attention graphs) as ONNX, from
                       export.onnx, for hosts that already run ONNX (Unreal NNE, Unity Sentis)
    manifest.json      sha256 of every file above; libobjaudio checks them on open

Shapes: the engine generates clips of the model's `clip_seconds` (the latent length is fixed);
the UNet takes 2..2*MAX_BATCH rows (unconditional rows plus one row per condition; a distilled
UNet 1..2*MAX_BATCH, one row per condition and no unconditional rows), every other network
batch 1. An AOTInductor package holds machine code for the CPU (or GPU) it was compiled on and
works with the torch version it was compiled with: engine.json records both and the library
refuses another torch version or device.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from objaudio_rt.modelio.artifacts import (ENGINE_DISTILLED_NETWORKS, ENGINE_NETWORKS as NETWORKS, MODEL_NETWORKS,
                                          model_fingerprint, write_json_atomic)
from objaudio_rt.modelio.checkpoint import sha256_file
from objaudio_rt.core.errors import check, command
from objaudio_rt.modelio.model import Calibration, ObjaudioModel
from objaudio_rt.core.options import SAMPLERS, max_steps
from objaudio_rt.core.samplers import betas

from .aoti import compile_package
from .common import add_model_args, load_model, model_source
from .contracts import MAX_BATCH, Contract, latent_frames, model_contracts
from .onnx import export_networks

ENGINE_FORMAT = "objaudio-engine"
ENGINE_VERSION = 2           # bump with csrc/libobjaudio/spec.h's kEngineVersion on any layout change
                             # (2: the schedule instead of sampler tables for a few step counts)
DISTILLED_ENGINE_VERSION = 3  # a guidance-distilled model's engine (kDistilledEngineVersion): a library that
                             # reads only version 2 refuses it instead of running it with two-row guidance
GATED_ENGINE_VERSION = 4     # a model with a silence gate, distilled or not (kGatedEngineVersion): engine.json
                             # "silence_gate" holds its weights; a library reading only 2 and 3 refuses it
RUNTIME = "libtorch-aoti"
ENGINE_JSON, MANIFEST = "engine.json", "manifest.json"


# ---- constants ----------------------------------------------------------------------------------
def engine_constants(model: ObjaudioModel, calibration: Calibration) -> dict:
    """What libobjaudio computes on the host, and with which numbers (names as in objaudio_rt)."""
    from objaudio_rt.core.pipeline import Pipeline

    cfg = model.config
    (c, h, w), n_samples = Pipeline.latent_shape(model, cfg.clip_seconds)
    return {
        "audio": {"sample_rate": cfg.mel.sample_rate, "clip_seconds": cfg.clip_seconds, "clip_samples": n_samples,
                  "hop_length": cfg.mel.hop_length, "n_mels": cfg.mel.n_mels, "mel_frames": h * cfg.vae.downsample_factor},
        "latent": {"shape": [c, h, w], "noise": "torch.randn((C, H, W), generator=torch.Generator().manual_seed(seed))"},
        "image": {  # objaudio_rt.modelio.encoders.ImageEncoder.preprocess
            "size": cfg.image.image_size, "patch_size": cfg.image.patch_size,
            "grid": [cfg.image.image_size // cfg.image.patch_size] * 2, "num_patches": cfg.image.num_patches,
            "token_dim": cfg.image.embed_dim, "mean": list(cfg.image.mean), "std": list(cfg.image.std),
            "preprocess": "x = rgb / 255; resize the whole image (no crop) to size x size, bicubic, antialias, "
                          "align_corners false; x = (clamp(x, 0, 1) - mean) / std; layout (1, 3, size, size)"},
        "mask": {  # objaudio_rt.core.images.load_mask + grounding.mask_to_patch_coverage + rescale_patch_weights
            "read": "uint8 / 255 (a mask whose largest value is 1 counts 1 as inside); must match the image size",
            "pool": "area-resize to size x size, then average over each patch_size x patch_size patch (row-major)",
            "rescale": cfg.grounding.mask_rescale, "attn_std": calibration.attn_std,
            "rescale_rule": "p = r / sum(r); s = min(attn_std / std(p), (1/P) / (1/P - min(p))) (s = 1 if std(p) "
                            "= 0); m = 1/P + s (p - 1/P)  ('sum': m = p)",
            "union": "compose: one condition per mask, eps_c = mean of the parts' eps; mask: pixel-wise max"},
        "grounding": {"num_heads": cfg.grounding.num_heads, "cond_dim": cfg.unet.cond_dim,
                      "null_condition": model.null_condition.float().tolist()},
        "vae": {"scaling_factor": cfg.vae.scaling_factor, "nan_guard": "if max |z| > 100: z = clamp(z, -10, 10)",
                "note": "both applied inside the vae_decoder network"},
        "guidance": _guidance_text(cfg.distilled is not None),
        "schedule": {  # objaudio_rt.core.samplers: csrc/libobjaudio/samplers.cpp builds the tables from these
            "num_train_timesteps": cfg.schedule.num_train_timesteps, "beta_start": cfg.schedule.beta_start,
            "beta_end": cfg.schedule.beta_end, "betas": betas(cfg.schedule).tolist(),
            "max_steps": max_steps(cfg.schedule.num_train_timesteps)},
        "samplers": list(SAMPLERS),
        "defaults": {"steps": cfg.default_steps, "sampler": cfg.default_sampler, "cfg": cfg.default_cfg},
        "limits": {"max_rows": 2 * MAX_BATCH, "max_stems": MAX_BATCH},
        **({} if cfg.distilled is None else {"distilled": {"cfg_min": cfg.distilled.cfg_min,
                                                           "cfg_max": cfg.distilled.cfg_max}}),
        **({} if model.silence_gate is None else {"silence_gate": _gate_constants(model)}),
    }


def _gate_constants(model: ObjaudioModel) -> dict:
    """engine.json's "silence_gate": the gate MLP's weights inline (a few thousand numbers; float32 values
    written as the shortest decimal that reads back to the same float) and its threshold."""
    first, last = model.silence_gate.mlp[0], model.silence_gate.mlp[2]
    return {"rule": "p = sigmoid(w2 . silu(W1 c + b1) + b2) per condition row c; p >= threshold is silent: "
                    "the row leaves its composed union, and an item left with no row is zeros (no network run)",
            "hidden_dim": first.out_features, "threshold": model.config.silence_gate.threshold,
            "w1": first.weight.detach().float().flatten().tolist(), "b1": first.bias.detach().float().tolist(),
            "w2": last.weight.detach().float().flatten().tolist(), "b2": [float(last.bias.detach().float()[0])]}


def _guidance_text(distilled: bool) -> str:
    """engine.json's "guidance": the step libobjaudio runs (objaudio_rt.core.denoise.guided_loop)."""
    step = ("x_next = cx x + ce eps + sum_k c_k h_k; x0 = dx x + de eps; "
            "history h = (x0, h_1, .., h_{K-1}), newest first")
    if not distilled:
        return "eps = eps_u + cfg * (eps_c - eps_u); " + step
    return ("guidance-distilled (one UNet row per condition, no unconditional rows): g = guidance_embedding(cfg), "
            "eps = sum over the item's rows r of w_r unet(x, t, c_r + g), and the step at scale 1; " + step)


# ---- networks -----------------------------------------------------------------------------------
def _compile_one(contract: Contract, path: Path, device: torch.device, clip_frames: int) -> None:
    """The contract's wrapper at the engine's shapes, AOTInductor-compiled into `path` (aoti.compile_package)."""
    f = 4   # the VAE's time factor (mel frames per latent frame), as contracts.model_contracts uses
    values = {"B": 1, "B2": 2, "H": clip_frames, "T": f * clip_frames}
    args = tuple(a.to(device) for a in contract.sample_inputs("opt", values=values))
    dynamic = None
    if contract.name == "unet":                 # rows from the contract: 2.. (1.. for a distilled UNet)
        low, _, high = contract.symbols["B2"]
        rows = torch.export.Dim("rows", min=low, max=high)
        dynamic = ({0: rows}, None, {0: rows})
    compile_package(contract.module.to(device).eval(), args, dynamic, path)


def _engine_contract(contract: Contract, clip_frames: int) -> dict:
    d = contract.to_dict()
    d["fixed"] = {"B": 1, "H": clip_frames, "T": 4 * clip_frames}
    d["dynamic"] = {}
    if contract.name == "unet":
        low, _, high = contract.symbols["B2"]
        d["dynamic"] = {"B2": [low, high]}
    return d


def build_engine(model: ObjaudioModel, calibration: Calibration, out: str | os.PathLike, device: str = "cpu",
                 source: str = "", onnx: bool = True, force: bool = False, progress: bool = True) -> dict:
    """Write the engine folder `out` (see the module docstring); returns engine.json's content.

    Everything is built in a temporary sibling folder and renamed into place at the end, so an
    interrupted build never leaves a half-written engine where an old one was."""
    check(device in ("cpu", "cuda"), f"unknown device {device!r}: use cpu or cuda")
    if device == "cuda":
        check(torch.cuda.is_available(), "--device cuda compiles the networks for the GPU of this machine, and "
                                         "this machine has none: build the engine on the GPU machine")
    out = Path(out)
    if out.exists():
        check(force, f"{out} exists: pass --force to replace it, or choose another --out")
        check((out / ENGINE_JSON).is_file() or not any(out.iterdir()),
              f"{out} is not an engine folder: refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part"))
    try:
        model = model.to(device).eval()
        cfg = model.config
        clip_frames = latent_frames(model, cfg.clip_seconds)
        contracts = model_contracts(model)
        (tmp / "networks").mkdir()
        networks = {}
        names = NETWORKS + (ENGINE_DISTILLED_NETWORKS if cfg.distilled is not None else ())
        bar = tqdm(names, desc="compile engine", disable=not progress)
        for name in bar:
            bar.set_postfix_str(name)
            start = time.perf_counter()
            rel = f"networks/{name}.pt2"
            _compile_one(contracts[name], tmp / rel, torch.device(device), clip_frames)
            networks[name] = {"file": rel, "compile_seconds": round(time.perf_counter() - start, 2),
                              "contract": _engine_contract(contracts[name], clip_frames)}
        model = model.cpu()
        if onnx:
            export_networks(model, tmp / "onnx", MODEL_NETWORKS, source=source, progress=progress)
        version = (GATED_ENGINE_VERSION if cfg.silence_gate is not None else
                   ENGINE_VERSION if cfg.distilled is None else DISTILLED_ENGINE_VERSION)
        engine = {"format": ENGINE_FORMAT, "version": version,
                  "runtime": {"name": RUNTIME, "torch_version": torch.__version__.split("+")[0], "device": device},
                  "model": {"name": cfg.name, "source": source, "fingerprint": model_fingerprint(model)},
                  "networks": networks, "onnx": "onnx/export_manifest.json" if onnx else None,
                  **engine_constants(model, calibration)}
        write_json_atomic(tmp / ENGINE_JSON, engine)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        write_json_atomic(tmp / MANIFEST, {"format": f"{ENGINE_FORMAT}-manifest",
                                           "files": {f: sha256_file(tmp / f) for f in files}})
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return engine
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m export.engine", description=__doc__.split("\n")[0])
    add_model_args(p)
    p.add_argument("--out", required=True, help="engine folder to write")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device the networks are compiled for")
    p.add_argument("--no-onnx", action="store_true", help="leave out the ONNX graphs")
    p.add_argument("--force", action="store_true", help="replace an existing engine folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


@command("python -m export.engine")
def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    pipe = load_model(model_source(args), args.seed)
    check(math.isfinite(pipe.calibration.attn_std), "the checkpoint's calibration sigma is not finite")
    start = time.perf_counter()
    build_engine(pipe.model, pipe.calibration, args.out, args.device, pipe.source, onnx=not args.no_onnx,
                 force=args.force, progress=not args.quiet)
    print(f"engine written to {args.out} ({args.device}, {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
