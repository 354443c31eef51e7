"""Fused kernels for the two per-step hot spots outside the UNet, one op per file, each beside its reference.

sampler_step  guided CFG + sampler update in one pass (reference: samplers.reference_step)
grounding     single-query grounding attention pool (reference: GroundingAttention)

Each op has one name (`objaudio::guided_step`, `objaudio::grounding_pool`) and picks its
implementation by where the tensors are: the CUDA C++ kernel (csrc/<op>.cu, objaudio_rt._C) on
CUDA where it is built, else the Triton kernel (CUDA, or the CPU under TRITON_INTERPRET=1), else
the PyTorch reference.
"""
from ._cuda import cuda_available
from .grounding import fused_pooled_values, grounding_pool, query_key_vector
from .sampler_step import guided_step, guided_step_into, upload_coefs

__all__ = ["cuda_available", "fused_pooled_values", "grounding_pool", "guided_step", "guided_step_into",
           "query_key_vector", "upload_coefs"]
