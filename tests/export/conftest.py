import pytest

from export.contracts import build_sam
from export.onnx import MODEL_NETWORKS, SAM_NETWORKS, export_networks
from objaudio_rt.config import ModelConfig
from objaudio_rt.model import ObjaudioModel


@pytest.fixture(scope="session")
def tiny_model():
    return ObjaudioModel.random(ModelConfig.from_name("tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_sam():
    return build_sam("tiny")


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_model, tiny_sam):
    """Every network of the tiny preset and of a tiny SAM, exported once for the session."""
    out = tmp_path_factory.mktemp("onnx")
    export_networks(tiny_model, out, MODEL_NETWORKS + SAM_NETWORKS, source="random:tiny:seed0",
                    sam=tiny_sam, sam_source="random:tiny", progress=False)
    return out
