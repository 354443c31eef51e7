"""Fused kernels for the two per-step hot spots outside the UNet, each beside its reference.

sampler_step  guided CFG + sampler update in one pass (Triton; reference: samplers.reference_step)
grounding     single-query grounding attention pool (Triton; reference: GroundingAttention)
cuda          the same two kernels compiled from csrc/ (objaudio_rt._C), when built
"""
from .cuda import cuda_available, grounding_pool_cuda, guided_step_cuda
from .grounding import fused_pooled_values, grounding_pool, query_key_vector
from .sampler_step import guided_step, guided_step_into, upload_coefs

__all__ = ["cuda_available", "fused_pooled_values", "grounding_pool", "grounding_pool_cuda", "guided_step",
           "guided_step_cuda", "guided_step_into", "query_key_vector", "upload_coefs"]
