"""OnnxRuntimeBackend: the pipeline end to end against eager, the cache folder, foreign ONNX folders.

The graphs come from the exporter (the tests may import export/; the runtime never does)."""
import copy

import numpy as np
import pytest
import torch

from export.onnx import main as export_main
from objaudio_rt.modelio.artifacts import model_fingerprint
from objaudio_rt.backends.eager import EagerBackend
from objaudio_rt.backends.onnxruntime import OnnxRuntimeBackend
from objaudio_rt.core.config import ModelConfig
from objaudio_rt.core.denoise import Conditions, denoise
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.modelio.model import ObjaudioModel
from objaudio_rt.core.pipeline import Pipeline
from objaudio_rt.core.samplers import SamplerPlan
from objaudio_rt.core.selection import Mask


def test_pipeline_onnxruntime_matches_eager(tmp_path, monkeypatch):
    """Within twice the error eager float32 makes against eager float64 (plus rounding noise)."""
    monkeypatch.setenv("OBJAUDIO_CACHE", str(tmp_path))
    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    eager = Pipeline.from_pretrained("random:tiny")
    with pytest.raises(ObjaudioError, match="python -m export.onnx --cache"):     # the runtime never exports
        Pipeline.from_pretrained("random:tiny", backend="onnxruntime")
    assert export_main(["--checkpoint", "random:tiny", "--cache", "--quiet",
                        "--only", "unet,vae_decoder,vocoder,image_encoder,text_encoder"]) == 0
    ort = Pipeline.from_pretrained("random:tiny", backend="onnxruntime")       # reads the cache folder
    fp = model_fingerprint(eager.model)
    assert ort.backend.onnx_dir == tmp_path / "onnx" / fp[:32]
    runs = {}
    for name, pipe in (("eager", eager), ("ort", ort)):
        scene = pipe.encode_image(image)
        runs[name] = pipe.generate_many(scene, [None], steps=4, seed=3, progress=False)[0]
        runs[name + "_scene"] = scene
    # float64 reference from the same condition and noise as the eager float32 run
    ref = EagerBackend(copy.deepcopy(eager.model), torch.device("cpu"), torch.float64)
    cond = eager.condition(runs["eager_scene"], runs["eager"].weights).double()
    shape, _ = eager.latent_shape(eager.config.clip_seconds)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))[None].double()
    mel64 = ref.decode(denoise(ref, noise, Conditions.single(cond), SamplerPlan.build("ddim", 4), 2.0, progress=False))
    scale = mel64.abs().max()
    torch_err = (runs["eager"].mel - mel64[0]).abs().max()
    ort_err = (runs["ort"].mel - mel64[0]).abs().max()
    assert ort_err <= 2 * torch_err + 1e-6 * scale, (ort_err, torch_err)
    wave_scale = runs["eager"].wave.abs().max()
    assert (runs["ort"].wave - runs["eager"].wave).abs().max() <= 1e-4 * wave_scale
    # a composed union: B + R = 1 + 2 UNet rows (an odd batch) through the exported graph
    left, right = np.zeros((48, 64), bool), np.zeros((48, 64), bool)
    left[:, :32], right[:, 32:] = True, True
    union = [pipe.generate_many(runs[name + "_scene"], [Mask(left) | Mask(right)], steps=3, seed=4,
                                progress=False)[0].mel for name, pipe in (("eager", eager), ("ort", ort))]
    assert (union[1] - union[0]).abs().max() <= 1e-4 * union[0].abs().max()


def test_explicit_dir_from_other_weights_is_refused(tiny_export):
    other = ObjaudioModel.random(ModelConfig.from_name("tiny"), seed=5)
    with pytest.raises(ObjaudioError, match="exported from other weights"):
        OnnxRuntimeBackend(other, torch.device("cpu"), onnx_dir=tiny_export)


def test_explicit_dir_without_export(tmp_path, tiny_model):
    with pytest.raises(ObjaudioError, match="not an ONNX export folder"):
        OnnxRuntimeBackend(tiny_model, torch.device("cpu"), onnx_dir=tmp_path)


def test_explicit_dir_runs_like_eager(tiny_export, tiny_model):
    backend = OnnxRuntimeBackend(copy.deepcopy(tiny_model), torch.device("cpu"), onnx_dir=tiny_export)
    eager = EagerBackend(copy.deepcopy(tiny_model), torch.device("cpu"))
    z = torch.randn(2, 8, 12, 16) * 200          # |z| > 100: the NaN guard inside the graph clamps
    assert torch.allclose(backend.decode(z), eager.decode(z), atol=1e-5)
    ids = tiny_model.text_encoder.tokenize(["a dog barking", "a bell"])
    assert torch.allclose(backend.text_embeds(**ids), eager.text_embeds(**ids), atol=1e-5)


def test_cpu_sessions_reuse_their_optimised_graphs(tiny_export, tiny_model, tmp_path, monkeypatch):
    """The first backend saves each network's optimised graph, the next loads it (same outputs bit for
    bit); a damaged copy is made again, and a cache that cannot be written costs only the saving."""
    from objaudio_rt.modelio.artifacts import ort_optimized_dir

    monkeypatch.setenv("OBJAUDIO_CACHE", str(tmp_path / "cache"))
    cpu = torch.device("cpu")
    first = OnnxRuntimeBackend(tiny_model, cpu, onnx_dir=tiny_export)
    second = OnnxRuntimeBackend(tiny_model, cpu, onnx_dir=tiny_export)
    assert set(first.optimized_from_cache.values()) == {False} and set(second.optimized_from_cache.values()) == {True}
    copies = sorted(ort_optimized_dir().glob("*.onnx"))
    assert len(copies) == len(first.sessions) and not list(ort_optimized_dir().glob(".*partial"))
    shape, _ = tiny_model.config.latent_shape(tiny_model.config.clip_seconds)
    rng = np.random.default_rng(0)
    feed = dict(zip(first.input_names["unet"], (rng.standard_normal((3, *shape), dtype=np.float32),
                                                 np.array([500]),
                                                 rng.standard_normal((3, tiny_model.config.unet.cond_dim),
                                                                     dtype=np.float32))))
    assert np.array_equal(first.sessions["unet"].run(None, feed)[0], second.sessions["unet"].run(None, feed)[0])

    unet_copy = next(p for p in copies if p.name.startswith("unet-"))
    unet_copy.write_bytes(b"not a graph")
    mended = OnnxRuntimeBackend(tiny_model, cpu, onnx_dir=tiny_export)
    assert mended.optimized_from_cache["unet"] is False and mended.optimized_from_cache["vocoder"] is True
    assert OnnxRuntimeBackend(tiny_model, cpu, onnx_dir=tiny_export).optimized_from_cache["unet"] is True

    monkeypatch.setenv("OBJAUDIO_CACHE", str(tmp_path / "blocked"))
    (tmp_path / "blocked").mkdir()
    ort_optimized_dir().write_text("a file where the folder should be")       # the copies cannot be written
    blocked = OnnxRuntimeBackend(tiny_model, cpu, onnx_dir=tiny_export)
    assert set(blocked.optimized_from_cache.values()) == {False}
    assert np.array_equal(blocked.sessions["unet"].run(None, feed)[0], first.sessions["unet"].run(None, feed)[0])
