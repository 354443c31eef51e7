"""Fused kernels, one op per file, each beside its reference.

sampler_step  guided CFG + sampler update in one pass (reference: samplers.reference_step)
grounding     single-query grounding attention pool (reference: GroundingAttention)
group_norm    GroupNorm (+ time-embedding shift, + SiLU) in one pass, any layout (reference:
              F.group_norm + F.silu; patched into the UNet and VAE by objaudio_rt.backends.unet_patch)
geglu         the attention block's GEGLU feed-forward activation (reference: diffusers' GEGLU)

Each op has one name (`objaudio::guided_step`, `objaudio::grounding_pool`, `objaudio::group_norm_act`,
`objaudio::geglu`) and picks its implementation by where the tensors are: the CUDA C++ kernel
(csrc/<op>.cu, objaudio_rt._C) on CUDA where it is built (sampler_step and grounding only: no C++
host needs the UNet kernels), else the Triton kernel (CUDA, or the CPU under TRITON_INTERPRET=1),
else the PyTorch reference.
"""
from ._cuda import cuda_available
from .geglu import geglu
from .group_norm import group_norm_act
from .grounding import fused_pooled_values, grounding_pool, query_key_vector
from .sampler_step import guided_step, guided_step_into, upload_coefs

__all__ = ["cuda_available", "fused_pooled_values", "geglu", "group_norm_act", "grounding_pool", "guided_step",
           "guided_step_into", "query_key_vector", "upload_coefs"]
