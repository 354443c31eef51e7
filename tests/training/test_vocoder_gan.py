"""The vocoder's adversarial training: HiFi-GAN's losses as defined, discriminators that learn to
tell real audio from generated, and the training stage that keeps them between runs."""
import math

import pytest
import torch
from safetensors.torch import load_file

from objaudio_rt.core.errors import ObjaudioError
from training.train import main
from training.vocoder_gan import Discriminators, discriminator_loss, generator_losses


def _outputs(scores: list[float], feats: list[float]):
    return [(torch.full((2, 3), s), [torch.full((2, 4), f)]) for s, f in zip(scores, feats)]


def test_losses_are_least_squares_and_feature_matching_means_over_the_discriminators():
    real, fake = _outputs([1.0, 0.5], [1.0, 2.0]), _outputs([0.0, 1.0], [0.0, 2.0])
    # discriminator: mean over the two of (1 - r)^2 + f^2 = ((0 + 0) + (0.25 + 1)) / 2
    assert discriminator_loss(real, fake).item() == pytest.approx(0.625)
    adv, fm = generator_losses(real, fake)
    assert adv.item() == pytest.approx((1.0 + 0.0) / 2)                  # (1 - f)^2: 1 and 0
    assert fm.item() == pytest.approx((1.0 + 0.0) / 2)                   # |1 - 0| and |2 - 2|


def test_discriminators_learn_to_tell_a_tone_from_noise():
    torch.manual_seed(0)
    disc = Discriminators(width=0.05)
    t = torch.arange(2048) / 16000
    real = torch.stack([0.5 * torch.sin(2 * math.pi * f * t) for f in (220.0, 330.0, 440.0, 550.0)])
    outs = disc(real)
    assert len(outs) == 5 + 3 and all(score.shape[0] == 4 and len(feats) == 6 for score, feats in outs[:5])
    opt = torch.optim.Adam(disc.parameters(), lr=2e-3)
    for _ in range(40):
        fake = 0.5 * torch.randn(4, 2048)
        loss = discriminator_loss(disc(real), disc(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        real_score = torch.cat([s for s, _ in disc(real)], 1).mean()
        fake_score = torch.cat([s for s, _ in disc(0.5 * torch.randn(4, 2048))], 1).mean()
    assert real_score > 0.7 and fake_score < 0.3 and loss.item() < 0.2


def test_the_vocoder_stage_trains_adversarially_and_continues_the_same_discriminators(tmp_path, capsys):
    out = tmp_path / "v"
    args = ["--preset", "tiny", "--out", str(out), "--stage", "vocoder", "--scenes", "2", "--workers", "1",
            "--batch-size", "2", "--threads", "2", "--vocoder-adversarial", "0.1"]
    assert main(args + ["--max-steps", "2"]) == 0
    header = (out / "logs" / "vocoder.csv").read_text().splitlines()[0]
    assert header.split(",")[-3:] == ["d_loss", "adv", "fm"]
    saved = load_file(str(out / "stages" / "vocoder.discriminator.safetensors"))
    assert main(args + ["--max-steps", "0"]) == 0                       # loads them, trains none, saves
    again = load_file(str(out / "stages" / "vocoder.discriminator.safetensors"))
    assert saved.keys() == again.keys() and all(torch.equal(saved[k], again[k]) for k in saved)
    assert main(args[:-1] + ["-1", "--max-steps", "1"]) == 2
    assert "--vocoder-adversarial -1" in capsys.readouterr().err


def test_a_stopped_vocoder_stage_resumes_from_its_partial_state(tmp_path, monkeypatch):
    """The stage saves its state as it goes (here: every step) and a rerun with the same --out starts
    from it, discriminators included; the finished stage removes it."""
    import training.train as train_module
    from training import train_components

    out = tmp_path / "v"
    args = ["--preset", "tiny", "--out", str(out), "--stage", "vocoder", "--scenes", "2", "--workers", "1",
            "--batch-size", "2", "--threads", "2", "--vocoder-adversarial", "0.1", "--vocoder-loss-floor", "1e-3"]
    real = train_components.train_vocoder
    seen = {}

    def stopped(*a, **kw):                          # a run killed after its third step's save
        kw["save_every_s"] = 0.0
        metrics = real(*a, **kw)
        seen["partial"] = load_file(str(kw["resume"]))
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train_vocoder", stopped)
    assert main(args + ["--max-steps", "3"]) != 0                              # "interrupted"
    stages = out / "stages"
    assert (stages / "vocoder.partial.safetensors").is_file()
    assert (stages / "vocoder.discriminator.partial.safetensors").is_file()

    def resumed(*a, **kw):
        assert kw["loss_floor"] == 1e-3                                          # the floor reaches the stage
        metrics = real(*a, **kw)
        seen["metrics"] = metrics
        return metrics

    monkeypatch.setattr(train_module, "train_vocoder", resumed)
    assert main(args + ["--max-steps", "2"]) == 0
    assert seen["metrics"]["first_step"] == 3 and seen["metrics"]["steps"] == 2
    rows = (out / "logs" / "vocoder.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [3, 5]             # the log counts on, not from 1 again
    assert not any(stages.glob("*.partial.*"))                                   # spent once saved whole
    weights = load_file(str(stages / "vocoder.safetensors"))
    first = {k[5:]: v for k, v in seen["partial"].items() if k.startswith("live.")}
    assert first and all(f"vocoder.{k}" in weights for k in first)
    assert any(not torch.equal(first[k], weights[f"vocoder.{k}"]) for k in first)   # two more steps moved them


def test_vocoder_focus_draws_the_focused_classes_as_often_as_asked():
    """--vocoder-focus bird:4: an example sounding a bird is drawn 4 times as often as one that does
    not; an example of two focused classes gets the larger weight; a class outside the focus weighs 1."""
    from training.synthscenes import ALL_CLASSES
    from training.train_components import vocoder_draw_weights

    hot = torch.zeros(5, len(ALL_CLASSES))
    hot[0, ALL_CLASSES.index("bird")] = 1
    hot[1, ALL_CLASSES.index("bell")] = 1
    hot[2, [ALL_CLASSES.index("bird"), ALL_CLASSES.index("crowd")]] = 1
    hot[3, ALL_CLASSES.index("crowd")] = 1                          # row 4: no class known
    usable = torch.tensor([0, 1, 2, 3, 4])
    w = vocoder_draw_weights(hot, usable, {"bird": 4.0, "crowd": 2.0})
    assert torch.allclose(w * (4 + 1 + 4 + 2 + 1), torch.tensor([4.0, 1, 4, 2, 1], dtype=w.dtype))
    assert torch.allclose(vocoder_draw_weights(hot, torch.tensor([1, 3]), {"crowd": 3.0}),
                          torch.tensor([0.25, 0.75], dtype=w.dtype))             # only the usable rows
    gen = torch.Generator().manual_seed(0)
    drawn = torch.multinomial(w, 20000, replacement=True, generator=gen)
    share = torch.bincount(drawn, minlength=5).double() / 20000
    assert abs(share[0] / share[1] - 4) < 0.4


def test_vocoder_focus_refuses_unknown_classes_and_bad_weights():
    from training.synthscenes import ALL_CLASSES
    from training.train import parse_focus
    from training.train_components import vocoder_draw_weights

    assert parse_focus(None) == {} and parse_focus("bird:4, crowd:2.5") == {"bird": 4.0, "crowd": 2.5}
    with pytest.raises(ObjaudioError, match="CLASS:WEIGHT"):
        parse_focus("bird")
    hot, usable = torch.ones(2, len(ALL_CLASSES)), torch.tensor([0, 1])
    with pytest.raises(ObjaudioError, match="not SynthScenes classes"):
        vocoder_draw_weights(hot, usable, {"parrot": 2.0})
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ObjaudioError, match="weight > 0"):
            vocoder_draw_weights(hot, usable, {"bird": bad})


def test_the_per_example_stft_loss_weighs_a_quiet_examples_error_like_a_loud_ones():
    """A quiet example all wrong: the batch's spectral convergence barely sees it (its error is 1 %
    of the batch's energy), the per-example one sees it as much as it would on a loud one; the log
    magnitude term is the same in both. With one example the two losses agree."""
    from training.train_components import stft_loss

    gen = torch.Generator().manual_seed(0)
    target = torch.randn(2, 4096, generator=gen)
    target[1] *= 0.1                                                       # a quiet example
    wrong = target.clone()
    wrong[1] = 0.1 * torch.randn(4096, generator=gen)                      # the quiet one all wrong
    right = target.clone()
    batch = stft_loss(wrong, target) - stft_loss(right, target)
    each = stft_loss(wrong, target, per_example=True) - stft_loss(right, target, per_example=True)
    assert batch > 0 and each - batch > 0.2
    one = target[:1] * 0.5
    assert torch.allclose(stft_loss(one, target[:1]), stft_loss(one, target[:1], per_example=True))


def test_the_per_example_stft_loss_does_not_blow_up_on_a_silent_crop():
    from training.train_components import stft_loss

    gen = torch.Generator().manual_seed(1)
    target = torch.randn(2, 4096, generator=gen)
    target[1] = 0.0                                                        # a crop of silence
    pred = target + 1e-3 * torch.randn(2, 4096, generator=gen)
    assert stft_loss(pred, target, per_example=True) < 2 * stft_loss(pred, target) + 1.0


def _chirps_between_silence():
    """A SynthScenes-like target: 50 ms tones at 4 kHz with digital silence between them, (1, 8000)."""
    t = torch.arange(8000) / 16000
    on = ((t * 1000) % 150 < 50).float()
    return (0.3 * on * torch.sin(2 * torch.pi * 4000 * t)).unsqueeze(0)


def test_a_floored_loss_stops_charging_for_faint_noise_in_the_silence():
    """vocoder_loss_floor: unfloored, noise at 1e-4 in the target's digital silence costs the log terms
    several units, more than the chirps played 20 dB too quiet (what taught the vocoder to mute a bird);
    floored at 1e-3, the noise costs next to nothing and the quiet chirps cost more than it."""
    from objaudio_rt.core.audio import MelConfig, mel_spectrogram
    from training.train_components import stft_loss, vocoder_loss_floor

    target = _chirps_between_silence()
    gen = torch.Generator().manual_seed(0)
    noisy = target + 1e-4 * torch.randn(target.shape, generator=gen)           # faint noise everywhere
    quiet = 0.1 * target                                                          # the chirps 20 dB down

    def loss(out, floor):
        mel_floor, stft_floor = vocoder_loss_floor(floor)
        mel = lambda w: mel_spectrogram(w, MelConfig(), normalize=False).clamp_min(mel_floor)   # noqa: E731
        return (mel(out) - mel(target)).abs().mean().item() + stft_loss(out, target, floor=stft_floor).item()

    assert loss(target, 0.0) == loss(target, 1e-3) == 0.0
    assert loss(noisy, 0.0) > loss(quiet, 0.0)                   # unfloored: the silence's noise weighs more
    assert loss(noisy, 1e-3) < 0.1 * loss(noisy, 0.0)
    assert loss(quiet, 1e-3) > 5 * loss(noisy, 1e-3)              # floored: the chirps' level is what counts


def test_the_loss_floor_refuses_what_it_cannot_mean():
    from training.train_components import vocoder_loss_floor

    assert vocoder_loss_floor(0.0) == (math.log(1e-5), 1e-7)       # the losses as they always were
    for bad in (-1e-3, float("nan"), float("inf")):
        with pytest.raises(ObjaudioError, match="give 0"):
            vocoder_loss_floor(bad)
    with pytest.raises(ObjaudioError, match="below the log-mel's own floor"):
        vocoder_loss_floor(1e-6)
