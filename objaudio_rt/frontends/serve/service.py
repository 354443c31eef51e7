"""The service behind the HTTP routes: one pipeline, a scene cache, one model thread, a batcher.

Every model call (encoding, SAM, generation) runs on a single worker thread, one at a time: the
pipeline is used by one thread only, and the event loop stays free to accept and refuse requests.
"""
from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Awaitable, Callable

import numpy as np

from ...core.config import FEWSTEP, fewstep_record
from ...core.errors import check
from ...core.options import MAX_SECONDS
from ...core.pipeline import Generation, Pipeline, mix_generations
from ...core.selection import Mask, Selection, Whole
from .batching import Job, MicroBatcher, run_jobs
from .limits import ServeLimits
from .requests import GenerateRequest, SegmentRequest
from .scenes import SceneCache, SceneEntry, decode_image, decode_mask, png_base64, png_bytes, scene_id_of

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo"
DEMO_ID = "demo"


def _model_name(source: str) -> str:
    """What /health names: a preset or random weights as given, a checkpoint folder by its name only, a
    carried few-step path as its checkpoint's name with the path (read once, at start-up)."""
    if source.startswith("random:"):
        return source
    folder = Path(source)
    carried = folder.name == FEWSTEP and fewstep_record(folder) is not None
    return f"{folder.parent.name} (few-step path)" if carried else folder.name


class Service:
    def __init__(self, pipe: Pipeline, limits: ServeLimits = ServeLimits(),
                 submit: Callable[[Job], Awaitable[list[Generation]]] | None = None, shared_scenes=None):
        """`submit` runs one job through some batcher (default: this process's MicroBatcher).
        `shared_scenes` (async `put(scene_id, pixels, masks)`, `get(scene_id) -> (pixels, masks) | None`) lets
        several replicas serve one scene: a replica that lacks a scene fetches its pixels and encodes them."""
        self.pipe, self.limits = pipe, limits
        self.has_sam = pipe.can_segment                          # the pipeline loads SAM on its first click
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="objaudio-model")
        self.scenes = SceneCache(limits.scene_cache)
        self.batcher = MicroBatcher(lambda jobs: run_jobs(pipe, jobs), self.executor,
                                    limits.batch_window_ms / 1000.0, limits.max_batch, limits.max_queue)
        self.submit = submit or self.batcher.submit
        self.shared_scenes = shared_scenes
        self.model_name = _model_name(pipe.source)

    def describe(self) -> dict:
        return {"status": "ok", "model": self.model_name, "device": str(self.pipe.device), "backend": self.pipe.backend_name,
                "sam": self.has_sam, "sample_rate": self.pipe.config.mel.sample_rate,
                "one_row_per_step": self.pipe.config.distilled is not None,
                "defaults": {"steps": self.pipe.config.default_steps, "sampler": self.pipe.config.default_sampler,
                             "cfg": self.pipe.config.default_cfg,
                             "duration": self.pipe.config.clip_seconds,
                             "max_duration": min(MAX_SECONDS, self.limits.max_duration),
                             "max_seconds_one_pass": self.pipe.config.max_seconds}}

    async def on_model_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # ---- scenes ------------------------------------------------------------------------
    async def add_scene(self, image_bytes: bytes) -> dict:
        pixels = decode_image(image_bytes, self.limits)
        return await self.add_pixels(scene_id_of(pixels), pixels)

    async def add_pixels(self, scene_id: str, pixels: np.ndarray, masks=(), pinned: bool = False) -> dict:
        if scene_id not in self.scenes:
            scene = await self.on_model_thread(self.pipe.encode_image, pixels)
            self.scenes.put(scene_id, SceneEntry(scene, list(masks), pinned))
            if self.shared_scenes is not None and not pinned:
                await self.shared_scenes.put(scene_id, pixels, list(masks))
        return self.scenes.get(scene_id).describe(scene_id)

    async def entry(self, scene_id: str) -> SceneEntry:
        """A cached scene; one another replica holds is fetched and encoded here first."""
        if scene_id not in self.scenes and self.shared_scenes is not None:
            found = await self.shared_scenes.get(scene_id)
            if found is not None:
                pixels, masks = found
                scene = await self.on_model_thread(self.pipe.encode_image, pixels)
                self.scenes.put(scene_id, SceneEntry(scene, masks))
        if scene_id == DEMO_ID and DEMO_ID not in self.scenes:
            await self.demo_scene()
        return self.scenes.get(scene_id)

    async def demo_scene(self) -> dict:
        """The bundled demo scene with its object masks, as the scene id "demo"."""
        from ...core.images import load_image, load_mask

        if DEMO_ID not in self.scenes:
            pixels = load_image(DEMO / "scene.png")
            masks = [(p.stem.removeprefix("mask_"), load_mask(p, pixels.shape[:2]))
                     for p in sorted(DEMO.glob("mask_*.png"))]
            return await self.add_pixels(DEMO_ID, pixels, masks, pinned=True)
        return self.scenes.get(DEMO_ID).describe(DEMO_ID)

    async def scene_png(self, scene_id: str) -> bytes:
        return png_bytes((await self.entry(scene_id)).scene.image)

    # ---- segment -----------------------------------------------------------------------
    async def segment(self, req: SegmentRequest) -> bytes:
        entry = await self.entry(req.scene_id)
        check(self.has_sam,
              "this server has no Segment Anything checkpoint: restart it with --sam-checkpoint "
              "(e.g. sam_vit_b_01ec64.pth), or select with a mask, mask_index or text")
        parts = [p for p in (req.points, req.box) if p is not None]
        selection = parts[0] if len(parts) == 1 else parts[0] | parts[1]
        _, pixel = await self.on_model_thread(self.pipe.select, entry.scene, selection)
        return png_bytes(pixel)

    # ---- generate ----------------------------------------------------------------------
    async def generate(self, req: GenerateRequest) -> list[Generation]:
        """Generations: one per selection then the mix with stems, else the mix alone."""
        entry = await self.entry(req.scene_id)
        run = req.options.resolve(self.pipe.config, self.pipe.union)   # checked against the model before queueing
        parts = [await self._runtime_selection(entry, sel) for sel in req.selections]
        mix = parts[0]
        for p in parts[1:]:
            mix = mix | p
        if req.stems and len(parts) > 1 and run.union == "mix":   # union "mix" is the stems' sum: one run, not two
            stems = await self.submit(Job(req.scene_id, entry.scene, parts, req.options))
            return stems + [mix_generations(stems)]
        items = (parts + [mix] if len(parts) > 1 else parts) if req.stems else [mix]
        return await self.submit(Job(req.scene_id, entry.scene, items, req.options))

    async def _runtime_selection(self, entry: SceneEntry, sel: dict) -> Selection:
        """Plain request data -> a runtime selection; points and boxes are resolved by SAM here, so a
        bad click fails its own request rather than the batch it would have joined."""
        (key, value), = sel.items()
        h, w = entry.scene.size_hw
        if key == "mask_png":
            return Mask(decode_mask(value, (h, w), self.limits))
        if key == "mask_index":
            check(value < len(entry.masks), f"mask_index {value} is out of range: this scene has "
                                            f"{len(entry.masks)} object mask(s)")
            return Mask(entry.masks[value][1])
        if key == "whole":
            return Whole()
        if key in ("points", "box"):
            _, pixel = await self.on_model_thread(self.pipe.select, entry.scene, value)
            return Mask(pixel)
        return value                                                    # Text


def encode_wav(wave, sample_rate: int, rate: int | None = None, loop: bool = False) -> bytes:
    """(T,) float32 -> a 32-bit float mono WAV file (the waveform's bits unchanged unless `rate` resamples
    it; a loop carries its loop points): audio.wav_bytes, the command line's writer."""
    from ...core.audio import wav_bytes

    return wav_bytes(wave, sample_rate, "float", rate, loop)


def spectrogram_png(mel) -> bytes:
    """(frames, n_mels) log-mel -> a viridis PNG, low bands at the bottom."""
    from matplotlib import colormaps

    m = np.asarray(mel, np.float32).T[::-1]                             # (n_mels, frames)
    lo, hi = float(m.min()), float(m.max())
    rgb = colormaps["viridis"]((m - lo) / max(hi - lo, 1e-6))[..., :3]
    return png_bytes((rgb * 255.0 + 0.5).astype(np.uint8))


def generation_json(gen: Generation, rate: int | None = None) -> dict:
    b64 = lambda data: base64.b64encode(data).decode("ascii")           # noqa: E731
    return {"wav": b64(encode_wav(gen.wave, gen.sample_rate, rate, gen.loop)), "spectrogram_png": b64(spectrogram_png(gen.mel)),
            "mask_png": png_base64(gen.mask) if gen.mask is not None else None,
            "seconds": gen.wave.numel() / gen.sample_rate, "silent": gen.silent}
