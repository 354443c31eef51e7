"""ONNX Runtime backend: the graphs `python -m export.onnx` writes, run by onnxruntime.

The folder: `onnx_dir` when given, else the cache folder of these weights
(artifacts.onnx_cache_dir: `$OBJAUDIO_CACHE/onnx/<fingerprint>`), which
`python -m export.onnx --cache` fills. The runtime never exports: without graphs it says which
command builds them.

CPU execution provider with torch's intra-op thread count (the run's `--threads`), or CUDA when the device is cuda and onnxruntime-gpu is installed. Not
exercised here: the CUDA provider path (no onnxruntime-gpu on any machine of this project). It
feeds host numpy arrays, so each call copies through the host and the loop is not graphed;
IOBinding on device pointers would remove those copies.

On the CPU each session is created once from the exported graph with ONNX Runtime's full graph
optimisation, which also saves the optimised graph (`artifacts.ort_optimized_dir`); later runs load
that copy with optimisation off. The copy holds CPU-specific layouts (NCHWc blocks for this vector
ISA), so its name carries the source graph's digest, size and mtime, the onnxruntime version, the
machine and torch's CPU capability; a copy that fails to load is deleted and made again. Measured on
the tiny-synth UNet (2-core AVX2 CPU): 0.52 s to create the session from the export, 0.15 s from the
optimised copy, the same outputs bit for bit and the same speed.
"""
from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import numpy as np
import torch

from ..modelio.artifacts import (CONTRACT_VERSION, MANIFEST, RUNTIME_NETWORKS, onnx_cache_dir, ort_optimized_dir,
                         read_onnx_manifest)
from ..core.errors import ObjaudioError, check
from ..modelio.model import GraphModel, ObjaudioModel
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
                                    "`python -m export.onnx --cache --checkpoint CHECKPOINT` (the same checkpoint: "
                                    "a folder, tiny-synth or random:PRESET), or pass onnx_dir")
        self.onnx_dir = Path(onnx_dir)
        manifest = read_onnx_manifest(self.onnx_dir, self.fingerprint, CONTRACT_VERSION, RUNTIME_NETWORKS)
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            check("CUDAExecutionProvider" in ort.get_available_providers(),
                  "this onnxruntime has no CUDA provider: pip install onnxruntime-gpu, or use --device cpu")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        threads = torch.get_num_threads()                         # the run's choice (threads.use_threads)
        self.sessions = {}
        self.input_names = {}
        self.optimized_from_cache = {}              # network -> its session came from the optimised copy
        for name in RUNTIME_NETWORKS:
            entry = manifest["networks"][name]
            graph = self.onnx_dir / entry["file"]
            if device.type == "cpu" and len(entry["files"]) == 1:     # no external data: one file to optimise
                self.sessions[name], self.optimized_from_cache[name] = _cpu_session(ort, graph, entry, threads)
            else:
                self.sessions[name] = ort.InferenceSession(str(graph), _options(ort, threads), providers=providers)
            self.input_names[name] = [spec["name"] for spec in entry["contract"]["inputs"]]

    def run(self, network: str, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {name: x.detach().cpu().contiguous().numpy() for name, x in zip(self.input_names[network], inputs)}
        out = self.sessions[network].run(None, feed)[0]
        return torch.from_numpy(np.ascontiguousarray(out)).to(self.device)


def _options(ort, threads: int, optimize: bool = True, save_to: Path | None = None):
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = threads                   # the run's choice (threads.use_threads)
    settings.log_severity_level = 3                           # errors only: its warnings are not the user's
    # no spin-waiting between calls: the host's work between UNet calls gets the core (measured on the
    # tiny-synth UNet, 2 threads: 56 ms a call without, 58 ms with)
    settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if save_to is not None:
        settings.optimized_model_filepath = str(save_to)
    return settings


def _cpu_session(ort, graph: Path, entry: dict, threads: int):
    """(session, whether it came from the optimised copy) for one exported graph on the CPU provider.
    The copy is a cache: failing to read or write it never fails the run."""
    stat = graph.stat()
    key = hashlib.sha256("|".join([entry["files"][entry["file"]], str(stat.st_size), str(stat.st_mtime_ns),
                                   ort.__version__, platform.machine(), torch.backends.cpu.get_cpu_capability()])
                         .encode()).hexdigest()[:24]
    copy = ort_optimized_dir() / f"{graph.stem}-{key}.onnx"
    cpu = ["CPUExecutionProvider"]
    if copy.is_file():
        try:
            return ort.InferenceSession(str(copy), _options(ort, threads, optimize=False), providers=cpu), True
        except Exception:                         # damaged, or from a build that reads it otherwise: redo it
            _remove(copy)
    partial = copy.with_name(f".{copy.name}.{os.getpid()}.partial")
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        session = ort.InferenceSession(str(graph), _options(ort, threads, save_to=partial), providers=cpu)
    except Exception:                             # a read-only or full cache: optimise in memory, as before
        _remove(partial)
        return ort.InferenceSession(str(graph), _options(ort, threads), providers=cpu), False
    try:
        os.replace(partial, copy)                 # atomic: a concurrent run sees the whole file or none
    except OSError:
        _remove(partial)
    return session, False


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:                               # its folder is gone or is not one: nothing to remove
        pass
