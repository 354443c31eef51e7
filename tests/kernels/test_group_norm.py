"""Fused GroupNorm (+ time-embedding shift, + SiLU) against the PyTorch reference, NCHW and channels_last."""
import pytest
import torch

from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.kernels._triton import INTERPRETED
from objaudio_rt.kernels.group_norm import group_norm_act, group_norm_into, group_norm_reference

from .kernel_checks import assert_verbose_allclose, reference_tolerance

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (N, C, H, W, groups): odd spatial sizes, one channel per group, more than one HW tile, a 1-row map
SHAPES = [(2, 12, 7, 5, 3), (1, 8, 9, 11, 8), (3, 6, 1, 13, 2)]
EPS = 1e-5
interpreted = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 (set by tests/conftest.py "
                                                         "where there is no GPU)")
on_cuda = pytest.mark.skipif(not torch.cuda.is_available() or INTERPRETED, reason="needs compiled Triton on CUDA")


def inputs(shape, dtype, device, seed=0):
    n, c, h, w, _ = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g) * 2 + 0.5             # a non-zero mean, as activations have
    weight, bias = torch.randn(c, generator=g), torch.randn(c, generator=g)
    shift = torch.randn(n, c, generator=g)
    return [t.to(device=device, dtype=dtype) for t in (x, weight, bias, shift)]


def check(shape, dtype, device, with_shift, silu, layout):
    x, weight, bias, shift = inputs(shape, dtype, device)
    x = x.contiguous(memory_format=layout)
    shift = shift if with_shift else None
    groups = shape[-1]
    got = group_norm_act(x, weight, bias, groups, EPS, shift, silu)
    wide = [t.double().cpu() if t is not None else None for t in (x, weight, bias, shift)]
    truth = group_norm_reference(*wide[:3], groups, EPS, wide[3], silu)
    low = group_norm_reference(x.cpu(), weight.cpu(), bias.cpu(), groups, EPS,
                               shift.cpu() if shift is not None else None, silu)
    assert got.dtype == dtype and got.is_contiguous(memory_format=layout)
    assert_verbose_allclose(got, truth, reference_tolerance(truth, low, dtype), f"group_norm {shape} {dtype}")


@interpreted
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("with_shift,silu", [(True, True), (False, True), (False, False)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_triton_matches_reference(shape, dtype, with_shift, silu, layout):
    check(shape, dtype, "cpu", with_shift, silu, layout)


@interpreted
def test_writes_into_a_caller_buffer_of_another_layout():
    x, weight, bias, shift = inputs(SHAPES[0], torch.float32, "cpu")
    out = torch.full_like(x, float("nan")).contiguous(memory_format=torch.channels_last)
    group_norm_into(x, weight, bias, 3, EPS, shift, True, out)
    ref = group_norm_reference(x.double(), weight.double(), bias.double(), 3, EPS, shift.double(), True)
    assert_verbose_allclose(out, ref, 1e-5, "into")


def test_bad_shapes_raise_one_line_errors():
    x, weight, bias, shift = inputs(SHAPES[0], torch.float32, "cpu")
    with pytest.raises(ObjaudioError, match="do not split into 5 groups"):
        group_norm_act(x, weight, bias, 5, EPS, None, True)
    with pytest.raises(ObjaudioError, match="shift must be"):
        group_norm_act(x, weight, bias, 3, EPS, shift[:, :4], True)


def test_fake_keeps_the_layout_for_compile():
    x, weight, bias, _ = inputs(SHAPES[0], torch.float32, "cpu")
    x = x.contiguous(memory_format=torch.channels_last)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fx = mode.from_tensor(x)
        out = group_norm_act(fx, mode.from_tensor(weight), mode.from_tensor(bias), 3, EPS, None, True)
    assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last)


@on_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_kernel_on_cuda(dtype):
    check((2, 64, 33, 16, 32), dtype, "cuda", True, True, torch.channels_last)
