"""What the runtime and the exporter agree on about exported artifacts (ONNX folders, engines).

Both sides import this module (export/ builds to it, the graph backends read with it); it
imports nothing of theirs. An export folder is tied to the exact weights it was made from:
`model_fingerprint` hashes the config and every weight (as float32), the same for a checkpoint
folder and a random preset, and `export_manifest.json` records it with the contract version.
`read_onnx_manifest` refuses a folder made from other weights or by another contract version.

Where a backend looks for artifacts when given no folder: `onnx_cache_dir(fingerprint)` =
`$OBJAUDIO_CACHE/onnx/<fingerprint>` (default `~/.cache/objaudio`), which
`python -m export.onnx --cache` fills; `trt_cache_dir(fingerprint)` likewise for TensorRT engines.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .errors import ObjaudioError, check
from .model import COMPONENTS, GraphModel, ObjaudioModel

MANIFEST = "export_manifest.json"
FORMAT = "objaudio-onnx"
# The graph contract this runtime feeds (export.contracts builds graphs to it): bump on any
# change of a wrapper, a name, an input's shape or a profile; cached exports are then redone.
CONTRACT_VERSION = 1
RUNTIME_NETWORKS = ("unet", "vae_decoder", "vocoder", "image_encoder", "text_encoder")


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
    return weights_fingerprint(model.config.to_dict(), {name: getattr(model, name) for name in COMPONENTS})


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


def check_sidecar(artifact: str | os.PathLike, expected: dict, fmt: str, checked: dict[str, str],
                  rebuild: str) -> dict:
    """A compiled artifact's sidecar (`artifact`.json: what it was built for) checked against `expected`
    on the keys of `checked` (key -> label); returns the sidecar. One missing, corrupt or stale
    raises ObjaudioError naming every difference and the `rebuild` command. TensorRT engines
    (backends.tensorrt) and AOTInductor packages (aoti.py) are checked here, each with its format."""
    artifact = Path(artifact)
    sidecar_path = Path(f"{artifact}.json")
    check(artifact.is_file(), f"engine not found: {artifact}; {rebuild}")
    check(sidecar_path.is_file(), f"engine {artifact.name} has no sidecar {sidecar_path.name}, so what it "
                                  f"was built for is unknown; {rebuild}")
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ObjaudioError(f"engine sidecar {sidecar_path} is corrupt ({exc}); {rebuild}") from None
    check(isinstance(sidecar, dict) and sidecar.get("format") == fmt,
          f"{sidecar_path} is not an objaudio {fmt} sidecar; {rebuild}")
    diffs = [f"{label} {sidecar.get(key)!s:.16} (now {expected[key]!s:.16})"
             for key, label in checked.items() if key in expected and sidecar.get(key) != expected[key]]
    if diffs:
        raise ObjaudioError(f"engine {artifact.name} is stale: built for " + ", ".join(diffs) + f"; {rebuild}")
    return sidecar


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
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ObjaudioError(f"{path} is corrupt ({exc}): delete {folder} and export again") from None
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
