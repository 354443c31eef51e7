"""Build TensorRT engines from an export.onnx folder, with the contracts' optimisation profiles.

    python -m export.trt --onnx DIR --out DIR [--fp16] [--timing-cache PATH] [--only unet,...]

Each `X.onnx` listed in the ONNX folder's manifest becomes `X.plan` plus the sidecar `X.plan.json`
(objaudio_rt.modelio.artifacts.engine_sidecar: TensorRT version, compute capability, weights fingerprint,
contract version; the TensorRT backend checks it), both written to temporary names and renamed. The profile of each
input is the contract's (min, opt, max) shapes, read back from the manifest.

NOT EXERCISED on any machine of this project (TensorRT cannot be installed here): `build_engine`.
It follows TensorRT 10's documented Python API (Builder, OnnxParser, IBuilderConfig with an
optimisation profile, BuilderFlag.FP16, timing cache, build_serialized_network). The profile
shapes, manifest reading and sidecars it uses are tested.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from objaudio_rt.modelio.artifacts import (CONTRACT_VERSION, current_platform, engine_sidecar, read_onnx_manifest,
                                   write_bytes_atomic, write_json_atomic)
from objaudio_rt.core.errors import ObjaudioError, check, command

from .common import parse_only, prepare_out_dir
from .contracts import profile_shapes


def build_engine(onnx_path: Path, engine_path: Path, profile: dict, fp16: bool,
                 timing_cache: Path | None = None) -> None:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)                  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ObjaudioError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    check(serialized is not None, f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    write_bytes_atomic(engine_path, bytes(serialized))
    if timing_cache is not None:
        write_bytes_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))


def build_engines(onnx_dir: str | os.PathLike, out: str | os.PathLike, networks: tuple[str, ...] | None = None,
                  fp16: bool = False, timing_cache: str | os.PathLike | None = None) -> list[Path]:
    onnx_dir, out = Path(onnx_dir), Path(out)
    manifest = read_onnx_manifest(onnx_dir, None, CONTRACT_VERSION, networks or ())
    networks = networks or tuple(manifest["networks"])
    try:
        import tensorrt
    except ImportError:
        raise ObjaudioError("TensorRT is not installed: pip install tensorrt (from NVIDIA's index) "
                            "on the machine with the GPU the engines are for") from None
    prepare_out_dir(out)
    platform = current_platform(torch.device("cuda"))
    built = []
    for name in networks:
        entry = manifest["networks"][name]
        profile = profile_shapes(entry["contract"])
        engine_path = out / f"{name}.plan"
        build_engine(onnx_dir / entry["file"], engine_path, profile, fp16,
                     Path(timing_cache) if timing_cache else None)
        write_json_atomic(Path(f"{engine_path}.json"),
                          engine_sidecar(name, manifest["checkpoint"]["fingerprint"], tensorrt.__version__,
                                         platform["compute_capability"], fp16, profile, platform["gpu_name"]))
        built.append(engine_path)
    return built


@command("python -m export.trt")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.trt", description=__doc__.split("\n")[0])
    p.add_argument("--onnx", required=True, help="folder written by python -m export.onnx")
    p.add_argument("--out", required=True, help="engine folder")
    p.add_argument("--only", help="comma-separated networks (default: every graph in the ONNX folder)")
    p.add_argument("--fp16", action="store_true", help="allow float16 kernels (BuilderFlag.FP16)")
    p.add_argument("--timing-cache", help="timing cache file, read if present and updated")
    args = p.parse_args(argv)
    for path in build_engines(args.onnx, args.out, parse_only(args.only) or None, args.fp16, args.timing_cache):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
