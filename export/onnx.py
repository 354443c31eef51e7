"""Export a checkpoint's networks to ONNX, reuse what is already exported, verify against PyTorch.

    python -m export.onnx (--out DIR | --cache) [--checkpoint DIR|tiny-synth|random:PRESET [--seed S]] [--fp16]
                          [--verify] [--only unet,vae_decoder,...] [--sam-checkpoint PTH | --sam-random TYPE]

--cache writes into the folder the runtime's onnxruntime backend reads when given none
(objaudio_rt.modelio.artifacts.onnx_cache_dir: `$OBJAUDIO_CACHE/onnx/<fingerprint>`). From a checkpoint
folder whose graphs there are all current it returns without building the model (`_current_cache`).
`export_manifest.json` in DIR ties the folder to one set of weights (objaudio_rt.modelio.artifacts.
model_fingerprint) and one contract version; a network is re-exported only when its file is
missing or changed, its precision differs, or the contract version moved. A folder exported from
other weights is refused unless --force. Each network is written into a temporary sibling folder
and renamed into place, and the manifest is rewritten (atomically) after each one, so an
interrupted export leaves only complete, listed files.

The exporter is torch's TorchScript-based one (`dynamo=False`): on the tiny UNet it took 8 s where
the dynamo exporter took 38 s, with the same error against PyTorch (ARCHITECTURE.md: both work
for the AudioLDM-S UNet).
--fp16 converts the float32 graph with onnxruntime's float16 converter, keeping float32 inputs
and outputs, so the runtime feeds every graph the same way.

--verify runs every requested graph in onnxruntime on fresh random inputs (random values, and
random dynamic sizes between the profile's min and opt) beside PyTorch in float32, float64, and
float16 for --fp16 exports, and writes DIR/report.json. A graph passes when its error against
the float64 reference is at most twice the error PyTorch itself makes at the graph's precision
(flash-attention's rule), plus 1e-6 of the output's scale for float32 graphs, where both errors
are rounding noise. SAM's mask decoder cannot run in float64 or float16 in PyTorch (its prompt
encoder builds float32 grids): it is held to PyTorch float32 within 1e-4 (fp16: 1e-2) of its scale.
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from objaudio_rt.modelio.artifacts import (FORMAT, MANIFEST, MODEL_NETWORKS, SAM_NETWORKS, model_fingerprint,
                                   onnx_cache_dir, read_onnx_manifest, weights_fingerprint, write_json_atomic)
from objaudio_rt.modelio.checkpoint import checkpoint_fingerprint, sha256_file
from objaudio_rt.core.config import ModelSource
from objaudio_rt.core.errors import ObjaudioError, check, command
from objaudio_rt.modelio.model import ObjaudioModel

from .common import add_model_args, load_model, model_source, parse_only, prepare_out_dir
from .contracts import CONTRACT_VERSION, OPSET, Contract, build_sam, model_contracts, sam_contracts

REPORT = "report.json"


# ---- files ------------------------------------------------------------------------------------
def _export_one(contract: Contract, out: Path, fp16: bool) -> list[str]:
    """Export into a temporary folder inside `out`, then rename every file into place.

    Returns the file names (the .onnx last: external-data files, if any, land first)."""
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{contract.name}.", suffix=".part"))
    try:
        path = tmp / f"{contract.name}.onnx"
        args = contract.sample_inputs("opt", values=contract.trace_values)
        # not under no_grad: nn.MultiheadAttention (open_clip) then takes a fused path ONNX lacks
        with warnings.catch_warnings():     # the tracer's and exporter's notes are for exporter authors; --verify
            warnings.simplefilter("ignore", torch.jit.TracerWarning)      # checks the graphs' results instead
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            # dynamo=False on purpose: the TorchScript exporter handles these contracts' dynamic axes today
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*legacy TorchScript")
            torch.onnx.export(contract.module.eval(), args, str(path), dynamo=False,
                              input_names=contract.input_names, output_names=contract.output_names,
                              dynamic_axes=contract.dynamic_axes(), opset_version=OPSET)
        if fp16:
            _convert_fp16(path)
        files = sorted((p.name for p in tmp.iterdir()), key=lambda n: n == path.name)
        for name in files:
            os.replace(tmp / name, out / name)
        return files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _convert_fp16(path: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    big = model.ByteSize() > 2 ** 31 - 1
    onnx.save(model, str(path), save_as_external_data=big, location=f"{path.name}.data" if big else None)


# ---- export -----------------------------------------------------------------------------------
def _source_info(fingerprint: str, source: str, manifest_sha256: str | None = None) -> dict:
    return {"fingerprint": fingerprint, "source": source, "manifest_sha256": manifest_sha256}


def _is_current(entry: dict | None, out: Path, fp16: bool) -> bool:
    if entry is None or entry["fp16"] != fp16:
        return False
    return all((out / f).is_file() and sha256_file(out / f) == digest for f, digest in entry["files"].items())


def export_networks(model: ObjaudioModel, out: str | os.PathLike, networks: tuple[str, ...],
                    fingerprint: str | None = None, source: str = "", manifest_sha256: str | None = None,
                    fp16: bool = False, sam: torch.nn.Module | None = None, sam_source: str = "",
                    force: bool = False, progress: bool = True) -> dict:
    """Export `networks` of `model` (and of `sam`) into `out`; returns the manifest.

    Networks already exported from the same weights, contract version and precision are kept.
    A folder exported from other weights raises ObjaudioError before anything is written,
    unless `force`, which replaces its graphs.
    """
    out = Path(out)
    unknown = [n for n in networks if n not in MODEL_NETWORKS + SAM_NETWORKS]
    check(not unknown, f"unknown network(s) {', '.join(unknown)}: choose from "
                       f"{', '.join(MODEL_NETWORKS + SAM_NETWORKS)}")
    wanted_sam = [n for n in networks if n in SAM_NETWORKS]
    check(not wanted_sam or sam is not None,
          f"{', '.join(wanted_sam)} need a Segment Anything model: pass --sam-checkpoint PTH or --sam-random TYPE")
    prepare_out_dir(out)
    fingerprint = fingerprint or model_fingerprint(model)
    sources = {"checkpoint": _source_info(fingerprint, source, manifest_sha256)}
    if sam is not None:
        sources["sam"] = _source_info(weights_fingerprint({"sam": sam_source}, {"sam": sam}), sam_source)

    manifest = None
    if (out / MANIFEST).is_file():
        try:
            manifest = read_onnx_manifest(out, None if force else fingerprint, None)
        except ObjaudioError:
            if not force:
                raise
            manifest = {"networks": {}, "contract_version": None, "checkpoint": {"fingerprint": None}}   # corrupt
        old_sam = manifest.get("sam")
        if old_sam and "sam" in sources and old_sam["fingerprint"] != sources["sam"]["fingerprint"] and not force:
            raise ObjaudioError(f"ONNX folder {out} holds SAM graphs exported from other weights "
                                f"({old_sam['source']}): export into another folder, or pass --force to replace them")
        stale = (force or manifest["contract_version"] != CONTRACT_VERSION
                 or manifest["checkpoint"]["fingerprint"] != fingerprint)
        if stale:                  # the graphs and the report describe other weights or an old contract
            for entry in manifest["networks"].values():
                for f in entry["files"]:
                    (out / f).unlink(missing_ok=True)
            (out / REPORT).unlink(missing_ok=True)
            manifest = None
    if manifest is None:
        manifest = {"format": FORMAT, "contract_version": CONTRACT_VERSION, "networks": {}}
    manifest["checkpoint"] = sources["checkpoint"]
    if "sam" in sources:
        manifest["sam"] = sources["sam"]

    contracts = model_contracts(model)
    if sam is not None:
        contracts.update(sam_contracts(sam))
    bar = tqdm(networks, desc="export onnx", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        if _is_current(manifest["networks"].get(name), out, fp16):
            continue
        manifest["networks"].pop(name, None)
        start = time.perf_counter()
        files = _export_one(contracts[name], out, fp16)
        seconds = time.perf_counter() - start
        manifest["networks"][name] = {
            "file": files[-1], "files": {f: sha256_file(out / f) for f in files},
            "weights": "sam" if name in SAM_NETWORKS else "checkpoint", "fp16": fp16, "opset": OPSET,
            "file_size_bytes": sum((out / f).stat().st_size for f in files), "export_seconds": round(seconds, 3),
            "torch_version": torch.__version__, "contract": contracts[name].to_dict()}
        write_json_atomic(out / MANIFEST, manifest)
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


# ---- verify -----------------------------------------------------------------------------------
def _torch_outputs(module: torch.nn.Module, args: tuple[torch.Tensor, ...],
                   dtype: torch.dtype) -> list[np.ndarray] | None:
    """Run a copy of `module` in `dtype` (float inputs cast), outputs as float64 numpy; None when
    the module cannot run in `dtype` (SAM's prompt encoder builds float32 grids whatever its dtype)."""
    m = module if dtype == torch.float32 else copy.deepcopy(module).to(dtype)
    try:
        with torch.no_grad():
            out = m(*(a.to(dtype) if a.is_floating_point() else a for a in args))
    except RuntimeError as exc:
        if dtype == torch.float32 or "dtype" not in str(exc):
            raise
        return None
    out = out if isinstance(out, tuple) else (out,)
    return [o.double().numpy() for o in out]


def _max_err(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def verify_networks(out: str | os.PathLike, model: ObjaudioModel, networks: tuple[str, ...],
                    sam: torch.nn.Module | None = None, seed: int | None = None, progress: bool = True) -> dict:
    """Run each exported graph in onnxruntime beside PyTorch; write and return out/report.json."""
    import onnxruntime as ort

    out = Path(out)
    manifest = read_onnx_manifest(out, model_fingerprint(model), CONTRACT_VERSION, networks)
    contracts = model_contracts(model)
    if sam is not None:
        contracts.update(sam_contracts(sam))
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    rng = np.random.default_rng(seed)
    report = {"seed": seed, "torch_version": torch.__version__, "onnxruntime_version": ort.__version__,
              "checkpoint": manifest["checkpoint"], "networks": {}}
    for name in tqdm(networks, desc="verify onnx", disable=not progress):
        contract, entry = contracts[name], manifest["networks"][name]
        sizes = {k: int(rng.integers(lo, opt + 1)) for k, (lo, opt, _) in contract.symbols.items()}
        args = contract.sample_inputs("opt", seed=int(rng.integers(2 ** 31)), values=sizes)
        session = ort.InferenceSession(str(out / entry["file"]), providers=["CPUExecutionProvider"])
        got = session.run(None, {n: a.numpy() for n, a in zip(contract.input_names, args)})
        ref32 = _torch_outputs(contract.module, args, torch.float32)
        ref64 = _torch_outputs(contract.module, args, torch.float64)
        lowp = _torch_outputs(contract.module, args, torch.float16) if entry["fp16"] else ref32
        err32 = _max_err(got, ref32)
        if ref64 is not None and lowp is not None:
            scale = max(float(np.abs(r).max()) for r in ref64)
            err64, torch_err = _max_err(got, ref64), _max_err(lowp, ref64)
            tol = 2 * torch_err + (0.0 if entry["fp16"] else 1e-6 * scale)
        else:         # no float64 / float16 PyTorch run to measure against: a fixed relative bound
            scale = max(float(np.abs(r).max()) for r in ref32)
            err64, torch_err = err32, None
            tol = (1e-2 if entry["fp16"] else 1e-4) * scale
        report["networks"][name] = {
            "max_abs_err": err32, "rel_err": err32 / scale if scale else 0.0, "err_vs_float64": err64,
            "torch_err_vs_float64": torch_err, "tolerance": tol, "passed": err64 <= tol,
            "precision": "fp16" if entry["fp16"] else "fp32", "output_scale": scale,
            "shapes": {"inputs": {n: list(a.shape) for n, a in zip(contract.input_names, args)},
                       "outputs": {n: list(g.shape) for n, g in zip(contract.output_names, got)}},
            "opset": entry["opset"], "file_size_bytes": entry["file_size_bytes"],
            "export_seconds": entry["export_seconds"]}
    write_json_atomic(out / REPORT, report)
    return report


# ---- CLI --------------------------------------------------------------------------------------
def _manifest_sha256(source: ModelSource) -> str | None:
    """sha256 of the checkpoint folder's manifest.json, which an export records; None for random weights."""
    path = source.folder / "manifest.json" if source.folder is not None else None
    return sha256_file(path) if path is not None and path.is_file() else None


def load_sam_for_export(sam_checkpoint: str | None, sam_random: str | None):
    """(sam or None, source description)."""
    if sam_checkpoint is not None:
        from objaudio_rt.modelio.sam import load_sam

        check(sam_random is None, "give either --sam-checkpoint or --sam-random, not both")
        return load_sam(sam_checkpoint), str(sam_checkpoint)
    if sam_random is not None:
        return build_sam(sam_random), f"random:{sam_random}:seed{torch.initial_seed()}"
    return None, ""


def _parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m export.onnx", description=__doc__.split("\n")[0])
    add_model_args(p)
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="output folder")
    out.add_argument("--cache", action="store_true",
                     help="export into the runtime's cache folder for these weights ($OBJAUDIO_CACHE/onnx/...)")
    p.add_argument("--only", help="comma-separated networks (default: all of the model, plus SAM's if given)")
    p.add_argument("--fp16", action="store_true", help="float16 graphs (float32 inputs and outputs)")
    p.add_argument("--verify", action="store_true", help="run each graph in onnxruntime against PyTorch")
    p.add_argument("--verify-seed", type=int, help="seed of the verification inputs (default: fresh)")
    p.add_argument("--sam-checkpoint", help="official SAM .pth (sam_vit_b_01ec64.pth) to export too")
    p.add_argument("--sam-random", choices=("tiny", "vit_b", "vit_l", "vit_h"), help="random-weight SAM to export")
    p.add_argument("--force", action="store_true", help="replace graphs exported from other weights")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def _networks(args, with_sam: bool) -> tuple[str, ...]:
    return parse_only(args.only) or MODEL_NETWORKS + (SAM_NETWORKS if with_sam else ())


def _current_cache(args, source: ModelSource) -> Path | None:
    """The cache folder when it already holds current graphs of every network asked for, found from the
    checkpoint folder's files alone (checkpoint.checkpoint_fingerprint: no network is built, no model
    library imported), else None. This is `make demo`'s every run after the first."""
    if not args.cache or args.force or args.verify or args.sam_checkpoint or args.sam_random:
        return None
    folder = source.folder
    if folder is None or not folder.is_dir():         # random weights, or no such folder (the full path says so)
        return None
    networks = _networks(args, with_sam=False)
    try:
        fingerprint = checkpoint_fingerprint(folder)
        out = onnx_cache_dir(fingerprint)
        manifest = read_onnx_manifest(out, fingerprint, CONTRACT_VERSION, networks)
    except ObjaudioError:                    # not exported yet, stale or damaged: the full path says or mends it
        return None
    return out if all(_is_current(manifest["networks"].get(n), out, args.fp16) for n in networks) else None


@command("python -m export.onnx")
def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    weights = model_source(args)
    current = _current_cache(args, weights)
    if current is not None:
        if not args.quiet:
            print(f"{current}: the graphs of these weights are current")
        return 0
    pipe = load_model(weights, args.seed)
    if args.sam_random is not None:
        torch.manual_seed(args.seed)
    sam, sam_source = load_sam_for_export(args.sam_checkpoint, args.sam_random)
    networks = _networks(args, with_sam=sam is not None)
    if args.cache:
        args.out = str(onnx_cache_dir(model_fingerprint(pipe.model)))
    export_networks(pipe.model, args.out, networks, source=pipe.source, manifest_sha256=_manifest_sha256(weights),
                    fp16=args.fp16, sam=sam, sam_source=sam_source, force=args.force, progress=not args.quiet)
    if not args.verify:
        return 0
    report = verify_networks(args.out, pipe.model, networks, sam, args.verify_seed, progress=not args.quiet)
    print(f"{'network':<22}{'max_abs_err':>12}{'rel_err':>10}{'vs fp64':>10}{'tolerance':>10}{'MB':>9}"
          f"{'export s':>10}  ok   (seed {report['seed']}, onnxruntime {report['onnxruntime_version']}, CPU)")
    for name, r in report["networks"].items():
        print(f"{name:<22}{r['max_abs_err']:>12.2e}{r['rel_err']:>10.1e}{r['err_vs_float64']:>10.1e}"
              f"{r['tolerance']:>10.1e}{r['file_size_bytes'] / 2 ** 20:>9.1f}{r['export_seconds']:>10.1f}  "
              f"{'yes' if r['passed'] else 'NO'}")
    failed = [n for n, r in report["networks"].items() if not r["passed"]]
    check(not failed, f"verification failed for {', '.join(failed)} (see {Path(args.out) / REPORT})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
