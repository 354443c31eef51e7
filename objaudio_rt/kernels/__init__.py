"""Fused kernels, one op per file, each beside its reference.

sampler_step  guided CFG + sampler update in one pass (Triton; reference: samplers.reference_step)
grounding     single-query grounding attention pool (Triton; reference: GroundingAttention)
group_norm    GroupNorm (+ time-embedding shift, + SiLU) in one pass, any layout (Triton; patched into
              the UNet and VAE by objaudio_rt.unet_patch)
geglu         the attention block's GEGLU feed-forward activation (Triton; patched in likewise)
cuda          sampler_step and grounding compiled from csrc/ (objaudio_rt._C), when built (the UNet kernels
              have no csrc/ twin: no C++ host needs them)
"""
from .cuda import cuda_available, grounding_pool_cuda, guided_step_cuda
from .geglu import geglu
from .group_norm import group_norm_act
from .grounding import fused_pooled_values, grounding_pool, query_key_vector
from .sampler_step import guided_step, guided_step_into, upload_coefs

__all__ = ["cuda_available", "fused_pooled_values", "geglu", "group_norm_act", "grounding_pool", "grounding_pool_cuda",
           "guided_step", "guided_step_cuda", "guided_step_into", "query_key_vector", "upload_coefs"]
