"""Fused GEGLU (the attention block's feed-forward activation) against diffusers' formula."""
import pytest
import torch

from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.kernels._triton import INTERPRETED
from objaudio_rt.kernels.geglu import geglu, geglu_into, geglu_reference

from .kernel_checks import assert_verbose_allclose, reference_tolerance

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(3, 7, 10), (2, 5, 258), (1, 2050)]               # odd rows, D not a power of two, > one block
interpreted = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 (set by tests/conftest.py "
                                                         "where there is no GPU)")
on_cuda = pytest.mark.skipif(not torch.cuda.is_available() or INTERPRETED, reason="needs compiled Triton on CUDA")


def check(shape, dtype, device):
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3).to(device=device, dtype=dtype)
    got = geglu(x)
    truth = geglu_reference(x.double().cpu())
    low = geglu_reference(x.cpu())
    assert got.dtype == dtype
    assert_verbose_allclose(got, truth, reference_tolerance(truth, low, dtype), f"geglu {shape} {dtype}")


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_triton_matches_reference(shape, dtype):
    check(shape, dtype, "cpu")


@interpreted
def test_into_rejects_a_wrong_output():
    x = torch.randn(4, 6)
    with pytest.raises(ObjaudioError, match="out must be contiguous"):
        geglu_into(x, torch.empty(4, 4))


def test_odd_last_dimension_is_a_clear_error():
    with pytest.raises(ObjaudioError, match="even last dimension"):
        geglu(torch.randn(3, 5))


@on_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_kernel_on_cuda(dtype):
    check((2, 1024, 2560), dtype, "cuda")
