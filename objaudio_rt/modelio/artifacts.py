"""What the runtime and the exporter agree on about exported artifacts (ONNX folders, engines).

Both sides import this module (export/ builds to it, the graph backends read with it); it
imports nothing of theirs. An export folder is tied to the exact weights it was made from:
`model_fingerprint` hashes the config and every weight (as float32), the same for a checkpoint
folder and a random preset, and `export_manifest.json` records it with the contract version.
`read_onnx_manifest` refuses a folder made from other weights or by another contract version.

Where a backend looks for artifacts when given no folder: `onnx_cache_dir(fingerprint)` =
`$OBJAUDIO_CACHE/onnx/<fingerprint>` (default `~/.cache/objaudio`), which
`python -m export.onnx --cache` fills; `trt_cache_dir(fingerprint)` likewise for TensorRT engines.

It is also the one home of what every artifact shares: the network names (`MODEL_NETWORKS` ...),
reading a JSON artifact (`read_json`: one error wording for missing, unreadable, corrupt files),
writing one atomically (`replacing`, `write_bytes_atomic`, `write_json_atomic`), the identity of the
machine compiled code is tied to (`current_platform`), and the TensorRT engine sidecar
(`engine_sidecar`, `check_engine_sidecar`) that export.trt writes and backends.tensorrt checks.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ..core.errors import ObjaudioError, check
from .model import GraphModel, ObjaudioModel, components

MANIFEST = "export_manifest.json"
FORMAT = "objaudio-onnx"
# The graph contract this runtime feeds (export.contracts builds graphs to it): bump on any
# change of a wrapper, a name, an input's shape or a profile; cached exports are then redone.
CONTRACT_VERSION = 2                 # 2: the vocoder graph in 2-D convolutions (networks.HifiGan2d)

# The networks by name (export.contracts builds one graph contract per name):
RUNTIME_NETWORKS = ("unet", "vae_decoder", "vocoder", "image_encoder", "text_encoder")   # the graph backends run
MODEL_NETWORKS = RUNTIME_NETWORKS + ("grounding_attention", "grounding_condition")       # a model's, all exported
SAM_NETWORKS = ("sam_image_encoder", "sam_mask_decoder")
# libobjaudio's engine folder (export.engine), in data-path order as csrc/libobjaudio/spec.cpp lists them
ENGINE_NETWORKS = ("image_encoder", "grounding_condition", "unet", "vae_decoder", "vocoder")
ENGINE_DISTILLED_NETWORKS = ("guidance_embedding",)     # and a guidance-distilled model's (engine.json "distilled")

TRT_SIDECAR_FORMAT = "objaudio-trt-engine"
# sidecar key -> how an error names it
TRT_CHECKED = {"tensorrt_version": "TensorRT version", "compute_capability": "GPU compute capability",
               "checkpoint": "checkpoint weights", "contract_version": "export contract version"}


# ---- fingerprints and cache folders -------------------------------------------------------------
def weights_fingerprint(config: dict, modules: dict[str, torch.nn.Module]) -> str:
    """sha256 of a config and every weight of `modules` (cast to float32 on the CPU), in a fixed order."""
    return tensors_fingerprint(config, {name: module.state_dict() for name, module in modules.items()})


def tensors_fingerprint(config: dict, states: dict[str, dict[str, torch.Tensor]]) -> str:
    """weights_fingerprint over state dicts (component -> key -> tensor), as a checkpoint's files hold them."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, state in states.items():
        for key, value in sorted(state.items()):
            t = value.detach().to("cpu", torch.float32 if value.is_floating_point() else value.dtype).contiguous()
            h.update(f"{name}.{key}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def model_fingerprint(model: ObjaudioModel | GraphModel) -> str:
    """What an export folder is tied to: the same for a checkpoint folder and a random preset (and a
    GraphModel carries the one its checkpoint's files give)."""
    if isinstance(model, GraphModel):
        return model.fingerprint
    return weights_fingerprint(model.config.to_dict(), {name: getattr(model, name) for name in components(model.config)})


def cache_root() -> Path:
    return Path(os.environ.get("OBJAUDIO_CACHE") or Path.home() / ".cache" / "objaudio")


def onnx_cache_dir(fingerprint: str) -> Path:
    """Where the ONNX graphs of the weights with this fingerprint live when no folder is given."""
    return cache_root() / "onnx" / fingerprint[:32]


def ort_optimized_dir() -> Path:
    """Where ONNX Runtime's optimised copies of exported graphs live (backends/onnxruntime.py): one file
    per source graph, onnxruntime version and CPU, so any checkpoint's graphs share the folder."""
    return cache_root() / "ort-optimized"


def trt_cache_dir(fingerprint: str) -> Path:
    """Where the TensorRT engines of the weights with this fingerprint live when no folder is given."""
    return cache_root() / "trt" / fingerprint[:32]


# ---- reading and writing ------------------------------------------------------------------------
def read_json(path: str | os.PathLike, owner: str, fix: str) -> dict:
    """The JSON object in `path`, a file of `owner` ("checkpoint DIR", "engine unet.plan"). A file that is
    missing, unreadable, not JSON or not an object raises ObjaudioError saying which, then `fix`."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ObjaudioError(f"{owner} has no {path.name}: {fix}") from None
    except OSError as exc:
        raise ObjaudioError(f"cannot read {path.name} of {owner} ({exc.strerror or exc}): {fix}") from None
    except ValueError as exc:                    # json.JSONDecodeError, UnicodeDecodeError
        raise ObjaudioError(f"{owner} has a corrupt {path.name} ({exc}): {fix}") from None
    check(isinstance(data, dict), f"{owner} has a corrupt {path.name} (not a JSON object): {fix}")
    return data


@contextmanager
def replacing(path: str | os.PathLike, suffix: str = ".part", fsync: bool = False) -> Iterator[Path]:
    """A temporary file beside `path` for the caller to write (by name, for writers that take a path).
    Leaving the block normally makes it `path` (mode 0o644, os.replace: a reader sees the old file or
    the new one, never part of either); an exception removes it and leaves `path` as it was. `suffix`
    ends the temporary name (AOTInductor insists on .pt2); `fsync` flushes it to disk first."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(tmp, 0o644)                     # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, fsync: bool = False) -> None:
    """`data` into `path`, all or nothing (`replacing`)."""
    with replacing(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, data: dict, fsync: bool = False) -> None:
    """`data` as indented JSON into `path`, all or nothing (`replacing`)."""
    write_bytes_atomic(path, json.dumps(data, indent=2).encode(), fsync)


# ---- platform -----------------------------------------------------------------------------------
def current_platform(device: torch.device) -> dict:
    """What code compiled on this machine for `device` is tied to: the GPU's compute capability and name,
    or the CPU's architecture and the vector ISA inductor compiles for (`platform_label`: as one string)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return {"device": "cuda", "compute_capability": f"{major}.{minor}",
                "gpu_name": torch.cuda.get_device_name(device)}
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    # inductor's ISA check imports torch.utils.cpp_extension, whose import warns "No CUDA runtime is found" on
    # a machine with a CUDA toolkit and no GPU: a note for building CUDA extensions, which no run does
    logging.getLogger("torch.utils.cpp_extension").addFilter(_no_cuda_runtime_note)
    return {"device": "cpu", "machine": platform.machine(), "vec_isa": str(pick_vec_isa() or "scalar")}


def platform_label(identity: dict) -> str:
    """A current_platform as one string, as AOTInductor sidecars record it: `cuda sm_90 NVIDIA H100 80GB HBM3`,
    `cpu x86_64 avx2`."""
    if identity["device"] == "cuda":
        return f"cuda sm_{identity['compute_capability'].replace('.', '')} {identity['gpu_name']}"
    return f"cpu {identity['machine']} {identity['vec_isa']}"


def _no_cuda_runtime_note(record: logging.LogRecord) -> bool:
    return "No CUDA runtime is found" not in record.getMessage()


# ---- checks -------------------------------------------------------------------------------------
def check_sidecar(artifact: str | os.PathLike, expected: dict, fmt: str, checked: dict[str, str],
                  rebuild: str) -> dict:
    """A compiled artifact's sidecar (`artifact`.json: what it was built for) checked against `expected`
    on the keys of `checked` (key -> label); returns the sidecar. One missing, corrupt or stale
    raises ObjaudioError naming every difference and the `rebuild` command. TensorRT engines
    (`check_engine_sidecar`) and AOTInductor packages (aoti.py) are checked here, each with its format."""
    artifact = Path(artifact)
    sidecar_path = Path(f"{artifact}.json")
    check(artifact.is_file(), f"engine not found: {artifact}; {rebuild}")
    check(sidecar_path.is_file(), f"engine {artifact.name} has no sidecar {sidecar_path.name}, so what it "
                                  f"was built for is unknown; {rebuild}")
    sidecar = read_json(sidecar_path, f"engine {artifact.name}", rebuild)
    check(sidecar.get("format") == fmt, f"{sidecar_path} is not an objaudio {fmt} sidecar; {rebuild}")
    diffs = [f"{label} {sidecar.get(key)!s:.16} (now {expected[key]!s:.16})"
             for key, label in checked.items() if key in expected and sidecar.get(key) != expected[key]]
    if diffs:
        raise ObjaudioError(f"engine {artifact.name} is stale: built for " + ", ".join(diffs) + f"; {rebuild}")
    return sidecar


def engine_sidecar(network: str, checkpoint: str, tensorrt_version: str, compute_capability: str,
                   fp16: bool, profile: dict, gpu_name: str = "") -> dict:
    """The sidecar `X.plan.json` of a TensorRT engine (export.trt writes it)."""
    return {"format": TRT_SIDECAR_FORMAT, "network": network, "checkpoint": checkpoint,
            "contract_version": CONTRACT_VERSION, "tensorrt_version": tensorrt_version,
            "compute_capability": compute_capability, "gpu_name": gpu_name, "fp16": fp16,
            "profile": {k: [list(s) for s in v] for k, v in profile.items()}}


def check_engine_sidecar(engine_path: str | os.PathLike, expected: dict, rebuild: str | None = None) -> dict:
    """A TensorRT engine's sidecar checked against `expected` (check_sidecar with the engines' format and
    checked keys): an engine runs only on the TensorRT version and GPU architecture it was built for."""
    rebuild = rebuild or f"rebuild it with `python -m export.trt --onnx ONNX_DIR --out {Path(engine_path).parent}`"
    return check_sidecar(engine_path, expected, TRT_SIDECAR_FORMAT, TRT_CHECKED, rebuild)


def read_onnx_manifest(folder: str | os.PathLike, fingerprint: str | None, contract_version: int | None,
                       networks: tuple[str, ...] = ()) -> dict:
    """The folder's export manifest, checked against the expected weights and contract version.

    fingerprint / contract_version None skip that check. Every network in `networks` must be
    listed and its file present.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    check(path.is_file(), f"{folder} is not an ONNX export folder (no {MANIFEST}): "
                          f"export one with `python -m export.onnx --out {folder}`")
    manifest = read_json(path, f"ONNX folder {folder}", f"delete {folder} and export again")
    check(manifest.get("format") == FORMAT, f"{path} is not an objaudio ONNX manifest")
    if fingerprint is not None and manifest["checkpoint"]["fingerprint"] != fingerprint:
        raise ObjaudioError(
            f"ONNX folder {folder} was exported from other weights (checkpoint "
            f"{manifest['checkpoint']['fingerprint'][:12]}, source {manifest['checkpoint']['source']}); this "
            f"model is {fingerprint[:12]}: export it again into another folder, or pass --force to replace it")
    if contract_version is not None and manifest["contract_version"] != contract_version:
        raise ObjaudioError(f"ONNX folder {folder} was written by export contract version "
                            f"{manifest['contract_version']}, this code needs {contract_version}: export it again")
    for name in networks:
        entry = manifest["networks"].get(name)
        check(entry is not None, f"ONNX folder {folder} has no {name} graph: export it with --only {name}")
        check((folder / entry["file"]).is_file(), f"ONNX folder {folder} lists {entry['file']} but the file "
                                                  "is missing: export again")
    return manifest
