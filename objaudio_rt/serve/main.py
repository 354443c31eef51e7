"""`objaudio serve`: build the pipeline and run the app under uvicorn (127.0.0.1 unless told otherwise)."""
from __future__ import annotations

from ..errors import ObjaudioError
from .limits import ServeLimits
from .service import Service


def build_service(checkpoint=None, device: str = "cpu", backend: str = "eager", sam_checkpoint=None,
                  limits: ServeLimits = ServeLimits(), submit=None) -> Service:
    from ..pipeline import Pipeline

    pipe = Pipeline.from_pretrained(checkpoint, device=device, backend=backend, sam_checkpoint=sam_checkpoint)
    return Service(pipe, limits, submit=submit)


def run(host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits = ServeLimits(), **pipeline) -> None:
    import uvicorn

    from .app import create_app

    if not 0 < port < 65536:
        raise ObjaudioError(f"--port must be in 1..65535, got {port}")
    service = build_service(limits=limits, **pipeline)
    print(f"objaudio: serving {service.pipe.source} on http://{host}:{port} (the page at /, the API at /v1, "
          f"docs at /docs)", flush=True)
    uvicorn.run(create_app(service), host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
