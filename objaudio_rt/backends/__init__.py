"""Backends: one interface (base.py), one module per backend, and this registry, the one place a
backend is built (by the Pipeline, the CLI and benchmarks/latency.py).

    eager        plain PyTorch, the reference (eager.py)
    fast         fused kernels, per-network dtypes, the loop as a CUDA graph (fast.py)
    onnxruntime  the exported ONNX graphs (onnxruntime.py)
    tensorrt     TensorRT engines built from them (tensorrt.py)

Backend modules are imported only when built: onnxruntime and TensorRT are optional.
"""
from __future__ import annotations

import importlib
import inspect

import torch

from ..errors import ObjaudioError, check
from ..model import ObjaudioModel
from ..options import BACKENDS
from .base import DTYPES, Backend
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


def make_backend(name: str, model: ObjaudioModel, device: torch.device, **options) -> Backend:
    """Build backend `name` for `model` on `device`. Options are the backend's (`backend_options`);
    dtypes may be given as "fp32", "fp16" or "bf16"."""
    cls = backend_class(name)
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


__all__ = ["BACKENDS", "DTYPES", "Backend", "backend_class", "backend_options", "make_backend"]
