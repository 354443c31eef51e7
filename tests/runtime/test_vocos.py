"""modelio.vocos: the Vocos vocoder's inverse STFT against the plain one, its reach within the long-form
context, its config's round trip (a HiFi-GAN's dict unchanged), a swap into a checkpoint and back, the
pipeline and the ONNX export running it. Random weights."""
import dataclasses
import json

import pytest
import torch

from objaudio_rt import Pipeline
from objaudio_rt.core.config import ModelConfig, VocosConfig
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.longform import CONTEXT
from objaudio_rt.modelio.checkpoint import load_checkpoint, replace_vocoder
from objaudio_rt.modelio.model import ObjaudioModel
from objaudio_rt.modelio.vocos import VocosVocoder, build_vocoder, istft_reference

SMALL = VocosConfig(dim=32, intermediate_dim=64, num_layers=2)


def _vocos(config=SMALL, seed=0):
    torch.manual_seed(seed)
    voc = VocosVocoder(64, config).eval()
    with torch.no_grad():                       # a head far from its start: loud frames, phases all round
        voc.head.weight.normal_(0, 0.3)
    return voc


def test_the_inverse_stft_is_the_plain_one_within_float32s_own_error():
    voc = _vocos()
    mel = torch.randn(3, 41, 64) - 4
    with torch.no_grad():
        re, im = voc.spectrum(mel)
        fast = voc(mel)
        ref64 = istft_reference(re.double(), im.double(), voc.n_fft, voc.hop, voc.window.double())
        ref32 = istft_reference(re, im, voc.n_fft, voc.hop, voc.window)
    assert fast.shape == ref64.shape == (3, 41 * voc.hop)
    own = (ref32.double() - ref64).abs().max().item()          # the plain float32 inverse's own error
    assert ref64.abs().max() > 100 * own > 0
    assert (fast.double() - ref64).abs().max().item() <= 4 * own + 1e-7 * ref64.abs().max().item()


def test_a_frame_reaches_no_further_than_the_long_form_context():
    """vocode_blocks keeps CONTEXT frames either side of what it keeps: a Vocos' reach (its convolutions
    and the inverse STFT's window) must stay inside, or blocks would not join into one clip."""
    voc_config = VocosConfig(dim=32, intermediate_dim=64, num_layers=8)     # the default depth
    voc = _vocos(voc_config).double()
    with torch.no_grad():                   # every weight loud and float64: a far frame's effect is not rounded away
        for p in voc.parameters():
            p.normal_(0, 0.5)
    mel = torch.randn(1, 4 * CONTEXT, 64, dtype=torch.float64) - 4
    t = 2 * CONTEXT
    moved = mel.clone()
    moved[:, t] += 3.0
    with torch.no_grad():
        diff = (voc(moved) - voc(mel)).abs().reshape(4 * CONTEXT, voc.hop).amax(dim=1)
    changed = torch.nonzero(diff > 0).squeeze(1)
    reach = voc_config.reach
    assert changed.min() == t - reach and changed.max() == t + reach        # the config's reach is the real one
    assert reach <= CONTEXT
    with pytest.raises(ObjaudioError, match="past the 32 frames of context"):
        tiny = ModelConfig.from_name("tiny")
        dataclasses.replace(tiny, vocoder=dataclasses.replace(tiny.vocoder, vocos=VocosConfig(num_layers=10)))


def test_config_round_trip_and_a_hifigans_dict_is_as_before():
    tiny = ModelConfig.from_name("tiny")
    assert "vocos" not in tiny.to_dict()["vocoder"]               # an older model's fingerprint unchanged
    assert ModelConfig.from_dict(json.loads(json.dumps(tiny.to_dict()))) == tiny
    vocos = dataclasses.replace(tiny, vocoder=dataclasses.replace(tiny.vocoder, vocos=SMALL))
    back = ModelConfig.from_dict(json.loads(json.dumps(vocos.to_dict())))
    assert back == vocos and back.vocoder.kind == "vocos" and tiny.vocoder.kind == "hifigan"
    assert isinstance(build_vocoder(back.vocoder), VocosVocoder)
    with pytest.raises(ObjaudioError, match="not a SpeechT5HifiGan"):
        back.vocoder.hf_config()
    with pytest.raises(ObjaudioError, match="multiple of its hop"):
        dataclasses.replace(tiny, vocoder=dataclasses.replace(tiny.vocoder, vocos=VocosConfig(n_fft=500)))
    with pytest.raises(ObjaudioError, match="must equal the mel hop"):
        dataclasses.replace(tiny, vocoder=dataclasses.replace(tiny.vocoder, vocos=VocosConfig(hop_length=128)))


@pytest.fixture(scope="module")
def vocos_checkpoint(tmp_path_factory):
    """A tiny random model, and the same with a small Vocos swapped in by replace_vocoder."""
    root = tmp_path_factory.mktemp("vocos")
    Pipeline.from_pretrained("random:tiny", seed=0).save_pretrained(root / "hifigan")
    state = _vocos(seed=3).state_dict()
    replace_vocoder(root / "hifigan", state, root / "vocos", {"source": "test"})
    return root


def test_a_vocos_swaps_in_and_back(vocos_checkpoint, tmp_path):
    root = vocos_checkpoint
    model, _ = load_checkpoint(root / "vocos")
    assert model.config.vocoder.vocos == SMALL and isinstance(model.vocoder, VocosVocoder)
    assert all(torch.equal(a, b) for a, b in zip(model.vocoder.state_dict().values(),
                                                 _vocos(seed=3).state_dict().values()))
    old, _ = load_checkpoint(root / "hifigan")
    replace_vocoder(root / "vocos", old.vocoder.state_dict(), tmp_path / "back", {"source": "test"})
    back, _ = load_checkpoint(tmp_path / "back")
    assert back.config.to_dict() == old.config.to_dict()          # the HiFi-GAN's config.json as it was
    gapped = {k: v for k, v in model.vocoder.state_dict().items() if not k.startswith("blocks.0.")}
    with pytest.raises(ObjaudioError, match="blocks.N are missing or gapped"):
        replace_vocoder(root / "hifigan", gapped, tmp_path / "gapped", {"source": "test"})
    assert not (tmp_path / "gapped").exists()


@pytest.mark.parametrize("backend", ["eager", "fast"])
def test_the_pipeline_runs_a_vocos(vocos_checkpoint, backend, scene_image, square_mask):
    """The fast backend keeps a Vocos as it is (no channels_last HiFi-GAN rebuild) and vocodes what eager does."""
    from objaudio_rt import Mask

    pipe = Pipeline.from_pretrained(str(vocos_checkpoint / "vocos"), backend=backend)
    wave = pipe.generate(pipe.encode_image(scene_image), Mask(square_mask), duration=1.28, steps=2, progress=False)
    assert wave.shape[-1] == round(1.28 * 16000) and torch.isfinite(wave).all() and wave.abs().max() > 0
    mel = torch.randn(2, 50, 64) - 4
    with torch.no_grad():
        ref = pipe.model.vocoder(mel)
    got = pipe.backend.vocode(mel)
    assert got.shape == ref.shape == (2, 50 * 160)
    assert torch.allclose(got, ref, rtol=0, atol=1e-6 * ref.abs().max().item())


def test_the_onnx_export_of_a_vocos_matches_pytorch(tmp_path):
    from export.onnx import export_networks, verify_networks

    tiny = ModelConfig.from_name("tiny")
    config = dataclasses.replace(tiny, vocoder=dataclasses.replace(tiny.vocoder, vocos=SMALL))
    model = ObjaudioModel.random(config, seed=0)
    export_networks(model, tmp_path, ("vocoder",), progress=False)
    report = verify_networks(tmp_path, model, ("vocoder",), seed=2, progress=False)
    r = report["networks"]["vocoder"]
    assert r["passed"], f"vocoder: error {r['err_vs_float64']:.3g} > tolerance {r['tolerance']:.3g}"
