"""Fused grounding attention for one query (or one mask) per selection, single-query algebra.

Reference: `objaudio_rt.core.grounding.GroundingAttention.attention` and `.pooled_values` (dot
attention, one head). With X = tokens + PE (P, L) and q = W_Q e_t + b_q (d_k):

    k_vec  = W_K^T q / sqrt(d_k)              (L,)    torch, O(L d_k)
    a      = softmax_p(X_p . k_vec)           (P,)    kernel  } one pass over X for the scores,
    pooled = a X                              (L,)    kernel  } one for the pooled vector
    o      = pooled W_V^T                     (d_v,)  torch, O(L d_v)

so a selection costs O(P L + L d_k) instead of the O(P L d_k) of forming K and V. The mask
path skips the scores: `a` is the given (already rescaled) patch weights. Many selections of
ONE image share its tokens: tokens (1, P, L) broadcast against B queries or masks.

Layers: `_grounding_pool_kernel` (Triton), `grounding_pool_into` (host launcher),
`grounding_pool` (the `objaudio::grounding_pool` custom op with a fake; on CUDA it runs
csrc/grounding.cu where it is built, kernels/_cuda.py, the Triton kernel otherwise), and
`fused_pooled_values` (the module-level entry, which runs the reference where neither can).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.errors import check
from ..core.grounding import GroundingAttention
from ._cuda import extension, runs_cuda_cpp
from ._triton import HAS_TRITON, runs_triton

MAX_PATCHES = 4096        # all P weights of one selection live in registers (Triton) / shared memory (CUDA C++);
                          # the one definition: setup.py and CMakeLists.txt pass it to csrc/ as OBJAUDIO_MAX_PATCHES
TILE_ELEMENTS = 8192      # BLOCK_P * BLOCK_L per loaded tile of X

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _x_tile(tok, pe_ptr, p, p_in, l0, L: tl.constexpr, BLOCK_L: tl.constexpr):
        """One (BLOCK_P, BLOCK_L) tile of X = tokens + PE in fp32, with its column indices and mask."""
        l = l0 + tl.arange(0, BLOCK_L)
        l_in = l < L
        tile = p[:, None] * L + l[None, :]
        m2 = p_in[:, None] & l_in[None, :]
        x = tl.load(tok + tile, mask=m2, other=0.0).to(tl.float32) \
            + tl.load(pe_ptr + tile, mask=m2, other=0.0).to(tl.float32)
        return x, l, l_in

    @triton.jit
    def _grounding_pool_kernel(tok_ptr, tok_bstride, pe_ptr, k_ptr, w_in_ptr, w_out_ptr, pooled_ptr, P,
                               L: tl.constexpr, HAS_QUERY: tl.constexpr, BLOCK_P: tl.constexpr,
                               BLOCK_L: tl.constexpr):
        # tok: (B or 1, P, L), rows contiguous; pe: (P, L); k: (B, L) fp32 (pre-scaled);
        # w_in, w_out: (B, P) fp32; pooled: (B, L) fp32. One program per selection b.
        # L is fixed per model (one compile each); as a constexpr it also keeps triton 3.6's
        # interpreter, which cannot take a runtime loop bound, working.
        b = tl.program_id(0).to(tl.int64)
        p = tl.arange(0, BLOCK_P)
        p_in = p < P
        tok = tok_ptr + b * tok_bstride
        if HAS_QUERY:
            scores = tl.zeros([BLOCK_P], dtype=tl.float32)
            for l0 in range(0, L, BLOCK_L):
                x, l, l_in = _x_tile(tok, pe_ptr, p, p_in, l0, L, BLOCK_L)
                k = tl.load(k_ptr + b * L + l, mask=l_in, other=0.0)
                scores += tl.sum(x * k[None, :], axis=1)
            scores = tl.where(p_in, scores, float("-inf"))
            e = tl.exp(scores - tl.max(scores, axis=0))
            e = tl.where(p_in, e, 0.0)
            a = e / tl.sum(e, axis=0)
        else:
            a = tl.load(w_in_ptr + b * P + p, mask=p_in, other=0.0)
        tl.store(w_out_ptr + b * P + p, a, mask=p_in)
        for l0 in range(0, L, BLOCK_L):
            x, l, l_in = _x_tile(tok, pe_ptr, p, p_in, l0, L, BLOCK_L)
            tl.store(pooled_ptr + b * L + l, tl.sum(a[:, None] * x, axis=0), mask=l_in)


def _check_pool_args(tokens: torch.Tensor, pe: torch.Tensor, k_vec: torch.Tensor | None,
                     weights: torch.Tensor | None) -> int:
    """Metadata checks; returns the number of selections B."""
    check((k_vec is None) != (weights is None), "give exactly one of k_vec (softmax path) and weights (mask path)")
    check(tokens.ndim == 3 and tokens.shape[1:] == pe.shape,
          f"tokens must be (B or 1, P, L) matching PE {tuple(pe.shape)}, got {tuple(tokens.shape)}")
    p, l = pe.shape
    check(p <= MAX_PATCHES, f"at most {MAX_PATCHES} patches per image, got {p}")
    sel = k_vec if k_vec is not None else weights
    width = l if k_vec is not None else p
    check(sel.ndim == 2 and sel.shape[1] == width and sel.dtype == torch.float32,
          f"{'k_vec' if k_vec is not None else 'weights'} must be float32 (B, {width}), "
          f"got {tuple(sel.shape)} {sel.dtype}")
    b = sel.shape[0]
    check(tokens.shape[0] in (1, b), f"tokens batch must be 1 or {b}, got {tokens.shape[0]}")
    return b


def grounding_pool_into(tokens: torch.Tensor, pe: torch.Tensor, k_vec: torch.Tensor | None,
                        weights: torch.Tensor | None, pooled: torch.Tensor, weights_out: torch.Tensor) -> None:
    """Triton host launcher: writes pooled (B, L) and weights_out (B, P), both fp32 contiguous."""
    b = _check_pool_args(tokens, pe, k_vec, weights)
    check(runs_triton(tokens), "grounding_pool_into needs a CUDA tensor (or TRITON_INTERPRET=1 for CPU "
          "tensors); call fused_pooled_values, which falls back to the module's reference")
    p, l = pe.shape
    for out, shape in ((pooled, (b, l)), (weights_out, (b, p))):
        check(out.shape == shape and out.dtype == torch.float32 and out.is_contiguous(),
              f"output must be contiguous float32 {shape}, got {tuple(out.shape)} {out.dtype}")
    tokens, pe = tokens.contiguous(), pe.contiguous()
    sel = (k_vec if k_vec is not None else weights).contiguous()
    block_p = triton.next_power_of_2(p)
    block_l = max(16, min(triton.next_power_of_2(l), TILE_ELEMENTS // block_p))
    tok_bstride = 0 if tokens.shape[0] == 1 else p * l          # broadcast one image over B selections
    _grounding_pool_kernel[(b,)](tokens, tok_bstride, pe, sel, sel, weights_out, pooled, p, L=l,
                                 HAS_QUERY=k_vec is not None, BLOCK_P=block_p, BLOCK_L=block_l, num_warps=4)


@torch.library.custom_op("objaudio::grounding_pool", mutates_args=())
def grounding_pool(tokens: torch.Tensor, pe: torch.Tensor, k_vec: torch.Tensor | None,
                   weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled = a X (B, L), a (B, P)), both fp32; a = softmax(X k_vec) or the given weights."""
    b = _check_pool_args(tokens, pe, k_vec, weights)
    if runs_cuda_cpp(tokens, pe):
        return extension().grounding_pool(tokens, pe, k_vec, weights)
    pooled = tokens.new_empty((b, pe.shape[1]), dtype=torch.float32)
    weights_out = tokens.new_empty((b, pe.shape[0]), dtype=torch.float32)
    grounding_pool_into(tokens, pe, k_vec, weights, pooled, weights_out)
    return pooled, weights_out


@grounding_pool.register_fake
def _(tokens, pe, k_vec, weights):
    b = (k_vec if k_vec is not None else weights).shape[0]
    return (tokens.new_empty((b, pe.shape[1]), dtype=torch.float32),
            tokens.new_empty((b, pe.shape[0]), dtype=torch.float32))


def query_key_vector(module: GroundingAttention, query: torch.Tensor) -> torch.Tensor:
    """k_vec = W_K^T (W_Q e_t + b_q) / sqrt(d_k): (B, L) float32 for query (B, Lq)."""
    q = module.w_q(query).float()                                         # (B, dk)
    return (q @ module.w_k.weight.float()) / math.sqrt(module.cfg.key_dim)   # (B, dk) @ (dk, L)


def fused_pooled_values(module: GroundingAttention, tokens: torch.Tensor, query: torch.Tensor | None = None,
                        weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """o = a V for B selections of one image: returns (o (B, d_v), a (B, P)) in the module's dtype.

    tokens: (1, P, L) or (B, P, L); query: (B, Lq) text embedding (softmax path) or weights:
    (B, P) rescaled mask weights (mask path), exactly one of them. The softmax path fuses the
    paper's single-head dot attention; the mask path is linear in the weights for every variant.
    """
    check((query is None) != (weights is None), "give exactly one of query (text selection) and weights (mask)")
    if query is not None and (module.cfg.attention != "dot" or module.heads != 1):
        raise NotImplementedError(
            f"the fused softmax path covers single-head dot attention only (the paper's model); "
            f"attention={module.cfg.attention!r} with {module.heads} heads: use module.attention")
    dtype = module.pe.dtype
    if not (runs_triton(tokens) or runs_cuda_cpp(tokens)):
        b = (query if query is not None else weights).shape[0]
        x_tokens = tokens.expand(b, -1, -1)
        a = module.attention(query, x_tokens)[:, 0] if query is not None else weights.to(dtype)
        return module.pooled_values(a, x_tokens), a
    if query is not None:
        pooled, a = grounding_pool(tokens, module.pe, query_key_vector(module, query), None)
    else:
        pooled, a = grounding_pool(tokens, module.pe, None, weights.float())
    o = F.linear(pooled, module.w_v.weight.float())                       # (B, L) @ (L, dv): the small GEMV
    return o.to(dtype), a.to(dtype)
