"""The "auto" backend and graph backends without PyTorch networks (model.GraphModel).

auto on a CPU picks onnxruntime exactly when the cache holds current graphs of these weights, else
eager (for many clips on a CPU with native bf16, fast first); a graph backend on a checkpoint folder builds no network and imports neither diffusers,
transformers nor open_clip, yet generates what the eager pipeline of the same folder generates
(within the ONNX Runtime test's tolerance) and still gives the whole model when asked for it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from export.onnx import main as export_main
from objaudio_rt.modelio.artifacts import model_fingerprint, onnx_cache_dir
from objaudio_rt.backends import make_backend, resolve_backend
from objaudio_rt.modelio.checkpoint import checkpoint_fingerprint, load_checkpoint, load_graph_model
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.modelio.model import GraphModel
from objaudio_rt.core.pipeline import Pipeline
from objaudio_rt.core.selection import Mask, Text

ROOT = Path(__file__).resolve().parents[3]
NETWORKS = "unet,vae_decoder,vocoder,image_encoder,text_encoder"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random tiny checkpoint folder, and a cache holding its ONNX graphs."""
    root = tmp_path_factory.mktemp("auto")
    folder = Pipeline.from_pretrained("random:tiny", seed=5).save_pretrained(root / "ckpt")
    cache = root / "cache"
    old = os.environ.get("OBJAUDIO_CACHE")
    os.environ["OBJAUDIO_CACHE"] = str(cache)
    try:
        assert export_main(["--checkpoint", str(folder), "--cache", "--quiet", "--only", NETWORKS]) == 0
    finally:
        os.environ["OBJAUDIO_CACHE"] = old
    return folder, cache


def test_checkpoint_fingerprint_from_files_equals_the_models(exported):
    folder, _ = exported
    model, _ = load_checkpoint(folder)
    assert checkpoint_fingerprint(folder) == model_fingerprint(model)
    graph_model, _ = load_graph_model(folder)
    assert isinstance(graph_model, GraphModel) and model_fingerprint(graph_model) == model_fingerprint(model)


def test_auto_picks_onnxruntime_only_with_current_graphs(exported, monkeypatch, tmp_path):
    folder, cache = exported
    fingerprint = lambda: checkpoint_fingerprint(folder)        # noqa: E731
    cpu = torch.device("cpu")
    monkeypatch.setenv("OBJAUDIO_CACHE", str(cache))
    assert resolve_backend("auto", cpu, fingerprint) == "onnxruntime"
    assert resolve_backend("auto", cpu, fingerprint, {"unet_dtype": "fp32"}) == "eager"   # an eager option
    assert resolve_backend("eager", cpu, fingerprint) == "eager"
    monkeypatch.setenv("OBJAUDIO_CACHE", str(tmp_path))                 # nothing cached
    assert resolve_backend("auto", cpu, fingerprint) == "eager"
    stale = tmp_path / "onnx" / fingerprint()[:32]
    stale.mkdir(parents=True)
    (stale / "export_manifest.json").write_text(json.dumps({"format": "objaudio-onnx", "contract_version": 0,
                                                            "checkpoint": {"fingerprint": fingerprint()},
                                                            "networks": {}}))
    assert resolve_backend("auto", cpu, fingerprint) == "eager"         # another contract version
    with pytest.raises(ObjaudioError, match="unknown backend"):
        resolve_backend("quick", cpu, fingerprint)


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_for_many_clips_picks_fast_on_a_cpu_with_native_bf16(exported, monkeypatch, bf16):
    """A service or a batch (many_clips) pays start-up once: fast first where the CPU has native bf16 (its
    VAE runs there), else the one-shot order (onnxruntime with current graphs)."""
    import objaudio_rt.backends as backends

    folder, cache = exported
    fingerprint = lambda: checkpoint_fingerprint(folder)        # noqa: E731
    cpu = torch.device("cpu")
    monkeypatch.setenv("OBJAUDIO_CACHE", str(cache))
    monkeypatch.setattr(backends, "native_bf16", lambda: bf16)
    assert resolve_backend("auto", cpu, fingerprint, many_clips=True) == ("fast" if bf16 else "onnxruntime")
    assert resolve_backend("auto", cpu, fingerprint) == "onnxruntime"                      # one clip: start-up first
    assert resolve_backend("auto", cpu, fingerprint, {"dtype": "fp32"}, many_clips=True) == "eager"   # eager's option
    assert resolve_backend("onnxruntime", cpu, fingerprint, many_clips=True) == "onnxruntime"


def test_export_to_a_current_cache_builds_no_model(exported, monkeypatch, tmp_path):
    """`python -m export.onnx --cache` (each `make demo`) finds current graphs from the checkpoint's files
    and returns without loading the model; a changed graph file sends it down the export path."""
    import shutil

    import export.onnx as exporter

    folder, cache = exported
    shutil.copytree(cache, tmp_path / "cache")
    monkeypatch.setenv("OBJAUDIO_CACHE", str(tmp_path / "cache"))

    def no_load(*args, **kwargs):
        raise AssertionError("load_model called")

    monkeypatch.setattr(exporter, "load_model", no_load)
    argv = ["--checkpoint", str(folder), "--cache", "--quiet", "--only", NETWORKS]
    assert exporter.main(argv) == 0
    with pytest.raises(AssertionError, match="load_model called"):
        exporter.main(argv[:-2])                       # every network: the grounding graphs are not there
    graph = onnx_cache_dir(checkpoint_fingerprint(folder)) / "vocoder.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(AssertionError, match="load_model called"):
        exporter.main(argv)


def test_graph_model_serves_only_graph_backends(exported):
    graph_model, _ = load_graph_model(exported[0])
    with pytest.raises(ObjaudioError, match="load_checkpoint"):
        make_backend("eager", graph_model, torch.device("cpu"))


def test_auto_pipeline_matches_eager_and_loads_the_model_on_demand(exported, monkeypatch, square_mask, scene_image):
    folder, cache = exported
    monkeypatch.setenv("OBJAUDIO_CACHE", str(cache))
    auto = Pipeline.from_pretrained(str(folder), backend="auto")
    eager = Pipeline.from_pretrained(str(folder), backend="eager")
    assert auto.backend_name == "onnxruntime" and auto._model is None        # no network built
    for selection in (Mask(square_mask), Text("a dog barking")):
        gens = [p.generate_many(p.encode_image(scene_image), [selection], steps=3, seed=2, progress=False)[0]
                for p in (eager, auto)]
        scale = gens[0].wave.abs().max()
        assert (gens[1].wave - gens[0].wave).abs().max() <= 1e-4 * scale    # test_onnxruntime's bound
    assert auto.model.config == eager.config                                 # loaded when asked for
    assert model_fingerprint(auto.model) == model_fingerprint(eager.model)


def test_graph_backend_run_imports_no_network_library(exported):
    """What makes it start fast: a whole generate through onnxruntime without diffusers, transformers
    or open_clip in the process."""
    folder, cache = exported
    code = (
        "import sys, numpy as np\n"
        "from objaudio_rt.core.pipeline import Pipeline\n"
        "from objaudio_rt.core.selection import Mask\n"
        f"pipe = Pipeline.from_pretrained({str(folder)!r}, backend='auto')\n"
        "img = np.full((40, 48, 3), 100, np.uint8); m = np.zeros((40, 48), bool); m[:20] = True\n"
        "g = pipe.generate_many(pipe.encode_image(img), [Mask(m)], steps=2, progress=False)[0]\n"
        "assert g.wave.isfinite().all()\n"
        "print(pipe.backend_name, sorted(k for k in ('diffusers', 'transformers', 'open_clip') if k in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OBJAUDIO_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "onnxruntime []"


def test_cli_default_says_which_backend_it_used(exported, tmp_path, scene_image, capsys, monkeypatch):
    from PIL import Image

    from objaudio_rt.frontends.cli import main

    folder, cache = exported
    Image.fromarray(scene_image).save(tmp_path / "scene.png")
    for env, expect in ((str(cache), "onnxruntime"), (str(tmp_path / "empty"), "eager")):
        monkeypatch.setenv("OBJAUDIO_CACHE", env)
        assert main(["generate", "--checkpoint", str(folder), "--image", str(tmp_path / "scene.png"),
                     "--out", str(tmp_path / f"{expect}.wav"), "--no-png", "--steps", "2"]) == 0
        assert f"(backend {expect})" in capsys.readouterr().out
    import soundfile

    waves = [soundfile.read(tmp_path / f"{b}.wav")[0] for b in ("onnxruntime", "eager")]
    assert np.abs(waves[0] - waves[1]).max() <= 1e-4 * np.abs(waves[1]).max()
