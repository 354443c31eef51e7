"""Upstream loaders, tested by writing random-weight models in the exact upstream formats."""
import json

import pytest
import torch

from objaudio_rt import ObjaudioError, Pipeline, Points, Box
from objaudio_rt.core.config import ModelConfig
from objaudio_rt.modelio.sam import SamSegmenter, load_sam
from objaudio_rt.modelio.upstream import assemble, load_open_clip_visual, read_state_dict


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """A small AudioLDM in diffusers layout and an open_clip CLIP state dict, random weights."""
    import open_clip.model as ocm

    root = tmp_path_factory.mktemp("upstream")
    cfg = ModelConfig.from_name("tiny")
    torch.manual_seed(0)
    parts = {"unet": cfg.unet.build(), "vae": cfg.vae.build(), "vocoder": cfg.vocoder.build(),
             "text_encoder": cfg.text.build()}
    for module in parts.values():
        module.eval()
    folder = root / "audioldm"
    for name, module in parts.items():
        module.save_pretrained(folder / name)
    from objaudio_rt.modelio.encoders import TextEncoder

    TextEncoder(cfg.text).tokenizer.save_pretrained(folder / "tokenizer")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "AudioLDMPipeline"}))
    clip = ocm.CLIP(embed_dim=32, vision_cfg=ocm.CLIPVisionCfg(layers=2, width=64, patch_size=16, image_size=64),
                    text_cfg=ocm.CLIPTextCfg(context_length=16, vocab_size=100, width=32, heads=2, layers=1))
    torch.save({"state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, root / "clip.pt")
    return folder, root / "clip.pt", parts, clip


def test_open_clip_visual_round_trip(upstream):
    _, clip_path, _, clip = upstream
    enc = load_open_clip_visual(clip_path)
    assert (enc.cfg.image_size, enc.cfg.patch_size, enc.cfg.width, enc.cfg.layers, enc.cfg.embed_dim) == (64, 16, 64, 2, 32)
    pixels = torch.randn(2, 3, 64, 64)
    clip.visual.output_tokens = True
    _, tokens = clip.visual(pixels)
    torch.testing.assert_close(enc(pixels), tokens @ clip.visual.proj)
    assert enc(pixels).shape == (2, 16, 32)


def test_assemble_from_audioldm_folder(upstream, tmp_path):
    folder, clip_path, parts, _ = upstream
    out = assemble(folder, clip_path, tmp_path / "ck")
    pipe = Pipeline.from_pretrained(out)
    x, t, c = torch.randn(2, 8, 16, 16), torch.tensor(10), torch.randn(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(pipe.model.unet(x, t, encoder_hidden_states=None, class_labels=c).sample,
                                   parts["unet"](x, t, encoder_hidden_states=None, class_labels=c).sample)
        z = torch.randn(1, 8, 16, 16)
        torch.testing.assert_close(pipe.model.vae.decode(z).sample, parts["vae"].decode(z).sample)
        mel = torch.randn(1, 20, 64)
        torch.testing.assert_close(pipe.model.vocoder(mel), parts["vocoder"](mel))
        ids = torch.tensor([[0, 5, 6, 2]])
        torch.testing.assert_close(pipe.model.text_encoder.model(input_ids=ids).text_embeds,
                                   parts["text_encoder"](input_ids=ids).text_embeds)
    assert pipe.config.image.num_patches == 16 and pipe.calibration.num_samples == 0


def test_assemble_refuses_incomplete_folder(upstream, tmp_path):
    import shutil

    folder, clip_path, _, _ = upstream
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shutil.rmtree(broken / "vocoder")
    with pytest.raises(ObjaudioError, match="vocoder/ is missing"):
        assemble(broken, clip_path, tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_state_dict_loader_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ObjaudioError, match="cannot read weights"):
        read_state_dict(tmp_path / "evil.pt")


def test_not_a_clip_state_dict(tmp_path):
    torch.save({"foo": torch.zeros(3)}, tmp_path / "x.bin")
    with pytest.raises(ObjaudioError, match="not an open_clip"):
        load_open_clip_visual(tmp_path / "x.bin")


@pytest.fixture(scope="module")
def tiny_sam():
    from segment_anything.build_sam import _build_sam

    torch.manual_seed(0)
    return _build_sam(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=2,
                      encoder_global_attn_indexes=[0]).eval()


def test_sam_pth_loader_round_trip(tmp_path, monkeypatch, tiny_sam):
    """The official .pth is a plain state dict; load_sam reads it with weights_only=True."""
    import segment_anything

    torch.save(tiny_sam.state_dict(), tmp_path / "sam_vit_b_test.pth")
    monkeypatch.setitem(segment_anything.sam_model_registry, "vit_b", lambda checkpoint=None: _rebuild())
    loaded = load_sam(tmp_path / "sam_vit_b_test.pth")
    for (k, a), (_, b) in zip(tiny_sam.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    torch.save({"wrong": torch.zeros(1)}, tmp_path / "sam_vit_b_bad.pth")
    with pytest.raises(ObjaudioError, match="not a SAM vit_b checkpoint"):
        load_sam(tmp_path / "sam_vit_b_bad.pth")
    with pytest.raises(ObjaudioError, match="cannot tell the SAM model type"):
        load_sam(_renamed(tmp_path))


def _rebuild():
    from segment_anything.build_sam import _build_sam

    return _build_sam(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=2, encoder_global_attn_indexes=[0])


def _renamed(tmp_path):
    target = tmp_path / "mystery.pth"
    target.write_bytes((tmp_path / "sam_vit_b_test.pth").read_bytes())
    return target


def test_missing_sam_checkpoint():
    with pytest.raises(ObjaudioError, match="SAM checkpoint not found"):
        load_sam("/nope/sam_vit_b.pth")


def test_points_and_box_through_sam(tiny_pipe, scene_image, tiny_sam):
    """Clicks resolve through SAM to a pixel mask; the SAM embedding is computed once per image."""
    pipe = Pipeline(tiny_pipe.model, tiny_pipe.calibration)
    pipe._segmenter = SamSegmenter(tiny_sam)
    calls = []
    embed = pipe._segmenter.embed
    pipe._segmenter.embed = lambda image: calls.append(1) or embed(image)
    scene = pipe.encode_image(scene_image)
    for sel in (Points(((20, 20),)), Box((5, 5, 45, 45)), Points(((20, 20), (70, 55)), (1, 0))):
        try:
            w, pixel = pipe.select(scene, sel)
        except ObjaudioError as exc:          # a random SAM may find nothing: that is a clear error too
            assert "found no object" in str(exc)
            continue
        assert pixel.shape == (80, 96) and torch.isfinite(w).all()
    assert len(calls) == 1
    with pytest.raises(ObjaudioError, match="outside"):
        pipe.select(scene, Points(((500, 20),)))
    with pytest.raises(ObjaudioError, match="outside"):
        pipe.select(scene, Box((0, 0, 200, 30)))
