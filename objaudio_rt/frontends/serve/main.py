"""`objaudio serve`: build the pipeline and run the app under uvicorn (127.0.0.1 unless told otherwise)."""
from __future__ import annotations

from ...core.errors import ObjaudioError
from .limits import ServeLimits
from .service import Service


def build_service(checkpoint=None, device: str = "cpu", backend: str = "eager", sam_checkpoint=None,
                  limits: ServeLimits = ServeLimits(), submit=None, shared_scenes=None,
                  threads: int | None = None, path: str | None = None) -> Service:
    """`threads`: the model's CPU threads (threads.use_threads: checked against the cores; None = the
    run's default, as for `objaudio generate`); `path`: which of the checkpoint's paths (--full, --fewstep)."""
    from ...core.pipeline import Pipeline
    from ...core.threads import use_threads

    use_threads(threads)
    pipe = Pipeline.from_pretrained(checkpoint, device=device, backend=backend, sam_checkpoint=sam_checkpoint,
                                    path=path, many_clips=True)     # a service: start-up once, clips for hours
    return Service(pipe, limits, submit=submit, shared_scenes=shared_scenes)


def run(host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits = ServeLimits(), **pipeline) -> None:
    import uvicorn

    from .app import create_app

    if not 0 < port < 65536:
        raise ObjaudioError(f"--port must be in 1..65535, got {port}")
    service = build_service(limits=limits, **pipeline)
    print(f"objaudio: serving {service.pipe.source} (backend {service.pipe.backend_name}) on http://{host}:{port} "
          f"(the page at /, the API at /v1, "
          f"docs at /docs)", flush=True)
    uvicorn.run(create_app(service), host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


class ThreadedServer:
    """The app under uvicorn on a free loopback port, in a daemon thread (tests and the benchmark)."""

    def __init__(self, service: Service, start_timeout_s: float = 30.0):
        import socket
        import threading
        import time

        import uvicorn

        from .app import create_app

        self.service = service
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start within {start_timeout_s:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
