"""`objaudio` command line: generate, batch, demo, info, assemble, serve.

Library errors (ObjaudioError) become one line on stderr and exit code 2 (errors.command, the
wrapper every entry point shares); nothing else prints a traceback for bad input. A flag argparse
cannot parse (`--steps abc`, `--sampler euler`) is one of them too: `Parser.error` raises it instead
of printing the usage block.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from ..core.errors import ObjaudioError, check, command
from ..core.options import BACKEND_CHOICES, DTYPE_NAMES, GUIDANCE, SAMPLERS, UNION_MODES, add_path_flags

DEMO = Path(__file__).parents[1] / "assets" / "demo"


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as ObjaudioError: one line `objaudio: error: ...` and exit 2 through
    errors.command, as for every other bad input (argparse alone prints the usage and its own prefix).
    Subcommand parsers are of this class too (add_subparsers makes them with the parent's class)."""

    def error(self, message: str):
        raise ObjaudioError(f"{message} (see {self.prog} --help)")


def _integer(text: str) -> int:
    """An argparse type: a plain integer, said so when it is not (1e30, 2.5, abc)."""
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _add_generation_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint folder, the embedded model's name tiny-synth (the default), or random:PRESET "
                        "for random weights (random:tiny, random:tiny-synth, random:audioldm-s)")
    add_path_flags(p)
    p.add_argument("--steps", type=_integer, default=None, help="denoising steps, 1-999 (default: the model's)")
    p.add_argument("--sampler", choices=SAMPLERS, default=None)
    p.add_argument("--cfg", type=_number, default=None,
                   help="classifier-free guidance scale, 1-100 (default: the model's; tiny-synth: 4)")
    p.add_argument("--union", choices=UNION_MODES, default=UNION_MODES[0],
                   help="several selections: mix = each object made alone, the sounds played together (default); "
                        "compose = one pass, one condition per object, guidance averaged; mask = the paper's single "
                        "union mask")
    p.add_argument("--seed", type=_integer, default=0, help="0 to 2**64-1")
    p.add_argument("--duration", type=_number, default=None,
                   help="seconds, from one latent frame (0.04 s) to 120; past the model's max_seconds the clip is "
                        "denoised over overlapping windows (default: the model's clip length)")
    p.add_argument("--loop", action="store_true",
                   help="a seamless loop: the clip's end flows into its start (length snapped to 0.04 s)")
    p.add_argument("--guidance", choices=GUIDANCE, default=None,
                   help="cfg: classifier-free guidance (default, the paper's); apg: adaptive projected guidance, "
                        "which keeps the guidance update's part orthogonal to the conditional prediction")
    p.add_argument("--no-silence-gate", action="store_true",
                   help="generate even what the model's silence gate calls silent (the paper's behaviour; by "
                        "default a gated model makes a silent object digital silence without running the diffusion)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="auto (default: on a CPU onnxruntime when `python -m export.onnx --cache` has built this "
                        "model's graphs, which `make demo` does for the embedded model, else eager; for batch on a "
                        "CPU with native bfloat16 fast, whose clips are cheaper once started; on CUDA fast), "
                        "eager (the reference), fast (fused kernels; on CUDA an fp16 UNet and a CUDA graph), "
                        "onnxruntime, tensorrt")
    p.add_argument("--unet-dtype", choices=DTYPE_NAMES, default=None,
                   help="the UNet's precision for eager and fast (default: fp32; fast on CUDA: fp16)")
    p.add_argument("--no-cuda-graph", action="store_true", help="fast: run the loop step by step, not as a graph")
    p.add_argument("--onnx-dir", default=None, help="onnxruntime: the export folder (default: the cache folder)")
    p.add_argument("--sam-checkpoint", default=None, help="SAM .pth, needed for --point and --box")
    p.add_argument("--sam-type", default=None,
                   help="vit_b, vit_l or vit_h: the SAM model type, when the .pth file's name does not say it")
    p.add_argument("--threads", type=_integer, default=None,
                   help="CPU threads, 1 to the cores this process may use (default: OMP_NUM_THREADS if set, "
                        "else the cores not already busy, at most 4)")
    p.add_argument("--format", default="float",
                   help="WAV samples: float = 32-bit float (default), pcm16 = 16-bit integers")
    p.add_argument("--sample-rate", type=_integer, default=None,
                   help="the WAVs' sample rate in Hz, 8000-192000, resampled with libsoxr (44100 or 48000 for "
                        "games and DAWs; default: the model's 16000)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs (never an input)")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(prog="objaudio", description="Object-aware image-to-audio generation.")
    parser.add_argument("--version", action="version", version=f"objaudio {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate the sound of selected objects in an image")
    g.add_argument("--image", required=True)
    g.add_argument("--mask", action="append", default=[], help="mask image (repeat for a union)")
    g.add_argument("--point", action="append", default=[], help="x,y click on the object (needs SAM)")
    g.add_argument("--bg-point", action="append", default=[], help="x,y click on background (needs SAM)")
    g.add_argument("--box", action="append", default=[], help="x0,y0,x1,y1 box (needs SAM)")
    g.add_argument("--text", action="append", default=[], help="phrase selecting through the learned attention")
    g.add_argument("--out", required=True, help="output WAV path")
    g.add_argument("--png", default=None, help="overview picture, a .png (default: OUT.overview.png)")
    g.add_argument("--no-png", action="store_true", help="do not write the overview picture")
    g.add_argument("--stems", action="store_true",
                   help="also one WAV per selected object, OUT.stem-0.wav, OUT.stem-1.wav, ... (OUT is the mix)")
    _add_generation_flags(g)

    b = sub.add_parser("batch", help="many images or selections in one run: a JSONL file or a folder in, "
                                     "a folder of WAVs out")
    b.add_argument("jobs", help="a .jsonl file, one JSON object a line ({\"image\": \"scene.png\", \"mask\": "
                                "\"bird.png\", \"out\": \"bird.wav\", \"seed\": 3}; paths relative to the file), "
                                "or a folder of images (one WAV each, the whole scene or --text)")
    b.add_argument("--out", required=True, help="output folder (made if missing; its parent must exist)")
    b.add_argument("--text", action="append", default=[], help="a folder of images: the phrase to hear in each")
    b.add_argument("--stems", action="store_true", help="also one WAV per selected object of each line")
    b.add_argument("--skip-existing", action="store_true",
                   help="leave jobs whose WAVs exist (to go on after an interrupted batch)")
    _add_generation_flags(b)

    d = sub.add_parser("demo", help="generate sounds for the bundled demo scene")
    d.add_argument("--out", default="demo_out", help="output folder")
    _add_generation_flags(d)

    i = sub.add_parser("info", help="what a checkpoint holds")
    i.add_argument("--checkpoint", default=None)
    i.add_argument("--json", action="store_true", help="print JSON")

    s = sub.add_parser("serve", help="the click-to-hear page and the HTTP API (needs objaudio[serve])")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=_integer, default=8000)
    s.add_argument("--checkpoint", default=None, help="checkpoint folder or preset (default: the embedded model)")
    add_path_flags(s, "serve")
    s.add_argument("--device", default="cpu", help="cpu or cuda")
    s.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="auto (default: on a CPU with native bfloat16 fast, whose clips are cheaper once started; "
                        "else onnxruntime when the model's ONNX graphs are cached, else eager; fast on CUDA), or one "
                        "of eager, fast, onnxruntime, tensorrt")
    s.add_argument("--sam-checkpoint", default=None, help="SAM .pth: clicks and boxes on any image")
    s.add_argument("--threads", type=_integer, default=None,
                   help="CPU threads for the model, 1 to the cores this process may use (default as for generate)")

    a = sub.add_parser("assemble", help="build a checkpoint from upstream AudioLDM + open_clip weights")
    a.add_argument("--audioldm", required=True, help="AudioLDM folder in diffusers layout")
    a.add_argument("--clip", required=True, help="open_clip ViT-B/32 state dict (.pt/.bin/.safetensors)")
    a.add_argument("--grounding", default=None, help="trained grounding weights (.safetensors); random if absent")
    a.add_argument("--out", required=True)
    a.add_argument("--force", action="store_true")
    return parser


def _flag_job(args):
    """The job `generate`'s flags describe."""
    from .jobs import Job, parse_numbers

    return Job("", Path(args.image), Path(args.out), _run_options(args), masks=tuple(Path(m) for m in args.mask),
               texts=tuple(args.text), boxes=tuple(parse_numbers(b, 4, "--box") for b in args.box),
               points=tuple(parse_numbers(p, 2, "--point") for p in args.point),
               bg_points=tuple(parse_numbers(p, 2, "--bg-point") for p in args.bg_point))


def _check_options(args, options=()) -> None:
    """The flags, checked before the model loads: the run options (the flags', or each of `options`)
    through RunOptions against the model's settings where its config can be read without loading it
    (else the loader says why). Plain Python, as every check before _pipeline: a bad input is answered
    without importing torch."""
    from ..core.config import peek_config
    from ..core.options import SAM_TYPES, WAV_FORMATS, check_sample_rate
    from ..core.threads import check_threads

    if args.threads is not None:
        check_threads(args.threads)
    check(args.format in WAV_FORMATS, f"unknown --format {args.format!r}: use one of {', '.join(WAV_FORMATS)}")
    if args.sample_rate is not None:
        check_sample_rate(args.sample_rate)
    check(args.sam_type in (None, *SAM_TYPES),
          f"unknown --sam-type {args.sam_type!r}: use one of {', '.join(SAM_TYPES)}")
    config = peek_config(args.checkpoint, args.path)
    if config is not None:
        for run in options or [_run_options(args)]:
            run.resolve(config)


def _inputs(args, jobs=()) -> list[Path]:
    """Every file the run reads: no output may be one of them."""
    files = [Path(p) for p in [getattr(args, "image", None), *getattr(args, "mask", []), args.sam_checkpoint] if p]
    files += [f for job in jobs for f in job.inputs()]
    if args.checkpoint and Path(args.checkpoint).is_dir():
        files += [p for p in Path(args.checkpoint).rglob("*") if p.is_file()]
    return files


def _pipeline(args):
    from ..core.pipeline import Pipeline
    from ..core.threads import use_threads

    use_threads(args.threads)
    pipe = Pipeline.from_pretrained(args.checkpoint, device=args.device, backend=args.backend,
                                    sam_checkpoint=args.sam_checkpoint, sam_type=args.sam_type,
                                    backend_options=_backend_options(args), path=args.path,
                                    many_clips=args.command == "batch")
    print(f"model: {pipe.source} (backend {pipe.backend_name})")
    if (args.backend == "auto" and pipe.backend_name == "eager" and pipe.device.type == "cpu" and not args.checkpoint
            and not _backend_options(args)):
        print("tip: `python -m export.onnx --cache` (once) builds ONNX graphs that make each run start and "
              "denoise faster on a CPU", file=sys.stderr)
    return pipe


def _backend_options(args) -> dict:
    """The backend flags the user gave, as registry options (the registry refuses one a backend lacks)."""
    given = {"unet_dtype": args.unet_dtype, "cuda_graph": False if args.no_cuda_graph else None,
             "onnx_dir": args.onnx_dir}
    return {k: v for k, v in given.items() if v is not None}


def _run_options(args):
    from ..core.options import RunOptions

    return RunOptions(args.steps, args.sampler, args.cfg, args.seed, args.duration, args.union, args.loop,
                      args.guidance, False if args.no_silence_gate else None)


def _options(args) -> dict:
    return dataclasses.asdict(_run_options(args))


def _wav(args, gen) -> bytes:
    from ..core.audio import wav_bytes

    peak = float(gen.wave.abs().max()) if gen.wave.numel() else 0.0
    if args.format == "pcm16" and peak > 1.0:        # e.g. a mixed union: its parts' sum
        print(f"note: this clip peaks at {peak:.2f} and 16-bit PCM clips it at 1.0; --format float keeps every "
              "sample (lower it in your mixer)", file=sys.stderr)
    return wav_bytes(gen.wave, gen.sample_rate, args.format, args.sample_rate, gen.loop)


def _generate_job(pipe, scene, job, parts, stems: bool, progress: bool = True) -> list:
    """Generations for one job, in one batched run: with `stems` one per part then the mix (a single
    part is its own mix), else the mix alone."""
    from .jobs import union

    items = [p for _, p in parts]
    items = (items + [union(parts)] if len(items) > 1 else items) if stems else [union(parts)]
    return pipe.generate_many(scene, items, progress=progress, **dataclasses.asdict(job.options))


def cmd_generate(args) -> None:
    """Every check a file or flag allows runs before torch is imported (2 s here): bad input is answered at once."""
    from ..core.images import load_image
    from .jobs import describe
    from .outputs import check_outputs, write_together
    from .viz import render_overview

    out = Path(args.out)
    check(out.suffix.lower() == ".wav", f"--out must end in .wav, got {out}")
    check(not (args.no_png and args.png), "--no-png and --png contradict each other: give one of them")
    png = None if args.no_png else Path(args.png) if args.png else out.with_suffix(".overview.png")
    check(png is None or png.suffix.lower() == ".png", f"--png must end in .png (the picture is a PNG), got {png}")
    _check_options(args)
    job = _flag_job(args)
    image = load_image(job.image)
    parts = job.parts(image.shape[:2], args.sam_checkpoint)
    check(not args.stems or parts, "--stems writes one WAV per selected object: select some with --mask, --text, "
                                   "--point or --box (without a selection the WAV is the whole scene)")
    wavs = job.outputs(args.stems)
    check_outputs(wavs + ([png] if png is not None else []), _inputs(args), force=args.force)
    pipe = _pipeline(args)
    scene = pipe.encode_image(image)
    start = time.perf_counter()
    gens = _generate_job(pipe, scene, job, parts, args.stems)
    elapsed = time.perf_counter() - start
    mix, stems = gens[-1], gens[:len(wavs) - 1]
    files = [(out, _wav(args, mix))] + [(path, _wav(args, g)) for path, g in zip(wavs[1:], stems)]
    if png is not None:
        rows = [(f"stem {k}: {label}", g) for k, ((label, _), g) in enumerate(zip(parts, stems))]
        rows += [(("mix: " if stems else "") + describe(parts), mix)]
        files.append((png, render_overview(scene.image, rows)))
    write_together(files, force=args.force)
    rate = args.sample_rate or mix.sample_rate
    what = "" if parts else ", whole scene: no selection given"
    print(f"wrote {out} ({mix.wave.numel() / mix.sample_rate:.2f} s at {rate} Hz, {mix.sampler} {mix.steps} steps, "
          f"cfg {mix.cfg:g}, seed {mix.seed}{what}, {elapsed:.1f} s)" + (f" and {png}" if png else ""))
    for path, (label, _) in zip(wavs[1:], parts):
        print(f"wrote {path}  (stem: {label})")


def cmd_batch(args) -> None:
    """Every job is checked (its files read, its options against the model) before torch is imported;
    then the model loads once, each image is encoded once for its consecutive jobs, and each job's WAVs
    are written as it finishes (through a temporary, renamed into place), so an interrupted batch keeps
    what it finished: --skip-existing goes on from there."""
    from tqdm import tqdm

    from ..core.images import load_image
    from .jobs import read_jobs
    from .outputs import check_outputs, write_together

    out_dir = Path(args.out)
    check(not out_dir.exists() or out_dir.is_dir(), f"--out {out_dir} is a file: batch writes a folder of WAVs")
    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    check(out_dir.is_dir() or parent.is_dir(), f"cannot create {out_dir}: folder {parent} does not exist")
    jobs = read_jobs(Path(args.jobs), out_dir, _run_options(args), tuple(args.text))
    _check_options(args)
    for job in jobs:
        _where(job, lambda j: _check_options(args, [j.options]))
    if args.skip_existing:
        jobs = [job for job in jobs if not all(p.exists() for p in job.outputs(args.stems))]
    wavs = [p for job in jobs for p in job.outputs(args.stems)]
    for job in jobs:                                   # every file read and checked once, none kept
        _where(job, lambda j: j.parts(load_image(j.image).shape[:2], args.sam_checkpoint))
    if out_dir.is_dir():
        check_outputs(wavs, _inputs(args, jobs), force=args.force or args.skip_existing)
    else:                                              # a new folder: nothing there yet, only two jobs' names can clash
        twice = sorted({p.name for p in wavs if wavs.count(p) > 1})
        check(not twice, f"two jobs write {twice[0]}: give each its own \"out\"" if twice else "")
    if not jobs:
        print(f"nothing to do: every job's WAVs are in {out_dir}")
        return
    pipe = _pipeline(args)
    out_dir.mkdir(exist_ok=True)
    start, scene, scene_path = time.perf_counter(), None, None
    bar = tqdm(jobs, desc="batch", unit="job", file=sys.stderr, disable=None)
    for done, job in enumerate(bar):
        if job.image != scene_path:
            scene, scene_path = pipe.encode_image(load_image(job.image)), job.image
        parts = job.parts(scene.size_hw, args.sam_checkpoint)
        gens = _where(job, lambda j: _generate_job(pipe, scene, j, parts, args.stems, progress=False))
        paths = job.outputs(args.stems)
        files = [(paths[0], _wav(args, gens[-1]))] + [(p, _wav(args, g)) for p, g in zip(paths[1:], gens)]
        try:
            write_together(files, force=args.force or args.skip_existing)
        except ObjaudioError as exc:
            raise ObjaudioError(f"{exc} ({done} of {len(jobs)} jobs were written to {out_dir}; "
                                "rerun with --skip-existing to go on)") from None
        bar.write(f"wrote {paths[0]}" + (f" and {len(paths) - 1} stems" if len(paths) > 1 else ""), file=sys.stdout)
    print(f"{len(jobs)} jobs, {len(wavs)} WAVs in {out_dir} ({time.perf_counter() - start:.1f} s)")


def _where(job, fn):
    """fn(job), its error prefixed with the job's place in the batch ("jobs.jsonl line 3: ...")."""
    try:
        return fn(job)
    except ObjaudioError as exc:
        raise ObjaudioError(f"{job.where}: {exc}") from None


def cmd_demo(args) -> None:
    from .outputs import check_outputs, write_together
    from ..core.selection import Mask, Whole
    from .viz import render_overview

    check((DEMO / "scene.png").is_file(), f"the bundled demo scene is missing from {DEMO}: reinstall objaudio")
    out = Path(args.out)
    check(not out.exists() or out.is_dir(), f"--out {out} is a file: demo writes a folder of files; give a folder")
    parent = out.parent if str(out.parent) else Path(".")
    check(out.is_dir() or parent.is_dir(), f"cannot create {out}: folder {parent} does not exist")
    _check_options(args)
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
    if out.is_dir():
        check_outputs(targets, _inputs(args), force=args.force)

    pipe = _pipeline(args)
    scene = pipe.encode_image(DEMO / "scene.png")
    start = time.perf_counter()
    gens = pipe.generate_many(scene, [s for _, _, s in selections], **_options(args))
    elapsed = time.perf_counter() - start
    files = [(out / name, _wav(args, g)) for (_, name, _), g in zip(selections, gens)]
    files.append((out / "overview.png",
                  render_overview(scene.image, [(label, g) for (label, _, _), g in zip(selections, gens)])))
    created = not out.exists()
    out.mkdir(exist_ok=True)
    try:
        write_together(files, force=args.force)
    except BaseException:
        if created:
            out.rmdir()
        raise
    for (label, name, _), g in zip(selections, gens):
        print(f"wrote {out / name}  ({label}{': silent, by the silence gate' if g.silent else ''})")
    print(f"wrote {out / 'overview.png'}  ({len(gens)} generations in {elapsed:.1f} s, "
          f"{gens[0].sampler} {gens[0].steps} steps)")


def cmd_info(args) -> None:
    from ..modelio.checkpoint import describe
    from ..core.config import default_checkpoint, embedded_checkpoint

    folder = args.checkpoint or default_checkpoint()
    if not Path(folder).exists():
        folder = embedded_checkpoint(folder) or folder              # the embedded model by its name
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
    if info["fewstep"] is not None:
        record = info["fewstep"]
        student = describe(record["folder"])["defaults"]
        print(f"fewstep      {'the default path' if record.get('default') else 'carried, not the default (--fewstep)'}: "
              f"{student['sampler']} {student['steps']} steps, one UNet row a step"
              + (f" (--full: {info['defaults']['steps']}-step)" if record.get("default") else ""))
    print("files")
    for rel, digest in info["files"].items():
        print(f"  {digest[:16]}  {rel}")


def cmd_assemble(args) -> None:
    from ..modelio.upstream import assemble

    out = assemble(args.audioldm, args.clip, args.out, grounding=args.grounding, force=args.force)
    print(f"wrote {out}")


def cmd_serve(args) -> None:
    from ..core.threads import check_threads

    if args.threads is not None:
        check_threads(args.threads)                  # before the web stack and torch load
    try:
        import uvicorn  # noqa: F401  (imported here only to say what to install)

        from .serve.main import run
    except ImportError as exc:
        raise ObjaudioError(f"objaudio serve needs the web extra ({exc.name} is missing): "
                            "pip install 'objaudio[serve]'") from None
    run(args.host, args.port, checkpoint=args.checkpoint, device=args.device, backend=args.backend,
        sam_checkpoint=args.sam_checkpoint, threads=args.threads, path=args.path)


@command("objaudio")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    {"generate": cmd_generate, "batch": cmd_batch, "demo": cmd_demo, "info": cmd_info, "assemble": cmd_assemble,
     "serve": cmd_serve}[args.command](args)
    return 0


def entry() -> None:
    """The `objaudio` console script: main, then a fast exit (errors.exit_now)."""
    from ..core.errors import exit_now

    exit_now(main())


if __name__ == "__main__":
    entry()
