"""The registry: the one place a backend is built, with each backend's options checked."""
import pytest
import torch

from objaudio_rt.backends import BACKENDS, backend_options, make_backend
from objaudio_rt.backends.base import Backend
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.pipeline import Pipeline


def test_every_backend_is_registered_with_its_options():
    assert BACKENDS == ("eager", "fast", "onnxruntime", "tensorrt")
    assert {"dtype", "unet_dtype", "vae_dtype", "vocoder_dtype"} == set(backend_options("eager"))
    assert {"unet_dtype", "cuda_graph", "graph_cache_size", "compile_unet"} <= set(backend_options("fast"))
    assert backend_options("onnxruntime") == ("onnx_dir",)
    assert "engine_dir" in backend_options("tensorrt")


def test_options_reach_the_backend(tiny_model):
    import copy

    eager = make_backend("eager", copy.deepcopy(tiny_model), torch.device("cpu"), unet_dtype="bf16")
    assert isinstance(eager, Backend) and eager.unet_dtype == torch.bfloat16 and eager.vae_dtype == torch.float32
    fast = make_backend("fast", copy.deepcopy(tiny_model), torch.device("cpu"), graph_cache_size=2)
    assert fast.options.graph_cache_size == 2 and fast.options.unet_dtype == torch.float32   # CPU defaults kept
    assert fast.graphs is None                                     # no CUDA graph on a CPU


@pytest.mark.parametrize("name,options,match", [
    ("nope", {}, "unknown backend 'nope'"),
    ("onnxruntime", {"unet_dtype": "fp16"}, "onnxruntime backend has no option unet_dtype"),
    ("eager", {"cuda_graph": False}, "eager backend has no option cuda_graph"),
    ("fast", {"unet_dtype": "fp8"}, "unet_dtype must be one of fp32, fp16, bf16"),
])
def test_bad_backend_or_option_is_one_clear_error(tiny_model, name, options, match):
    with pytest.raises(ObjaudioError, match=match):
        make_backend(name, tiny_model, torch.device("cpu"), **options)


def test_onnxruntime_without_graphs_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("OBJAUDIO_CACHE", str(tmp_path))
    with pytest.raises(ObjaudioError, match=r"python -m export\.onnx --cache"):
        Pipeline.from_pretrained("random:tiny", backend="onnxruntime")
    assert not any(tmp_path.iterdir())                               # the runtime exported nothing
