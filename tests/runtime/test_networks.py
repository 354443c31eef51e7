"""modelio.networks.HifiGan2d against its reference, transformers' SpeechT5HifiGan.

The 2-D form sums the same products in another order, so it is held to the reference's own float32
error: its distance from the float64 reference may be at most four times the float32 reference's.
A wrong slope, kernel, padding, dilation or residual path misses that by orders of magnitude.
"""
import copy

import pytest
import torch
from transformers import SpeechT5HifiGan

from objaudio_rt.core.config import ModelConfig, VocoderConfig
from objaudio_rt.modelio.networks import HifiGan2d

# the tiny preset's vocoder, and one with three kernels, three dilations and an odd upsampling
CONFIGS = {"tiny": ModelConfig.from_name("tiny").vocoder,
           "three-kernels": VocoderConfig(model_in_dim=16, upsample_initial_channel=24, upsample_rates=(5, 3),
                                          upsample_kernel_sizes=(11, 7), resblock_kernel_sizes=(3, 5, 7),
                                          resblock_dilation_sizes=((1, 3, 5), (1, 2, 3), (1, 3, 5)))}


def vocoder(config: VocoderConfig, seed: int, normalize: bool = False) -> SpeechT5HifiGan:
    torch.manual_seed(seed)
    hf = config.hf_config()
    hf.normalize_before = normalize
    voc = SpeechT5HifiGan(hf).eval()
    with torch.no_grad():                     # weights at a trained vocoder's scale, not the init's near-zero
        for p in voc.parameters():
            p.copy_(torch.randn_like(p) * (0.5 / p[0].numel() ** 0.5 if p.ndim > 1 else 0.1))
        if normalize:
            voc.mean.copy_(torch.randn_like(voc.mean))
            voc.scale.copy_(torch.rand_like(voc.scale) + 0.5)
    return voc


def assert_within_reference_error(voc: SpeechT5HifiGan, mel: torch.Tensor, channels_last: bool) -> None:
    with torch.no_grad():
        exact = copy.deepcopy(voc).double()(mel.double())
        ref_err = (voc(mel).double() - exact).abs().max().item()
        out = HifiGan2d(voc, channels_last=channels_last).eval()(mel)
    assert out.shape == exact.shape and out.dtype == torch.float32
    err = (out.double() - exact).abs().max().item()
    worst = (out.double() - exact).abs().argmax().item()
    assert 0 < ref_err and err <= 4 * ref_err, (f"max error {err:.3e} against float64, the float32 reference's "
                                               f"{ref_err:.3e}; worst sample {worst}")


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_hifigan2d_matches_the_reference(name, channels_last):
    config = CONFIGS[name]
    mel = torch.randn(3, 37, config.model_in_dim, generator=torch.Generator().manual_seed(1))   # odd batch and length
    assert_within_reference_error(vocoder(config, seed=2), mel, channels_last)


def test_hifigan2d_normalizes_before_where_the_reference_does():
    config = CONFIGS["tiny"]
    mel = torch.randn(2, 21, config.model_in_dim, generator=torch.Generator().manual_seed(3))
    assert_within_reference_error(vocoder(config, seed=4, normalize=True), mel, channels_last=True)


def test_hifigan2d_takes_the_vocoders_dtype_and_copies_its_weights():
    voc = vocoder(CONFIGS["tiny"], seed=5).to(torch.bfloat16)
    net = HifiGan2d(voc)
    assert {p.dtype for p in net.parameters()} == {torch.bfloat16}
    assert net.conv_pre.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        voc.conv_pre.weight.zero_()                       # a copy: the reference's later changes do not leak in
    assert net.conv_pre.weight.abs().sum() > 0

