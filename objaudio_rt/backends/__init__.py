"""Backends: one interface (base.py), one module per backend, and this registry, the one place a
backend is built (by the Pipeline, the CLI and benchmarks/latency.py).

    eager        plain PyTorch, the reference (eager.py)
    fast         fused kernels, per-network dtypes, the loop as a CUDA graph (fast.py)
    onnxruntime  the exported ONNX graphs (onnxruntime.py)
    tensorrt     TensorRT engines built from them (tensorrt.py)

Their compile helpers live beside them: aoti.py (AOTInductor packages of the UNet, loaded by fast)
and unet_patch.py (fused GroupNorm+SiLU and GEGLU modules swapped into diffusers' UNet and VAE).

Backend modules are imported only when built: onnxruntime and TensorRT are optional.
`resolve_backend` turns "auto" (the command line's default) into the fastest backend ready here.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Callable

import torch

from ..core.errors import ObjaudioError, check
from ..modelio.model import GraphModel, ObjaudioModel
from ..core.options import BACKEND_CHOICES, BACKENDS, GRAPH_BACKENDS
from .base import DTYPES, Backend, native_bf16
_CLASSES = {"eager": ("eager", "EagerBackend"), "fast": ("fast", "FastBackend"),
            "onnxruntime": ("onnxruntime", "OnnxRuntimeBackend"), "tensorrt": ("tensorrt", "TensorRTBackend")}


def backend_class(name: str) -> type[Backend]:
    check(name in BACKENDS, f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    module, cls = _CLASSES[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def backend_options(name: str) -> tuple[str, ...]:
    """The options `make_backend(name, ...)` takes (FastOptions' fields for fast)."""
    if name == "fast":
        from .fast import FastOptions

        return tuple(FastOptions.__dataclass_fields__)
    params = inspect.signature(backend_class(name).__init__).parameters
    return tuple(p for p in params if p not in ("self", "model", "device"))


def resolve_backend(name: str, device: torch.device, fingerprint: Callable[[], str],
                    options: dict | None = None, many_clips: bool = False) -> str:
    """`name`, or for "auto" the fastest backend ready for these weights on `device` that takes `options`:

    - CUDA: fast (fused kernels, the loop as a CUDA graph), then eager
    - CPU: onnxruntime when the cache holds this model's ONNX graphs (`python -m export.onnx --cache`;
      `make demo` builds them for the embedded model) and onnxruntime is installed: it starts without
      importing diffusers, transformers or open_clip (most of a short run's start-up: 3.8 s to eager's
      10.5 s for one `objaudio generate`) and runs the UNet faster than eager PyTorch
      (benchmarks/startup.py measures both); else eager
    - CPU, `many_clips` (a process that generates clip after clip: the service, a Python host) on a CPU
      with native bfloat16 (base.native_bf16): fast first. Its CPU defaults (the VAE in bf16, the
      channels_last vocoder) make each clip cheaper than onnxruntime's fp32 graphs, and its longer
      start-up is paid once (tiny-synth, 2 threads, benchmarks.fewstep: 0.114 s a 4-step clip to
      onnxruntime's 0.133, 0.774 s a 20-step one to 0.788)

    `fingerprint()` gives the weights' fingerprint (called only for the CPU check)."""
    check(name in BACKEND_CHOICES, f"unknown backend {name!r}: use one of {', '.join(BACKEND_CHOICES)}")
    if name != "auto":
        return name
    if device.type == "cuda":
        preferred = ["fast", "eager"]
    elif many_clips and native_bf16():
        preferred = ["fast", "onnxruntime", "eager"]
    else:
        preferred = ["onnxruntime", "eager", "fast"]
    given = set(options or {})
    for candidate in preferred:
        if given <= set(backend_options(candidate)) and (candidate != "onnxruntime" or _onnx_ready(fingerprint)):
            return candidate
    raise ObjaudioError(f"no backend takes the options {', '.join(sorted(given))} together: name one with --backend")


def _onnx_ready(fingerprint: Callable[[], str]) -> bool:
    """Whether onnxruntime is installed and the cache holds current ONNX graphs of these weights."""
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    from ..modelio.artifacts import CONTRACT_VERSION, RUNTIME_NETWORKS, cache_root, onnx_cache_dir, read_onnx_manifest

    if not (cache_root() / "onnx").is_dir():
        return False                       # nothing exported at all: no need to read and hash the weights
    key = fingerprint()
    try:
        read_onnx_manifest(onnx_cache_dir(key), key, CONTRACT_VERSION, RUNTIME_NETWORKS)
    except ObjaudioError:                  # none cached, or stale
        return False
    return True


def make_backend(name: str, model: ObjaudioModel | GraphModel, device: torch.device, **options) -> Backend:
    """Build backend `name` for `model` on `device`. Options are the backend's (`backend_options`);
    dtypes may be given as "fp32", "fp16" or "bf16". A GraphModel (no PyTorch networks) serves only
    the graph backends."""
    cls = backend_class(name)
    check(name in GRAPH_BACKENDS or isinstance(model, ObjaudioModel),
          f"the {name} backend runs the PyTorch networks: load the model with load_checkpoint, not load_graph_model")
    allowed = backend_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ObjaudioError(f"the {name} backend has no option {', '.join(unknown)}: "
                            f"it takes {', '.join(allowed) or 'none'}")
    options = {k: _dtype(k, v) if k.endswith("dtype") else v for k, v in options.items()}
    if name == "fast":
        from .fast import FastOptions

        return cls(model, device, FastOptions.default_for(device, **options))
    return cls(model, device, **options)


def _dtype(option: str, value):
    if isinstance(value, torch.dtype):
        return value
    check(value in DTYPES, f"{option} must be one of {', '.join(DTYPES)}, got {value!r}")
    return DTYPES[value]


__all__ = ["BACKENDS", "DTYPES", "Backend", "backend_class", "backend_options", "make_backend", "resolve_backend"]
