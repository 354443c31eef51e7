"""Shared fixtures. Where there is no GPU, Triton kernels run through Triton's CPU interpreter.

`triton.jit` chooses interpreted mode when a kernel is defined, so TRITON_INTERPRET must be set
before anything imports objaudio_rt.kernels (runtime and kernel tests alike); pytest loads this
file first. On a GPU machine the kernels stay compiled and the CUDA cases run the real kernels.
"""
import os
import tempfile

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# A fresh artefact cache per session: no test reads the developer's exported graphs or compiled packages
# (a package there would change what the fast backend runs).
os.environ["OBJAUDIO_CACHE"] = tempfile.mkdtemp(prefix="objaudio-test-cache-")


@pytest.fixture(scope="session")
def tiny_pipe():
    from objaudio_rt import Pipeline

    return Pipeline.from_pretrained("random:tiny", device="cpu", seed=0)


@pytest.fixture(scope="session")
def scene_image() -> np.ndarray:
    """(80, 96, 3) uint8: a red square and a blue disc on grey, deterministic."""
    img = np.full((80, 96, 3), 128, np.uint8)
    img[10:40, 10:40] = (220, 30, 30)
    yy, xx = np.mgrid[:80, :96]
    img[(yy - 55) ** 2 + (xx - 70) ** 2 < 15 ** 2] = (30, 30, 220)
    return img


@pytest.fixture(scope="session")
def square_mask() -> np.ndarray:
    m = np.zeros((80, 96), bool)
    m[10:40, 10:40] = True
    return m


@pytest.fixture(scope="session")
def disc_mask() -> np.ndarray:
    yy, xx = np.mgrid[:80, :96]
    return (yy - 55) ** 2 + (xx - 70) ** 2 < 15 ** 2


# ---- exported graphs (tests/export and the graph backends in tests/runtime/backends) --------------
@pytest.fixture(scope="session")
def tiny_model():
    from objaudio_rt.core.config import ModelConfig
    from objaudio_rt.modelio.model import ObjaudioModel

    return ObjaudioModel.random(ModelConfig.from_name("tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_sam():
    from export.contracts import build_sam

    return build_sam("tiny")


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_model, tiny_sam):
    """Every network of the tiny preset and of a tiny SAM, exported once for the session."""
    from export.onnx import MODEL_NETWORKS, SAM_NETWORKS, export_networks

    out = tmp_path_factory.mktemp("onnx")
    export_networks(tiny_model, out, MODEL_NETWORKS + SAM_NETWORKS, source="random:tiny:seed0",
                    sam=tiny_sam, sam_source="random:tiny", progress=False)
    return out


@pytest.fixture(scope="session")
def aoti_package(tmp_path_factory):
    """The tiny UNet (random, seed 0) compiled once per session by export.aoti (CPU, fp32, the tiny clip's
    latent shape), in a cache folder of its own: `cache` is what OBJAUDIO_CACHE must name to use it.

    The build is the slowest step of the suite (an inductor C++ compile), so every AOTI test shares it.
    """
    from export.aoti import build_package, default_frames
    from objaudio_rt.backends.aoti import package_dir
    from objaudio_rt.modelio.artifacts import model_fingerprint
    from objaudio_rt.core.config import ModelConfig
    from objaudio_rt.modelio.model import ObjaudioModel

    model = ObjaudioModel.random(ModelConfig.from_name("tiny"), seed=0)
    cache = tmp_path_factory.mktemp("cache")
    folder = package_dir(model_fingerprint(model), root=cache)
    info = build_package(model, torch.device("cpu"), torch.float32, default_frames(model), 4, folder, "random:tiny")
    shape = tuple(int(s) for s in info["latent_shape"].split("x"))
    return {"model": model, "dir": folder, "cache": cache, "info": info, "latent_shape": shape}
