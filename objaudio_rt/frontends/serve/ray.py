"""The same app as a Ray Serve deployment: replicas (a GPU each), `@serve.batch`, autoscaling.

    serve run objaudio_rt.frontends.serve.ray:app                            # GPU replicas, fast backend
    serve run objaudio_rt.frontends.serve.ray:build device=cpu backend=eager num_gpus=0 checkpoint=random:tiny

Each `Objaudio` replica holds one pipeline and runs the FastAPI app of `objaudio serve`; generate
requests reaching a replica are gathered by `@serve.batch` and run by the same `run_jobs` as the
single-process service (one `generate_many` call per scene and options). A scene uploaded to one
replica is kept by `SceneStore` (one small replica: pixels and masks, bounded LRU) so any other
replica can encode it on first use. Ray's own limits answer 503 when every replica's queue is full.
"""
from __future__ import annotations

from collections import OrderedDict

from ray import serve

from .batching import Job, run_jobs
from .limits import ServeLimits

# Replicas follow the load: about 8 requests in flight per replica (two CPU-side batches in the
# pipeline), from 1 to 4 replicas; scale up after 10 s of load, down after 2 idle minutes.
AUTOSCALING = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8,
               "upscale_delay_s": 10.0, "downscale_delay_s": 120.0}
BATCH = {"max_batch_size": ServeLimits().max_batch, "batch_wait_timeout_s": ServeLimits().batch_window_ms / 1000}


@serve.deployment(num_replicas=1, max_ongoing_requests=256)
class SceneStore:
    """Uploaded scenes' pixels and masks, shared by all replicas; least recently used dropped first."""

    def __init__(self, capacity: int = 4 * ServeLimits().scene_cache):
        self.capacity = capacity
        self.scenes: OrderedDict = OrderedDict()

    def put(self, scene_id: str, pixels, masks) -> None:
        self.scenes[scene_id] = (pixels, masks)
        self.scenes.move_to_end(scene_id)
        while len(self.scenes) > self.capacity:
            self.scenes.popitem(last=False)

    def get(self, scene_id: str):
        found = self.scenes.get(scene_id)
        if found is not None:
            self.scenes.move_to_end(scene_id)
        return found


class _SharedScenes:
    """The Service's view of the SceneStore deployment."""

    def __init__(self, handle):
        self.handle = handle

    async def put(self, scene_id, pixels, masks):
        await self.handle.put.remote(scene_id, pixels, masks)

    async def get(self, scene_id):
        return await self.handle.get.remote(scene_id)


@serve.deployment(max_ongoing_requests=4 * ServeLimits().max_batch, max_queued_requests=ServeLimits().max_queue,
                  autoscaling_config=AUTOSCALING, ray_actor_options={"num_gpus": 1})
@serve.ingress()
class Objaudio:
    def __init__(self, scenes, checkpoint: str | None = None, device: str = "cuda", backend: str = "fast",
                 sam_checkpoint: str | None = None, threads: int | None = None):
        from .main import build_service

        self.service = build_service(checkpoint, device, backend, sam_checkpoint, submit=self.submit,
                                     shared_scenes=_SharedScenes(scenes), threads=threads)

    @serve.batch(**BATCH)
    async def generate_batch(self, jobs: list[Job]) -> list:
        return await self.service.on_model_thread(run_jobs, self.service.pipe, jobs)

    async def submit(self, job: Job):
        result = await self.generate_batch(job)
        if isinstance(result, Exception):
            raise result
        return result

    def __serve_build_asgi_app__(self):
        from .app import create_app

        return create_app(self.service)


def build(args: dict):
    """`serve run objaudio_rt.frontends.serve.ray:build key=value ...`: checkpoint, device, backend, sam_checkpoint,
    threads (CPU threads per replica, threads.check_threads), num_gpus (per replica; default 1 on cuda, else 0), replicas (a fixed count instead of autoscaling)."""
    args = dict(args)
    device = args.pop("device", "cuda")
    gpus = float(args.pop("num_gpus", 1 if device.startswith("cuda") else 0))
    replicas = args.pop("replicas", None)
    options = {"ray_actor_options": {"num_gpus": gpus}}
    if replicas is not None:
        options.update(num_replicas=int(replicas), autoscaling_config=None)
    kwargs = {k: args.pop(k) for k in ("checkpoint", "backend", "sam_checkpoint") if k in args}
    if "threads" in args:
        from ...core.threads import check_threads

        text = str(args.pop("threads"))
        kwargs["threads"] = check_threads(int(text) if text.isdigit() else text, "threads")
    if args:
        raise ValueError(f"unknown argument(s) {', '.join(args)}: use checkpoint, device, backend, sam_checkpoint, "
                         "threads, num_gpus, replicas")
    return Objaudio.options(**options).bind(SceneStore.bind(), device=device, **kwargs)


app = build({})
