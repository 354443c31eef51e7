"""A real uvicorn server on a loopback port, in a thread, around a small random-weight model.

MODEL: random weights at the `tiny` preset ("random:tiny"); OBJAUDIO_SERVE_TEST_MODEL overrides it,
e.g. "tiny-synth" to take the README's screenshot; OBJAUDIO_SERVE_TEST_STEPS and OBJAUDIO_SERVE_TEST_DURATION set the
steps and seconds a request asks for (e.g. the embedded model's own 8 steps and 2.56 s, for that screenshot).
"""
import os

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

MODEL = os.environ.get("OBJAUDIO_SERVE_TEST_MODEL", "random:tiny")
FAST = {"steps": int(os.environ.get("OBJAUDIO_SERVE_TEST_STEPS", "2")),         # a generate request's options:
        "duration": float(os.environ.get("OBJAUDIO_SERVE_TEST_DURATION", "0.32")),   # seconds on 2 cores
        "seed": 7}


class LiveServer:
    def __init__(self, limits=None):
        from objaudio_rt import Pipeline
        from objaudio_rt.frontends.serve import ServeLimits, Service
        from objaudio_rt.frontends.serve.main import ThreadedServer

        pipe = Pipeline.from_pretrained(None if MODEL == "embedded" else MODEL, device="cpu", seed=0)
        self.server = ThreadedServer(Service(pipe, limits or ServeLimits()))
        self.service, self.port, self.url = self.server.service, self.server.port, self.server.url

    def client(self, timeout: float = 600.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def stop(self):
        self.server.stop()


def start(limits=None) -> LiveServer:
    return LiveServer(limits)


def batch_tolerance(pipe, scene) -> float:
    """How far a batch item may sit from the same item run alone: float32 kernels block differently at
    another batch size. Measured on the pipeline itself (alone vs first of a batch of 8), times 4."""
    from objaudio_rt import Whole

    opts = dict(steps=FAST["steps"], duration=FAST["duration"], seed=FAST["seed"], progress=False)
    alone = pipe.generate_many(scene, [Whole()], **opts)[0].wave
    batch = pipe.generate_many(scene, [Whole()] * 8, **opts)[0].wave
    floor = float(np.finfo(np.float32).eps) * float(alone.abs().max())
    return 4 * max(float((alone - batch).abs().max()), floor)


@pytest.fixture(scope="package")
def live():
    server = start()
    yield server
    server.stop()
