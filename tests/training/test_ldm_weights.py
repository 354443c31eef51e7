"""The diffusion stage's per-timestep loss weights (LdmConfig.high_noise_cap, train_ldm.noise_weights)."""
import torch

from objaudio_rt.core.config import ScheduleConfig
from objaudio_rt.core.samplers import alphas_cumprod
from training.train import LDM_PRESETS
from training.train_ldm import noise_weights


def test_no_cap_is_the_plain_mse():
    acp = torch.from_numpy(alphas_cumprod(ScheduleConfig())).float()
    assert torch.equal(noise_weights(acp, 0.0), torch.ones_like(acp))


def test_weights_follow_v_prediction_up_to_the_cap_and_keep_the_loss_scale():
    acp = torch.from_numpy(alphas_cumprod(ScheduleConfig())).float()
    w = noise_weights(acp, 5.0)
    assert abs(float(w.mean()) - 1.0) < 1e-5
    assert bool((w[1:] >= w[:-1] - 1e-7).all())                       # more noise, more weight
    raw = 1.0 + (1.0 - acp) / acp                                       # 1 + 1/SNR
    free = raw < 5.0
    ratio = w[free] / raw[free]                                         # uncapped steps: 1 + 1/SNR, rescaled
    assert float(ratio.max() - ratio.min()) < 1e-5
    assert float(w.max() / w.min()) <= 5.0 + 1e-4 and bool((raw >= 5.0).any())
    assert LDM_PRESETS["targeted-v"].high_noise_cap == 5.0 and LDM_PRESETS["targeted"].high_noise_cap == 0.0
