"""The paper's recipe at scale (`--preset audioldm-s`): fine-tune AudioLDM-S with the grounding module.

    python -m training.train --preset audioldm-s --out DIR --manifest data.jsonl \\
        --audioldm AUDIOLDM_S_DIFFUSERS_DIR --clip OPEN_CLIP_VIT_B32_STATE_DICT [--stage all|preprocess|ldm]
    torchrun --nproc_per_node 8 [--nnodes N ...] -m training.train --preset audioldm-s ...   (DDP)

1. init: the upstream weights are assembled into an objaudio checkpoint (objaudio_rt.modelio.upstream:
   AudioLDM diffusers folder -> UNet, VAE, HiFi-GAN, CLAP text tower + tokenizer; open_clip
   state dict -> ViT; sizes read from the weights), DIR/init, and loaded from there.
2. preprocess (`--stage preprocess`, rank 0): every manifest item is encoded once with the frozen
   networks: audio -> 16 kHz mono (objaudio_rt.core.audio.load_wav), padded / truncated to the clip
   length -> AudioLDM log-mel -> VAE latent (mean, times the scaling factor); image (or video
   frame) -> CLIP patch tokens; caption -> CLAP text_embeds. Cached in DIR/cache/latents.safetensors.
3. ldm: grounding + UNet trained jointly (training/train_ldm.py) with the paper's settings: lr 1e-4,
   AdamW (0.95, 0.999), eps 1e-6, weight decay 1e-3, condition dropped 10 %; no SynthScenes
   auxiliaries (there are no masks). CLIP, CLAP, VAE and HiFi-GAN stay frozen. Then calibration
   on the training set and DIR/model, the final checkpoint (rank 0).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from objaudio_rt.modelio.checkpoint import load_checkpoint, save_checkpoint
from objaudio_rt.core.errors import check
from objaudio_rt.modelio.model import ObjaudioModel
from objaudio_rt.modelio.upstream import assemble

from .data import load_item, read_manifest
from .train_components import StageBudget
from .train_ldm import LatentSet, LdmConfig, calibrate, train_ldm


def clip_frames(seconds: float, factor: int) -> int:
    """Mel frames of a clip (100 per second), rounded up to the VAE's downsampling factor."""
    frames = int(round(seconds * 100))
    return -(-frames // factor) * factor


@torch.no_grad()
def preprocess(model: ObjaudioModel, manifest: Path, seconds: float, device: torch.device,
               batch: int = 16) -> LatentSet:
    """Encode every manifest item with the frozen CLIP, CLAP and VAE (see the module docstring)."""
    from tqdm.auto import tqdm

    items = read_manifest(manifest)
    vae, img, text = (m.to(device).eval() for m in (model.vae, model.image_encoder, model.text_encoder))
    frames = clip_frames(seconds, model.config.vae.downsample_factor)
    latents, tokens, embeds = [], [], []
    for start in tqdm(range(0, len(items), batch), desc="preprocess"):
        chunk = items[start:start + batch]
        loaded = [load_item(it, seconds, frames) for it in chunk]
        mel = torch.stack([m for _, m in loaded])                                    # (B, frames', 64)
        mel = torch.nn.functional.pad(mel, (0, 0, 0, frames - mel.shape[1]), value=float(mel.min()))
        z = vae.encode(mel[:, None].to(device)).latent_dist.mode() * vae.config.scaling_factor
        latents.append(z.cpu())                                                      # (B, C, frames/f, 64/f)
        pixels = torch.cat([img.preprocess(torch.from_numpy(np.array(im))[None]) for im, _ in loaded])
        tokens.append(img(pixels.to(device)).cpu())                                  # (B, P, L)
        embeds.append(text.encode([it.caption for it in chunk], device).cpu())       # (B, Lq)
    n = len(items)
    return LatentSet(latents=torch.cat(latents), text=torch.cat(embeds), tokens=torch.cat(tokens),
                     ex_scene=torch.arange(n))


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return dist.get_rank(), world, torch.device("cuda", local)
    dist.init_process_group("gloo")
    return dist.get_rank(), world, torch.device("cpu")


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def train_real(args: argparse.Namespace) -> Path:
    for name in ("manifest", "audioldm", "clip"):
        check(getattr(args, name) is not None, f"--preset audioldm-s needs --{name}")
    check(args.stage in ("all", "preprocess", "ldm"), "--preset audioldm-s stages: all, preprocess, ldm")
    rank, world, device = _setup_distributed()
    start = time.time()
    out: Path = args.out
    init, cache = out / "init", out / "cache" / "latents.safetensors"
    try:
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            (out / "logs").mkdir(exist_ok=True)
            if not (init / "config.json").is_file():
                assemble(args.audioldm, args.clip, init, force=True)
        _barrier(world)
        model, _ = load_checkpoint(init)
        seconds = args.clip_seconds or model.config.clip_seconds
        model.config.clip_seconds = seconds
        if rank == 0 and args.stage in ("all", "preprocess") and not cache.is_file():
            cache.parent.mkdir(exist_ok=True)
            preprocess(model, args.manifest, seconds, device).save(cache)
        _barrier(world)
        if args.stage == "preprocess":
            return cache
        check(cache.is_file(), f"{cache} is missing: run --stage preprocess first")
        data = LatentSet.load(cache)
        budget = StageBudget(seconds=max(1.0, args.budget_minutes * 60 - (time.time() - start)),
                             max_steps=args.max_steps, batch_size=args.batch_size or 8)
        torch.manual_seed(args.seed)
        metrics = train_ldm(model, data, budget, LdmConfig(), out / "logs" / "ldm.csv", device, args.seed,
                            resume=out / "ldm.partial.safetensors")
        if rank == 0:
            calibration = calibrate(model, data, device, num=4096)
            final = save_checkpoint(model.to("cpu").eval(), calibration, out / "model", force=True)
            metrics["calibration"] = calibration.to_dict()
            metrics["wall_seconds"] = round(time.time() - start, 1)
            (out / "summary.json").write_text(json.dumps({"preset": "audioldm-s", "world_size": world,
                                                          "seed": args.seed, "ldm": metrics}, indent=2))
            print(f"[train] checkpoint written to {final}", file=sys.stderr)
        _barrier(world)
        return out / "model"
    finally:
        if world > 1:
            dist.destroy_process_group()
