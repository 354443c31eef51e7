"""`objaudio` command line: generate, demo, info, assemble.

Library errors (ObjaudioError) become one line on stderr and exit code 2 (errors.command, the
wrapper every entry point shares); nothing else prints a traceback for bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import ObjaudioError, check, command
from .options import BACKENDS, DTYPE_NAMES, SAMPLERS, UNION_MODES

DEMO = Path(__file__).parent / "assets" / "demo"


def _pair(text: str, n: int, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ObjaudioError(f"{what} must be {n} comma-separated numbers, got {text!r}") from None
    check(len(values) == n, f"{what} must be {n} comma-separated numbers, got {text!r}")
    return values


def _add_generation_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint folder or preset name (default: the embedded default model)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--sampler", choices=SAMPLERS, default=None)
    p.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--union", choices=UNION_MODES, default=UNION_MODES[0],
                   help="several selections: compose = one condition per object, guidance averaged (default); "
                        "mask = the paper's single union mask")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=None, help="seconds (default: the model's clip length)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--backend", choices=BACKENDS, default="eager",
                   help="eager (the reference), fast (fused kernels; on CUDA an fp16 UNet and a CUDA graph), "
                        "onnxruntime (graphs from `python -m export.onnx --cache`), tensorrt")
    p.add_argument("--unet-dtype", choices=DTYPE_NAMES, default=None,
                   help="the UNet's precision for eager and fast (default: fp32; fast on CUDA: fp16)")
    p.add_argument("--no-cuda-graph", action="store_true", help="fast: run the loop step by step, not as a graph")
    p.add_argument("--onnx-dir", default=None, help="onnxruntime: the export folder (default: the cache folder)")
    p.add_argument("--sam-checkpoint", default=None, help="SAM .pth, needed for --point and --box")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="objaudio", description="Object-aware image-to-audio generation.")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate the sound of selected objects in an image")
    g.add_argument("--image", required=True)
    g.add_argument("--mask", action="append", default=[], help="mask image (repeat for a union)")
    g.add_argument("--point", action="append", default=[], help="x,y click on the object (needs SAM)")
    g.add_argument("--bg-point", action="append", default=[], help="x,y click on background (needs SAM)")
    g.add_argument("--box", action="append", default=[], help="x0,y0,x1,y1 box (needs SAM)")
    g.add_argument("--text", action="append", default=[], help="phrase selecting through the learned attention")
    g.add_argument("--out", required=True, help="output WAV path")
    g.add_argument("--png", default=None, help="overview picture (default: OUT with .png)")
    g.add_argument("--no-png", action="store_true", help="do not write the overview picture")
    _add_generation_flags(g)

    d = sub.add_parser("demo", help="generate sounds for the bundled demo scene")
    d.add_argument("--out", default="demo_out", help="output folder")
    _add_generation_flags(d)

    i = sub.add_parser("info", help="what a checkpoint holds")
    i.add_argument("--checkpoint", default=None)
    i.add_argument("--json", action="store_true", help="print JSON")

    a = sub.add_parser("assemble", help="build a checkpoint from upstream AudioLDM + open_clip weights")
    a.add_argument("--audioldm", required=True, help="AudioLDM folder in diffusers layout")
    a.add_argument("--clip", required=True, help="open_clip ViT-B/32 state dict (.pt/.bin/.safetensors)")
    a.add_argument("--grounding", default=None, help="trained grounding weights (.safetensors); random if absent")
    a.add_argument("--out", required=True)
    a.add_argument("--force", action="store_true")
    return parser


def _selection(args):
    from .selection import Box, Mask, Points, Text

    parts = [Mask(m) for m in args.mask] + [Text(t) for t in args.text]
    parts += [Box(_pair(b, 4, "--box")) for b in args.box]
    if args.point or args.bg_point:
        check(bool(args.point), "--bg-point needs at least one --point on the object")
        coords = [_pair(p, 2, "--point") for p in args.point] + [_pair(p, 2, "--bg-point") for p in args.bg_point]
        parts.append(Points(tuple(coords), (1,) * len(args.point) + (0,) * len(args.bg_point)))
    if not parts:
        return None                                    # the whole scene
    sel = parts[0]
    for p in parts[1:]:
        sel = sel | p
    return sel


def _check_writable(path: Path, force: bool) -> None:
    import os

    if path.exists() and not force:
        raise ObjaudioError(f"{path} already exists: choose another path or pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    check(parent.is_dir(), f"cannot write {path}: folder {parent} does not exist")
    check(os.access(parent, os.W_OK), f"cannot write {path}: folder {parent} is not writable")


def _pipeline(args):
    from .pipeline import Pipeline

    return Pipeline.from_pretrained(args.checkpoint, device=args.device, backend=args.backend,
                                    sam_checkpoint=args.sam_checkpoint, backend_options=_backend_options(args))


def _backend_options(args) -> dict:
    """The backend flags the user gave, as registry options (the registry refuses one a backend lacks)."""
    given = {"unet_dtype": args.unet_dtype, "cuda_graph": False if args.no_cuda_graph else None,
             "onnx_dir": args.onnx_dir}
    return {k: v for k, v in given.items() if v is not None}


def _options(args) -> dict:
    return dict(steps=args.steps, sampler=args.sampler, cfg=args.cfg, seed=args.seed, duration=args.duration,
                union=args.union)


def cmd_generate(args) -> None:
    from .audio import save_wav
    from .viz import save_overview

    out = Path(args.out)
    check(out.suffix.lower() == ".wav", f"--out must end in .wav, got {out}")
    png = None if args.no_png else Path(args.png) if args.png else out.with_suffix(".png")
    _check_writable(out, args.force)
    if png is not None:
        _check_writable(png, args.force)
    selection = _selection(args)
    pipe = _pipeline(args)
    scene = pipe.encode_image(args.image)
    start = time.perf_counter()
    gen = pipe.generate_many(scene, [selection], **_options(args))[0]
    elapsed = time.perf_counter() - start
    save_wav(out, gen.wave, gen.sample_rate, force=args.force)
    if png is not None:
        save_overview(png, scene.image, [(_describe(args), gen)], force=args.force)
    print(f"wrote {out} ({gen.wave.numel() / gen.sample_rate:.2f} s, {gen.sampler} {gen.steps} steps, "
          f"cfg {gen.cfg:g}, seed {gen.seed}, {elapsed:.1f} s)" + (f" and {png}" if png else ""))


def _describe(args) -> str:
    parts = [f"mask {Path(m).name}" for m in args.mask] + [f"text '{t}'" for t in args.text]
    parts += [f"box {b}" for b in args.box] + [f"point {p}" for p in args.point]
    return " | ".join(parts) if parts else "whole scene"


def cmd_demo(args) -> None:
    from .audio import save_wav
    from .selection import Mask, Whole
    from .viz import save_overview

    check((DEMO / "scene.png").is_file(), f"the bundled demo scene is missing from {DEMO}: reinstall objaudio")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    masks = sorted(DEMO.glob("mask_*.png"))
    check(len(masks) > 0, f"no demo masks in {DEMO}")
    meta = json.loads((DEMO / "scene.json").read_text()) if (DEMO / "scene.json").is_file() else {}
    sounding = {c for c, on in zip(meta.get("classes", []), meta.get("sounding", [])) if on}
    names = [m.stem.removeprefix("mask_") for m in masks]
    selections = [(f"object: {n}", f"{n}.wav", Mask(m)) for n, m in zip(names, masks)]
    union_items = [(n, m) for n, m in zip(names, masks) if not sounding or n in sounding][:2]
    if len(union_items) == 2:
        (n0, m0), (n1, m1) = union_items
        selections.append((f"union: {n0} + {n1}", f"{n0}+{n1}.wav", Mask(m0) | Mask(m1)))
    selections.append(("whole scene", "scene.wav", Whole()))
    targets = [out / name for _, name, _ in selections] + [out / "overview.png"]
    for t in targets:
        _check_writable(t, args.force)

    pipe = _pipeline(args)
    print(f"model: {pipe.source}")
    scene = pipe.encode_image(DEMO / "scene.png")
    start = time.perf_counter()
    gens = pipe.generate_many(scene, [s for _, _, s in selections], **_options(args))
    elapsed = time.perf_counter() - start
    for (label, name, _), gen in zip(selections, gens):
        save_wav(out / name, gen.wave, gen.sample_rate, force=args.force)
        print(f"wrote {out / name}  ({label})")
    save_overview(out / "overview.png", scene.image, [(label, g) for (label, _, _), g in zip(selections, gens)],
                  force=args.force)
    print(f"wrote {out / 'overview.png'}  ({len(gens)} generations in {elapsed:.1f} s, "
          f"{gens[0].sampler} {gens[0].steps} steps)")


def cmd_info(args) -> None:
    from .checkpoint import default_checkpoint, describe

    folder = args.checkpoint or default_checkpoint()
    if not Path(folder).exists():
        raise ObjaudioError(f"{folder} is not a checkpoint folder (presets such as {folder!r} have no file to "
                            "describe; save one with Pipeline.save_pretrained)")
    info = describe(folder)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"checkpoint   {info['checkpoint']}")
    print(f"preset       {info['preset']}")
    print(f"parameters   {info['total_parameters'] / 1e6:.2f} M")
    for name, n in info["parameters"].items():
        print(f"  {name:<14}{n / 1e6:>9.3f} M")
    cal = info["calibration"]
    print(f"calibration  attn_mean {cal['attn_mean']:.6f}  attn_std {cal['attn_std']:.6f}  "
          f"({cal['num_samples']} samples)")
    print(f"clip         {info['clip_seconds']:g} s (max {info['max_seconds']:g} s); defaults "
          f"{info['defaults']['sampler']} {info['defaults']['steps']} steps, cfg {info['defaults']['cfg']:g}")
    print("files")
    for rel, digest in info["files"].items():
        print(f"  {digest[:16]}  {rel}")


def cmd_assemble(args) -> None:
    from .upstream import assemble

    out = assemble(args.audioldm, args.clip, args.out, grounding=args.grounding, force=args.force)
    print(f"wrote {out}")


@command("objaudio")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    {"generate": cmd_generate, "demo": cmd_demo, "info": cmd_info, "assemble": cmd_assemble}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
