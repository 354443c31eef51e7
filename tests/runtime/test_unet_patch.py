"""The fused-module patch of the diffusers UNet and VAE: same weights, same function, channels_last.

Under TRITON_INTERPRET=1 (tests/conftest.py, no GPU) the patched modules run the Triton kernels
through the interpreter, so this holds the kernels inside the real networks to the unpatched ones.
Tolerances: twice the error the unpatched network makes in the same dtype against float64.
"""
import copy

import pytest
import torch

from objaudio_rt.core.config import ModelConfig
from objaudio_rt.modelio.model import ObjaudioModel
from objaudio_rt.backends.unet_patch import FusedGEGLU, FusedGroupNorm, patch_unet, to_channels_last
from tests.kernels.kernel_checks import assert_verbose_allclose, reference_tolerance


@pytest.fixture(scope="module")
def tiny_model():
    return ObjaudioModel.random(ModelConfig.from_name("tiny"), seed=0)


def unet_inputs(config, dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, config.unet.latent_channels, 8, 4, generator=g).to(dtype)        # (2B, C, H, W)
    cond = torch.randn(2, config.unet.cond_dim, generator=g).to(dtype)                  # (2B, cond_dim)
    return x, torch.tensor([421]), cond


def run_unet(unet, x, t, cond):
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=None, class_labels=cond).sample


def test_patch_keeps_state_dict_and_loads_upstream_weights(tiny_model):
    unet = copy.deepcopy(tiny_model.unet)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    counts = patch_unet(unet)
    assert counts["resnet_blocks"] > 0 and counts["geglu"] > 0 and counts["group_norm"] > 0
    assert counts["group_norm_silu"] == 2 * counts["resnet_blocks"] + 1                  # + conv_norm_out
    assert not any(type(m) is torch.nn.GroupNorm for m in unet.modules())
    assert any(isinstance(m, FusedGroupNorm) for m in unet.modules())
    assert any(isinstance(m, FusedGEGLU) for m in unet.modules())
    after = unet.state_dict()
    assert list(after) == list(before)
    unet.load_state_dict(before)                                                         # strict: same keys


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_patched_channels_last_unet_matches_the_reference(tiny_model, dtype):
    """fp32, fp16 and bf16 are each held to the float64 reference within the reference's own error."""
    config = tiny_model.config
    x, t, cond = unet_inputs(config, torch.float32)
    truth = run_unet(copy.deepcopy(tiny_model.unet).double(), x.double(), t, cond.double())
    low = run_unet(copy.deepcopy(tiny_model.unet).to(dtype), x.to(dtype), t, cond.to(dtype))
    fast = copy.deepcopy(tiny_model.unet).to(dtype)
    patch_unet(fast)
    to_channels_last(fast)
    got = run_unet(fast, x.to(dtype).contiguous(memory_format=torch.channels_last), t, cond.to(dtype))
    assert got.dtype == dtype
    assert_verbose_allclose(got, truth, reference_tolerance(truth, low, dtype), f"patched UNet {dtype}")


def test_patched_vae_decoder_matches_the_reference(tiny_model):
    vae = tiny_model.vae
    z = torch.randn(1, tiny_model.config.vae.latent_channels, 4, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        truth = copy.deepcopy(vae).double().decode(z.double()).sample
        low = vae.decode(z).sample
        fast = copy.deepcopy(vae)
        counts = patch_unet(fast)
        to_channels_last(fast)
        got = fast.decode(z.contiguous(memory_format=torch.channels_last)).sample
    assert counts["resnet_blocks"] > 0 and counts["group_norm_silu"] > 0
    assert_verbose_allclose(got, truth, reference_tolerance(truth, low, torch.float32), "patched VAE")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_qkv_unet_matches_the_reference(tiny_model, dtype):
    """One q/k/v projection per attention block (attn1 and the encoder-less attn2), held to float64
    within the unfused network's own error in the same dtype; every block is fused."""
    from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0

    from objaudio_rt.backends.unet_patch import fuse_attention_qkv

    config = tiny_model.config
    x, t, cond = unet_inputs(config, torch.float32)
    truth = run_unet(copy.deepcopy(tiny_model.unet).double(), x.double(), t, cond.double())
    low = run_unet(copy.deepcopy(tiny_model.unet).to(dtype), x.to(dtype), t, cond.to(dtype))
    fused = copy.deepcopy(tiny_model.unet).to(dtype)
    blocks = [m for m in fused.modules() if isinstance(m, Attention)]
    assert fuse_attention_qkv(fused) == len(blocks) > 0
    assert all(isinstance(b.processor, FusedAttnProcessor2_0) for b in blocks)
    got = run_unet(fused, x.to(dtype), t, cond.to(dtype))
    assert_verbose_allclose(got, truth, reference_tolerance(truth, low, dtype), f"fused-qkv UNet {dtype}")
    assert fuse_attention_qkv(fused) == 0                                      # already fused: nothing to do
