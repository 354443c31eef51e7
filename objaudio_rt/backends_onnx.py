"""ONNX Runtime backend, and what every exported-graph backend shares.

`GraphBackend` puts the five networks the pipeline calls through exported graphs and keeps
everything else of `EagerBackend`: the denoising loop (`denoise`, unchanged), the model itself
(the pipeline reads `model.grounding`, `model.text_encoder.tokenizer`,
`model.image_encoder.preprocess` and the config from it). Grounding stays in PyTorch: the
pipeline calls `model.grounding` directly, and it is a few small mat-vecs; its two graphs are
exported and verified by `export.onnx` for hosts that run without PyTorch.

An export folder is tied to the exact weights it was made from: `model_fingerprint` hashes the
config and every weight (as float32), the same for a checkpoint folder and a random preset, and
`export_manifest.json` records it with the contract version. `read_onnx_manifest` refuses a
folder made from other weights or by another contract version.

Where the ONNX folder comes from: `OnnxRuntimeBackend(model, device, onnx_dir=...)` uses the
given folder; without one (as `Pipeline(..., backend="onnxruntime")` does) it uses
`$OBJAUDIO_CACHE/onnx/<fingerprint>` (default `~/.cache/objaudio`) and exports into it on first
use with `export.onnx` (the exporter package must be importable: run from the repository).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from .backends import EagerBackend
from .errors import ObjaudioError, check
from .model import COMPONENTS, ObjaudioModel

MANIFEST = "export_manifest.json"
FORMAT = "objaudio-onnx"
# The graph contract this runtime feeds (export.contracts builds graphs to it): bump on any
# change of a wrapper, a name, an input's shape or a profile; cached exports are then redone.
CONTRACT_VERSION = 1
RUNTIME_NETWORKS = ("unet", "vae_decoder", "vocoder", "image_encoder", "text_encoder")


def weights_fingerprint(config: dict, modules: dict[str, torch.nn.Module]) -> str:
    """sha256 of a config and every weight of `modules` (cast to float32 on the CPU), in a fixed order."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, module in modules.items():
        for key, value in sorted(module.state_dict().items()):
            t = value.detach().to("cpu", torch.float32 if value.is_floating_point() else value.dtype).contiguous()
            h.update(f"{name}.{key}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def model_fingerprint(model: ObjaudioModel) -> str:
    """What an export folder is tied to: the same for a checkpoint folder and a random preset."""
    return weights_fingerprint(model.config.to_dict(), {name: getattr(model, name) for name in COMPONENTS})


def cache_root() -> Path:
    return Path(os.environ.get("OBJAUDIO_CACHE") or Path.home() / ".cache" / "objaudio")


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


class GraphBackend(EagerBackend):
    """The networks through exported graphs (`run`); the loop, the model and grounding as EagerBackend.

    All tensors cross `run` as float32 (int64 for ids, masks and timesteps), whatever precision
    the graph computes in: fp16 graphs keep float32 inputs and outputs.
    """

    def __init__(self, model: ObjaudioModel, device: torch.device):
        super().__init__(model, device, torch.float32)

    def run(self, network: str, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement run")

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.run("image_encoder", pixels.to(self.device, torch.float32))

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.run("text_encoder", input_ids.to(self.device), attention_mask.to(self.device))

    def unet_eps(self, x2: torch.Tensor, t: torch.Tensor, cond2: torch.Tensor) -> torch.Tensor:
        """x2: (2B, C, H, W), t: () int64 -> fed as (1,), cond2: (2B, cond_dim)."""
        return self.run("unet", x2.float(), t.reshape(1).to(self.device, torch.int64), cond2.float())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The graph holds the NaN guard, / scaling_factor and the squeeze (export.contracts)."""
        return self.run("vae_decoder", z.float())

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.run("vocoder", mel.float())


def ensure_export(model: ObjaudioModel, fingerprint: str, folder: Path, networks: tuple[str, ...]) -> None:
    """Export `networks` into `folder` unless it already holds them for these weights (the cache path)."""
    try:
        from export.onnx import export_networks
    except ImportError as exc:
        raise ObjaudioError(f"no ONNX export in {folder} and the exporter is not importable ({exc}): run "
                            f"`python -m export.onnx --out {folder}` from the objaudio repository") from None
    export_networks(model, folder, networks, fingerprint=fingerprint, source="runtime cache")


class OnnxRuntimeBackend(GraphBackend):
    """CPU execution provider, or CUDA when the device is cuda and onnxruntime-gpu is installed.

    Not exercised here: the CUDA provider path (no onnxruntime-gpu on any machine of this
    project). It feeds host numpy arrays, so each call copies through the host; IOBinding on
    device pointers would remove those copies.
    """
    name = "onnxruntime"

    def __init__(self, model: ObjaudioModel, device: torch.device, onnx_dir: str | os.PathLike | None = None):
        import onnxruntime as ort

        super().__init__(model, device)
        fingerprint = model_fingerprint(self.model)
        if onnx_dir is None:
            onnx_dir = cache_root() / "onnx" / fingerprint[:32]
            try:
                read_onnx_manifest(onnx_dir, fingerprint, CONTRACT_VERSION, RUNTIME_NETWORKS)
            except ObjaudioError:
                ensure_export(self.model, fingerprint, Path(onnx_dir), RUNTIME_NETWORKS)
        self.onnx_dir = Path(onnx_dir)
        manifest = read_onnx_manifest(self.onnx_dir, fingerprint, CONTRACT_VERSION, RUNTIME_NETWORKS)
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            check("CUDAExecutionProvider" in ort.get_available_providers(),
                  "this onnxruntime has no CUDA provider: pip install onnxruntime-gpu, or use --device cpu")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        self.sessions = {}
        self.input_names = {}
        for name in RUNTIME_NETWORKS:
            entry = manifest["networks"][name]
            self.sessions[name] = ort.InferenceSession(str(self.onnx_dir / entry["file"]), providers=providers)
            self.input_names[name] = [spec["name"] for spec in entry["contract"]["inputs"]]

    def run(self, network: str, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {name: x.detach().cpu().contiguous().numpy() for name, x in zip(self.input_names[network], inputs)}
        out = self.sessions[network].run(None, feed)[0]
        return torch.from_numpy(np.ascontiguousarray(out)).to(self.device)
