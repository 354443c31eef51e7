"""Long clips and loops (objaudio_rt/core/longform.py): the windows, their blending, the decoding by
blocks, and the pipeline's long and looped generations."""
import math

import numpy as np
import pytest
import torch

from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.longform import CONTEXT, Windows, WindowedUNet, decode_windows, seam_ratios, vocode_blocks
from objaudio_rt.core.options import MAX_SECONDS, RunOptions


@pytest.mark.parametrize("total,size,loop", [(300, 64, False), (65, 64, False), (64, 64, False), (75, 64, True),
                                             (64, 64, True), (20, 64, True), (1500, 64, False), (1500, 64, True)])
def test_windows_cover_every_frame_and_their_shares_sum_to_one(total, size, loop):
    w = Windows.plan(total, size, loop)
    idx, weights = w.index(), w.weights()
    assert idx.shape == weights.shape == (len(w.starts), min(size, total))
    assert set(idx.flatten().tolist()) == set(range(total))
    share = torch.zeros(total, dtype=torch.float64).index_add_(0, idx.flatten(), weights.flatten().double())
    torch.testing.assert_close(share, torch.ones(total, dtype=torch.float64), rtol=0, atol=1e-6)
    assert bool((weights > 0).all())
    if loop:
        assert len(w.starts) >= 2 and int(idx.max()) == total - 1
    else:
        assert w.starts[0] == 0 and w.starts[-1] + w.size == total
    if len(w.starts) > 1:
        stride = np.diff(list(w.starts) + ([total + w.starts[0]] if loop else []))
        assert w.size - stride.max() >= w.size // 4          # the thinnest overlap of neighbours


def test_a_60s_clip_costs_about_one_and_a_third_times_its_frames():
    w = Windows.plan(1500, 64, False)
    assert len(w.starts) * w.size / 1500 < 1.35                # overlap 1/4: cost grows linearly with length


class Pointwise:
    """A stand-in backend whose UNet is pointwise (eps = tanh(x) + cond), so blending windows must give
    exactly the full pass; its decoder and vocoder are local too."""
    device = torch.device("cpu")
    null_condition = torch.zeros(3)
    graphs = None

    def __init__(self):
        self.calls = []

    def unet_eps(self, x, t, cond):
        self.calls.append(x.shape)
        return torch.tanh(x) + cond[:, :1, None, None]

    def decode(self, z):                                        # (B, C, T, M) -> (B, 4T, 2)
        return z.mean(dim=(1, 3)).repeat_interleave(4, dim=1)[..., None].expand(-1, -1, 2) * 1.0

    def vocode(self, mel):                                      # (B, F, n) -> (B, F * 3): a 3-tap smoothing, local
        m = mel.mean(-1)
        padded = torch.nn.functional.pad(m[:, None], (1, 1), mode="replicate")[:, 0]
        smooth = (padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]) / 3
        return smooth.repeat_interleave(3, dim=1)


@pytest.mark.parametrize("loop", [False, True])
def test_windowed_unet_equals_the_full_pass_for_a_pointwise_network(loop):
    inner = Pointwise()
    x, cond = torch.randn(2, 4, 150, 5), torch.randn(2, 3)
    windowed = WindowedUNet(inner, Windows.plan(150, 64, loop))
    got = windowed.unet_eps(x, torch.tensor([10]), cond)
    torch.testing.assert_close(got, torch.tanh(x) + cond[:, :1, None, None], rtol=0, atol=1e-6)
    assert all(shape[2] == 64 for shape in inner.calls)          # the network only ever sees windows


def test_decoding_and_vocoding_by_blocks_equal_one_pass_for_local_networks():
    inner = Pointwise()
    z = torch.randn(1, 4, 150, 5)
    mel = decode_windows(inner, z, Windows.plan(150, 64, False), 4)
    torch.testing.assert_close(mel, inner.decode(z), rtol=0, atol=1e-6)
    wave = torch.cat(list(vocode_blocks(inner, mel, 100, loop=False, hop=3)), dim=1)
    torch.testing.assert_close(wave, inner.vocode(mel), rtol=0, atol=1e-6)
    looped = torch.cat(list(vocode_blocks(inner, mel, 100, loop=True, hop=3)), dim=1)
    circular = inner.vocode(torch.cat([mel[:, -CONTEXT:], mel, mel[:, :CONTEXT]], dim=1))[:, CONTEXT * 3:-CONTEXT * 3]
    torch.testing.assert_close(looped, circular, rtol=0, atol=1e-6)   # the loop's ends see each other


def test_durations_past_the_limit_and_short_loops_are_refused_before_anything_runs(tiny_pipe):
    with pytest.raises(ObjaudioError, match=f"duration must be in .*{MAX_SECONDS:g}"):
        RunOptions(duration=MAX_SECONDS + 1).resolve(tiny_pipe.config)
    with pytest.raises(ObjaudioError, match="a loop must be at least"):
        RunOptions(duration=0.1, loop=True).resolve(tiny_pipe.config)
    with pytest.raises(ObjaudioError, match="loop must be true or false"):
        RunOptions(loop="yes").resolve(tiny_pipe.config)
    assert RunOptions(duration=1.01, loop=True).resolve(tiny_pipe.config).duration == pytest.approx(1.0)


def test_long_and_looped_generations_have_the_asked_length_and_a_short_one_is_unchanged(tiny_pipe, scene_image,
                                                                                          square_mask):
    from objaudio_rt import Mask

    c = tiny_pipe.config
    scene = tiny_pipe.encode_image(scene_image)
    sel = Mask(square_mask)
    sr = c.mel.sample_rate
    long_s = c.max_seconds + 0.5
    long = tiny_pipe.generate_many(scene, [sel], steps=2, duration=long_s, seed=4, progress=False)[0]
    assert long.wave.shape == (int(long_s * sr),) and bool(torch.isfinite(long.wave).all())
    assert tiny_pipe.windows(RunOptions(duration=long_s)) is not None
    assert tiny_pipe.windows(RunOptions(duration=c.max_seconds)) is None
    loop = tiny_pipe.generate_many(scene, [sel], steps=2, duration=1.0, loop=True, seed=4, progress=False)[0]
    frame = c.vae.downsample_factor * c.mel.hop_length
    assert loop.loop and loop.wave.shape == (round(1.0 * sr / frame) * frame,)
    # a short clip takes the one-pass path: the same bytes as before long clips existed
    a = tiny_pipe.generate_many(scene, [sel], steps=2, duration=1.0, seed=4, progress=False)[0].wave
    z = tiny_pipe.sample(tiny_pipe.conditions(scene, [sel]), RunOptions(steps=2, duration=1.0, seed=4), progress=False)
    b = tiny_pipe.backend.vocode(tiny_pipe.backend.decode(z))[0, :a.numel()]
    assert torch.equal(a, b)


def periodic_noise(n: int, lo: float, hi: float, seed: int) -> torch.Tensor:
    """(n,) band-limited noise that is exactly periodic in n samples (an inverse FFT of a random band)."""
    g = torch.Generator().manual_seed(seed)
    freqs = torch.fft.rfftfreq(n, 1 / 16000)
    band = ((freqs >= lo) & (freqs <= hi)).double()
    spec = torch.complex(torch.randn(freqs.numel(), generator=g, dtype=torch.float64),
                         torch.randn(freqs.numel(), generator=g, dtype=torch.float64)) * band
    x = torch.fft.irfft(spec, n)
    return (0.5 * x / x.abs().max()).float()


def test_seam_ratio_finds_a_jump_and_not_a_seamless_wrap():
    from objaudio_rt.core.config import MelConfig

    mel = MelConfig()
    n = mel.sample_rate                                                       # one second
    seamless = periodic_noise(n, 200, 2000, 0)
    smooth, median = seam_ratios(seamless, mel, [0], loop=True)
    assert median > 0 and 0.5 < smooth[0] < 1.5
    jumpy = torch.cat([periodic_noise(n // 2, 100, 400, 1), periodic_noise(n // 2, 3000, 7000, 2)])
    ratios, _ = seam_ratios(jumpy, mel, [0, n // 2, n // 4], loop=True)
    assert ratios[0] > 3 and ratios[1] > 3 and ratios[2] < 1.5              # two joins; the middle of a part
    inside, _ = seam_ratios(jumpy, mel, [n // 2, n // 4], loop=False)
    assert inside[0] > 3 and inside[1] < 1.5
