"""A real uvicorn server on a loopback port, in a thread, around a small random-weight model.

MODEL is the one line to change when random presets are asked for as "random:tiny"
(OBJAUDIO_SERVE_TEST_MODEL overrides it, e.g. to take the README's screenshot with the embedded model).
"""
import os
import socket
import threading
import time

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

MODEL = os.environ.get("OBJAUDIO_SERVE_TEST_MODEL", "tiny")
FAST = {"steps": 2, "duration": 0.32, "seed": 7}          # a generate request's options: seconds on 2 cores


class LiveServer:
    def __init__(self, service):
        import uvicorn

        from objaudio_rt.serve import create_app

        self.service = service
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
            time.sleep(0.05)

    def client(self, timeout: float = 300.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start(limits=None) -> LiveServer:
    from objaudio_rt import Pipeline
    from objaudio_rt.serve import ServeLimits, Service

    model = None if MODEL == "embedded" else MODEL
    return LiveServer(Service(Pipeline.from_pretrained(model, device="cpu", seed=0), limits or ServeLimits()))


@pytest.fixture(scope="package")
def live():
    server = start()
    yield server
    server.stop()
