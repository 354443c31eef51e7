"""The FastAPI app: the click-to-hear page and the JSON/WAV API, with errors as {"error": "..."}.

4xx: the caller's mistake, with the runtime's own message (400 bad input, 404 unknown scene,
413 too large, 503 + Retry-After when the queue is full, 504 past the per-request time-out);
5xx with a generic message only for our own failures.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from ...core.errors import ObjaudioError, check
from .batching import QueueFull
from .requests import parse_generate, parse_json, parse_segment
from ...core.images import TooLarge
from .scenes import SceneNotFound
from .service import Service, encode_wav, generation_json

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("objaudio.serve")
PROCESS = f"{socket.gethostname()}:{os.getpid()}"


class ClientGone(Exception):
    """The client closed the connection before its result was ready."""


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(service: Service) -> FastAPI:
    """The app. /docs is Swagger UI with its JavaScript and CSS from the installed fastapi-offline package
    (FastAPI's default loads them from a CDN: a blank page offline); Swagger UI's online validator is off."""
    from fastapi_offline import FastAPIOffline

    app = FastAPIOffline(title="objaudio", summary="Object-aware image-to-audio generation: click to hear",
                         docs_url="/docs", redoc_url=None, static_url="/docs-assets",
                         swagger_ui_parameters={"validatorUrl": None})
    limits = service.limits

    @app.exception_handler(SceneNotFound)
    async def _not_found(_: Request, exc: SceneNotFound):
        return error(404, str(exc))

    @app.exception_handler(TooLarge)
    async def _too_large(_: Request, exc: TooLarge):
        return error(413, str(exc))

    @app.exception_handler(ObjaudioError)
    async def _bad_input(_: Request, exc: ObjaudioError):
        return error(400, str(exc))

    @app.exception_handler(QueueFull)
    async def _busy(_: Request, exc: QueueFull):
        return error(503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        return error(400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _ours(_: Request, exc: Exception):                      # uvicorn logs the traceback
        return error(500, f"internal error ({type(exc).__name__}); the service logged it")

    @app.middleware("http")
    async def _process(request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Objaudio-Process"] = PROCESS                # which replica answered (scale-out)
        return response

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    async def health():
        return service.describe()

    @app.post("/v1/scenes")
    async def add_scene(request: Request):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_image_bytes + 64 * 1024:
            raise TooLarge(f"upload is {length} bytes: images of at most {limits.max_image_bytes} bytes are accepted")
        check(request.headers.get("content-type", "").startswith("multipart/form-data"),
              "send the image as multipart/form-data in a field named 'image'")
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("image")
        check(upload is not None and hasattr(upload, "read"),
              "multipart field 'image' is missing: send the image file in a field named 'image'")
        data = await upload.read(limits.max_image_bytes + 1)
        return await service.add_scene(data)

    @app.get("/v1/demo")
    async def demo():
        return await service.demo_scene()

    @app.get("/v1/scenes/{scene_id}/image")
    async def scene_image(scene_id: str):
        return Response(await service.scene_png(scene_id), media_type="image/png")

    @app.post("/v1/segment")
    async def segment(request: Request):
        req = parse_segment(parse_json(await request.body(), limits), limits)
        return Response(await service.segment(req), media_type="image/png")

    @app.post("/v1/generate")
    async def generate(request: Request):
        req = parse_generate(parse_json(await request.body(), limits), limits)
        task = asyncio.ensure_future(service.generate(req))
        try:
            gens = await _unless_gone(request, task, limits.request_timeout_s)
        except TimeoutError:
            return error(504, f"generation did not finish within the {limits.request_timeout_s:g} s limit per "
                              "request: ask for fewer steps or a shorter duration, or retry later")
        except ClientGone:
            log.info("client left before its generation finished; dropped it")
            return Response(status_code=499)
        rate = req.sample_rate
        if req.format == "wav":
            return Response(encode_wav(gens[0].wave, gens[0].sample_rate, rate, gens[0].loop), media_type="audio/wav")
        g = gens[0]
        body = {"sample_rate": rate or g.sample_rate, "seed": g.seed, "steps": g.steps, "sampler": g.sampler,
                "cfg": g.cfg, "union": req.options.union, "loop": g.loop,
                "seconds": g.wave.numel() / g.sample_rate, "mix": generation_json(gens[-1], rate),
                "stems": [dict(generation_json(x, rate), selection=i) for i, x in enumerate(gens[:len(req.selections)])]
                if req.stems else []}
        return JSONResponse(body)

    return app


async def _unless_gone(request: Request, task: asyncio.Future, timeout_s: float):
    """The task's result; cancels it when the client disconnects or the time-out passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, min(0.2, deadline - loop.time())))
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone()
            if loop.time() >= deadline:
                raise TimeoutError()
    finally:
        if not task.done():
            task.cancel()
