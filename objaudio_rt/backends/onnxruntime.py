"""ONNX Runtime backend: the graphs `python -m export.onnx` writes, run by onnxruntime.

The folder: `onnx_dir` when given, else the cache folder of these weights
(artifacts.onnx_cache_dir: `$OBJAUDIO_CACHE/onnx/<fingerprint>`), which
`python -m export.onnx --cache` fills. The runtime never exports: without graphs it says which
command builds them.

CPU execution provider with torch's intra-op thread count (the run's `--threads`), or CUDA when the device is cuda and onnxruntime-gpu is installed. Not
exercised here: the CUDA provider path (no onnxruntime-gpu on any machine of this project). It
feeds host numpy arrays, so each call copies through the host and the loop is not graphed;
IOBinding on device pointers would remove those copies.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..artifacts import CONTRACT_VERSION, MANIFEST, RUNTIME_NETWORKS, onnx_cache_dir, read_onnx_manifest
from ..errors import ObjaudioError, check
from ..model import GraphModel, ObjaudioModel
from .graph import GraphBackend


class OnnxRuntimeBackend(GraphBackend):
    name = "onnxruntime"

    def __init__(self, model: ObjaudioModel | GraphModel, device: torch.device, onnx_dir: str | os.PathLike | None = None):
        import onnxruntime as ort

        super().__init__(model, device)
        if onnx_dir is None:
            onnx_dir = onnx_cache_dir(self.fingerprint)
            if not (onnx_dir / MANIFEST).is_file():
                raise ObjaudioError(f"no ONNX graphs of these weights in {onnx_dir}: build them with "
                                    "`python -m export.onnx --cache --checkpoint CHECKPOINT` (the same checkpoint "
                                    "or --preset), or pass onnx_dir")
        self.onnx_dir = Path(onnx_dir)
        manifest = read_onnx_manifest(self.onnx_dir, self.fingerprint, CONTRACT_VERSION, RUNTIME_NETWORKS)
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            check("CUDAExecutionProvider" in ort.get_available_providers(),
                  "this onnxruntime has no CUDA provider: pip install onnxruntime-gpu, or use --device cpu")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        settings = ort.SessionOptions()
        settings.intra_op_num_threads = torch.get_num_threads()   # the run's choice (threads.use_threads)
        settings.log_severity_level = 3                           # errors only: its warnings are not the user's
        # no spin-waiting between calls: the host's work between UNet calls gets the core (measured on the
        # tiny-synth UNet, 2 threads: 56 ms a call without, 58 ms with)
        settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sessions = {}
        self.input_names = {}
        for name in RUNTIME_NETWORKS:
            entry = manifest["networks"][name]
            self.sessions[name] = ort.InferenceSession(str(self.onnx_dir / entry["file"]), settings,
                                                       providers=providers)
            self.input_names[name] = [spec["name"] for spec in entry["contract"]["inputs"]]

    def run(self, network: str, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {name: x.detach().cpu().contiguous().numpy() for name, x in zip(self.input_names[network], inputs)}
        out = self.sessions[network].run(None, feed)[0]
        return torch.from_numpy(np.ascontiguousarray(out)).to(self.device)
