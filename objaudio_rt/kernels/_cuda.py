"""The compiled CUDA C++ kernels (csrc/, built as objaudio_rt._C), where they are built.

Each op (`objaudio::guided_step`, `objaudio::grounding_pool`) has ONE name: on a CUDA tensor it
runs the CUDA C++ kernel when objaudio_rt._C is built (setup.py builds it where CUDA is
available, or with OBJAUDIO_BUILD_CUDA=1), else its Triton kernel; elsewhere its PyTorch
reference. The C++ kernels compute the same math as the Triton ones and are held to the same
references by tests/kernels.
"""
from __future__ import annotations

import torch

from ..core.errors import ObjaudioError

try:
    from .. import _C
except ImportError:
    _C = None


def cuda_available() -> bool:
    """True when the compiled extension loaded and a CUDA device is visible."""
    return _C is not None and torch.cuda.is_available()


def runs_cuda_cpp(*tensors: torch.Tensor | None) -> bool:
    """True when the C++ kernel takes these tensors: extension built, all on CUDA, one dtype."""
    given = [t for t in tensors if t is not None]
    return _C is not None and all(t.is_cuda for t in given) and len({t.dtype for t in given}) == 1


def extension():
    """objaudio_rt._C (its `guided_step`, `grounding_pool`), or a one-line error saying how to build it."""
    if _C is None:
        raise ObjaudioError("objaudio_rt._C is not built: reinstall on a machine with nvcc and torch "
                            "(OBJAUDIO_BUILD_CUDA=1 pip install --no-build-isolation -e .), or use the Triton ops")
    return _C
