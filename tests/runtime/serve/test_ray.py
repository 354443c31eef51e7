"""The Ray Serve deployment on a local Ray instance (loopback only), two CPU replicas.

Starting Ray takes minutes on a loaded 2-core machine, so CI skips this test; a developer runs it with
    OBJAUDIO_RAY_TEST=1 python -m pytest -q tests/runtime/serve/test_ray.py
"""
import io
import os
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf

from .conftest import FAST, MODEL, batch_tolerance

pytestmark = pytest.mark.skipif(os.environ.get("OBJAUDIO_RAY_TEST") != "1",
                                reason="slow (starts Ray): run with OBJAUDIO_RAY_TEST=1")


def test_ray_serve_app_batches_and_shares_scenes_across_replicas():
    ray = pytest.importorskip("ray")
    from ray import serve
    from PIL import Image

    from objaudio_rt import Pipeline
    from objaudio_rt.frontends.serve.ray import build

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build({"device": "cpu", "backend": "eager", "checkpoint": MODEL, "replicas": 2}), blocking=False)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        assert client.get("/health").json()["status"] == "ok"
        img = (np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        scene = client.post("/v1/scenes", files={"image": ("x.png", buf.getvalue(), "image/png")}).json()
        body = {"scene_id": scene["scene_id"], "selections": [{"whole": True}], **FAST}
        with ThreadPoolExecutor(8) as pool:                                    # spread over both replicas
            waves = list(pool.map(lambda _: client.post("/v1/generate", json=body), range(8)))
        assert all(r.status_code == 200 and r.headers["content-type"] == "audio/wav" for r in waves)
        assert len({r.headers["x-objaudio-process"] for r in waves}) == 2      # the replica that did not get
        pipe = Pipeline.from_pretrained(MODEL, device="cpu", seed=0)           # the replicas' weights
        tol = batch_tolerance(pipe, pipe.encode_image(img))
        first = sf.read(io.BytesIO(waves[0].content), dtype="float32")[0]     # the upload fetched the scene
        for r in waves:                                                        # same request, same waveform
            assert np.abs(sf.read(io.BytesIO(r.content), dtype="float32")[0] - first).max() <= tol
        r = client.post("/v1/generate", json={**body, "scene_id": "missing"})
        assert r.status_code == 404 and "POST /v1/scenes" in r.json()["error"]
    finally:
        serve.shutdown()
        ray.shutdown()
