"""The compiled CUDA C++ kernels (csrc/), registered as torch custom ops.

`objaudio_rt._C` is built by setup.py only where CUDA is available (or OBJAUDIO_BUILD_CUDA=1);
elsewhere these ops raise and `cuda_available()` is False. Same math as the Triton kernels
(sampler_step.py, grounding.py), whose references they are tested against.
"""
from __future__ import annotations

import torch

from ..errors import ObjaudioError

try:
    from .. import _C
except ImportError:
    _C = None


def cuda_available() -> bool:
    """True when the compiled extension loaded and a CUDA device is visible."""
    return _C is not None and torch.cuda.is_available()


def _extension():
    if _C is None:
        raise ObjaudioError("objaudio_rt._C is not built: reinstall on a machine with nvcc and torch "
                            "(OBJAUDIO_BUILD_CUDA=1 pip install -e .), or use the Triton ops")
    return _C


@torch.library.custom_op("objaudio::guided_step_cuda", mutates_args=())
def guided_step_cuda(coefs: torch.Tensor, step_idx: torch.Tensor, x: torch.Tensor, eps_pair: torch.Tensor,
                     cfg: float, x0_prev: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """CUDA twin of kernels.sampler_step.guided_step: coefs (S, 5) fp32, step_idx one int64, all on
    one CUDA device; x, eps_pair, x0_prev contiguous in one dtype. Returns (x_next, x0)."""
    return _extension().guided_step(coefs, step_idx, x, eps_pair, cfg, x0_prev)


@guided_step_cuda.register_fake
def _(coefs, step_idx, x, eps_pair, cfg, x0_prev):
    return torch.empty_like(x), torch.empty_like(x)


@torch.library.custom_op("objaudio::grounding_pool_cuda", mutates_args=())
def grounding_pool_cuda(tokens: torch.Tensor, pe: torch.Tensor, k_vec: torch.Tensor | None,
                        weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """CUDA twin of kernels.grounding.grounding_pool: returns (pooled (B, L), weights (B, P)), fp32."""
    return _extension().grounding_pool(tokens, pe, k_vec, weights)


@grounding_pool_cuda.register_fake
def _(tokens, pe, k_vec, weights):
    b = (k_vec if k_vec is not None else weights).shape[0]
    return (tokens.new_empty((b, pe.shape[1]), dtype=torch.float32),
            tokens.new_empty((b, pe.shape[0]), dtype=torch.float32))
