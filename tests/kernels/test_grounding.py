"""Fused grounding pool (Triton, and the csrc/ CUDA twin) against GroundingAttention's reference."""
import copy

import pytest
import torch
from .kernel_checks import assert_verbose_allclose, reference_tolerance

from objaudio_rt.core.config import GroundingConfig
from objaudio_rt.core.grounding import GroundingAttention
from objaudio_rt.kernels import cuda_available, fused_pooled_values, grounding_pool, query_key_vector
from objaudio_rt.kernels._cuda import extension
from objaudio_rt.kernels._triton import INTERPRETED
from objaudio_rt.kernels.grounding import grounding_pool_into

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
PATCHES = [16, 49, 50]
DIMS = [32, 59, 111]
B = 3
interpreted = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 (set by tests/conftest.py where there is no GPU)")
on_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
compiled_triton = pytest.mark.skipif(INTERPRETED, reason="TRITON_INTERPRET=1: the CUDA cases need compiled kernels")
built = pytest.mark.skipif(not cuda_available(), reason="objaudio_rt._C not built (OBJAUDIO_BUILD_CUDA=1 pip "
                           "install --no-build-isolation -e .)")


def make_case(p, l, dtype, device, attention="dot", heads=1, image_batch=1, seed=0):
    """A small module (d_k 40, d_v 36) and B selections of one image (or of B images)."""
    torch.manual_seed(seed)
    cfg = GroundingConfig(attention=attention, num_heads=heads, query_dim=24, token_dim=l, key_dim=40,
                          value_dim=36, mlp_hidden=16, cond_dim=8, num_patches=p)
    module = GroundingAttention(cfg)
    with torch.no_grad():
        module.pe.normal_(0, 0.5)                           # PE large enough to matter in the scores
    tokens, query, mask = torch.randn(image_batch, p, l), torch.randn(B, 24), torch.rand(B, p)
    weights = mask / mask.sum(-1, keepdim=True)
    cast = lambda t: t.to(device=device, dtype=dtype)      # noqa: E731
    return module.to(device=device, dtype=dtype).requires_grad_(False), cast(tokens), cast(query), weights.to(device)


def reference(module, tokens, query=None, weights=None):
    """GroundingAttention's own path: (o (B, d_v), a (B, P))."""
    b = (query if query is not None else weights).shape[0]
    x_tokens = tokens.expand(b, -1, -1)
    a = module.attention(query, x_tokens)[:, 0] if query is not None else weights.to(module.pe.dtype)
    return module.pooled_values(a, x_tokens), a


def check_fused(fused, p, l, dtype, device, path, image_batch=1):
    module, tokens, query, weights = make_case(p, l, dtype, device, image_batch=image_batch)
    sel = dict(query=query) if path == "query" else dict(weights=weights)
    got = fused(module, tokens, **sel)
    wide = {k: v.double() for k, v in sel.items()}
    truth = reference(copy.deepcopy(module).double(), tokens.double(), **wide)   # same values, fp64 arithmetic
    low = reference(module, tokens, **sel)
    for name, g, t, lo in zip(("o", "weights"), got, truth, low):
        assert g.dtype == dtype
        assert_verbose_allclose(g, t, reference_tolerance(t, lo, dtype), f"{name} P={p} L={l} {dtype} {path}")


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l", DIMS)
@pytest.mark.parametrize("p", PATCHES)
def test_softmax_path_matches_reference(p, l, dtype):
    check_fused(fused_pooled_values, p, l, dtype, "cpu", "query")


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p,l", [(16, 111), (49, 59), (50, 32)])
def test_mask_path_matches_reference(p, l, dtype):
    check_fused(fused_pooled_values, p, l, dtype, "cpu", "mask")


@interpreted
@pytest.mark.parametrize("path", ["query", "mask"])
def test_one_image_per_selection(path):
    """tokens (B, P, L): each selection reads its own image (no broadcast)."""
    check_fused(fused_pooled_values, 49, 59, torch.float32, "cpu", path, image_batch=B)


@interpreted
@pytest.mark.parametrize("path", ["query", "mask"])
def test_every_output_element_is_written(path):
    module, tokens, query, weights = make_case(50, 111, torch.float32, "cpu")
    k_vec = query_key_vector(module, query) if path == "query" else None
    sel_w = weights if path == "mask" else None
    pooled, w_out = torch.full((B, 111), float("nan")), torch.full((B, 50), float("nan"))
    grounding_pool_into(tokens, module.pe, k_vec, sel_w, pooled, w_out)
    ref_o, ref_a = reference(module, tokens, **(dict(query=query) if path == "query" else dict(weights=weights)))
    x = tokens + module.pe
    assert_verbose_allclose(w_out, ref_a, 1e-6, "weights")
    assert_verbose_allclose(pooled, (ref_a[:, None, :] @ x)[:, 0], 1e-5, "pooled")


@interpreted
def test_multihead_mask_path_is_fused_and_softmax_path_refused():
    module, tokens, query, weights = make_case(49, 32, torch.float32, "cpu", attention="multihead", heads=4)
    o, _ = fused_pooled_values(module, tokens, weights=weights)
    assert_verbose_allclose(o, reference(module, tokens, weights=weights)[0], 1e-5, "multihead mask o")
    with pytest.raises(NotImplementedError, match="single-head dot"):
        fused_pooled_values(module, tokens, query=query)


@interpreted
def test_custom_op_traces():
    module, tokens, query, _ = make_case(49, 59, torch.float32, "cpu")
    args = (tokens, module.pe.detach(), query_key_vector(module, query), None)
    torch.library.opcheck(grounding_pool, args, test_utils=("test_schema", "test_faketensor"))
    compiled = torch.compile(lambda *a: grounding_pool(*a), backend="aot_eager", fullgraph=True)
    for got, want in zip(compiled(*args), grounding_pool(*args)):
        assert_verbose_allclose(got, want, 0.0, "compiled vs eager")


def pooled_values_with(pool):
    """fused_pooled_values with one implementation of the pool forced: pool(tokens, pe, k_vec, weights)."""
    def fused(module, tokens, query=None, weights=None):
        if query is not None:
            pooled, a = pool(tokens, module.pe, query_key_vector(module, query), None)
        else:
            pooled, a = pool(tokens, module.pe, None, weights.float())
        o = torch.nn.functional.linear(pooled, module.w_v.weight.float())
        return o.to(module.pe.dtype), a.to(module.pe.dtype)
    return fused


def triton_pool(tokens, pe, k_vec, weights):
    b = (k_vec if k_vec is not None else weights).shape[0]
    pooled = torch.empty((b, pe.shape[1]), device=tokens.device)
    a = torch.empty((b, pe.shape[0]), device=tokens.device)
    grounding_pool_into(tokens, pe, k_vec, weights, pooled, a)
    return pooled, a


def cuda_cpp_pool(tokens, pe, k_vec, weights):
    return extension().grounding_pool(tokens, pe, k_vec, weights)


@on_cuda
@compiled_triton
@pytest.mark.parametrize("path", ["query", "mask"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p,l", [(16, 111), (49, 59), (50, 32), (49, 768)])
def test_triton_pool_on_cuda(p, l, dtype, path):
    check_fused(pooled_values_with(triton_pool), p, l, dtype, "cuda", path)


@on_cuda
@pytest.mark.parametrize("path", ["query", "mask"])
def test_op_on_cuda(path):
    """The one op name on CUDA (the C++ kernel where built, else Triton) against the reference."""
    check_fused(fused_pooled_values, 49, 59, torch.float32, "cuda", path)


@on_cuda
@built
@pytest.mark.parametrize("path", ["query", "mask"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p,l", [(16, 111), (49, 59), (50, 32), (49, 768)])
def test_cuda_cpp_pool_matches_reference(p, l, dtype, path):
    check_fused(pooled_values_with(cuda_cpp_pool), p, l, dtype, "cuda", path)
