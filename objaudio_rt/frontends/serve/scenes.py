"""Uploaded images: decoding with the size limits, and the bounded cache of encoded scenes.

Uploads are read by the runtime's own reader (images.load_image / load_mask: the modes, EXIF
orientation, NaN and LAB checks and messages of the command line), with the service's pixel limit.
"""
from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ...core.errors import ObjaudioError, check
from ...core.images import TooLarge, load_image, load_mask
from ...core.pipeline import Scene
from .limits import ServeLimits


class SceneNotFound(ObjaudioError):
    """A scene id the service does not hold (never uploaded, or dropped from the bounded cache)."""


@dataclass
class SceneEntry:
    scene: Scene
    masks: list[tuple[str, np.ndarray]] = field(default_factory=list)   # (name, (H, W) float32 in [0, 1])
    pinned: bool = False                                                 # the demo scene is never dropped

    def describe(self, scene_id: str) -> dict:
        h, w = self.scene.size_hw
        return {"scene_id": scene_id, "width": w, "height": h,
                "masks": [{"index": i, "name": name, "png": png_base64(mask)} for i, (name, mask) in
                          enumerate(self.masks)]}


def scene_id_of(pixels: np.ndarray) -> str:
    """Content address: the same image uploaded twice is the same scene (and one cache entry)."""
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()[:32]


def decode_image(data: bytes, limits: ServeLimits) -> np.ndarray:
    """Image file bytes -> (H, W, 3) uint8 RGB, read as the command line reads a file; the byte size and
    the pixel count (from the header) are checked before anything is decoded."""
    if len(data) > limits.max_image_bytes:
        raise TooLarge(f"image is {len(data)} bytes: at most {limits.max_image_bytes} are accepted")
    return load_image(data, max_pixels=limits.max_image_pixels)


def decode_mask(data: bytes, size_hw: tuple[int, int], limits: ServeLimits) -> np.ndarray:
    """Mask file bytes -> (H, W) float32, read as the command line reads a mask file (alpha cut-outs,
    brightness, 16-bit); it must have the scene's size (the runtime's check and message)."""
    return load_mask(data, size_hw, max_pixels=limits.max_image_pixels)


def png_bytes(array: np.ndarray) -> bytes:
    """(H, W) in [0, 1] (a mask) or (H, W, 3) uint8 -> PNG file bytes."""
    from PIL import Image

    if array.ndim == 2:
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def png_base64(array: np.ndarray) -> str:
    import base64

    return base64.b64encode(png_bytes(array)).decode("ascii")


class SceneCache:
    """Encoded scenes by id, least recently used dropped first; pinned entries stay."""

    def __init__(self, capacity: int):
        check(capacity >= 1, f"scene cache capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, SceneEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, scene_id: str) -> bool:
        return scene_id in self._entries

    def put(self, scene_id: str, entry: SceneEntry) -> None:
        self._entries[scene_id] = entry
        self._entries.move_to_end(scene_id)
        unpinned = [k for k, e in self._entries.items() if not e.pinned]
        for key in unpinned[:max(0, len(unpinned) - self.capacity)]:
            del self._entries[key]

    def get(self, scene_id: str) -> SceneEntry:
        entry = self._entries.get(scene_id)
        if entry is None:
            raise SceneNotFound(f"unknown scene_id {scene_id!r}: upload the image with POST /v1/scenes first "
                                f"(the service keeps the {self.capacity} most recently used scenes)")
        self._entries.move_to_end(scene_id)
        return entry
