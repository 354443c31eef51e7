"""What the service accepts: every limit in one dataclass (the README's limits table mirrors it)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ...core.errors import ObjaudioError


@dataclass(frozen=True)
class ServeLimits:
    max_image_bytes: int = 8 * 1024 * 1024      # an uploaded image file
    max_image_pixels: int = 4096 * 4096         # width x height of an uploaded image
    max_body_bytes: int = 8 * 1024 * 1024       # a JSON request body (mask PNGs travel base64 inside it)
    max_steps: int = 200                        # denoising steps per request
    max_duration: float = 60.0                  # seconds of audio; past the model's max_seconds: windows (longform.py)
    max_selections: int = 8                     # selections per generate request
    max_points: int = 16                        # clicks in one points selection
    max_queue: int = 64                         # generate requests waiting or running; more get 503 + Retry-After
    request_timeout_s: float = 300.0            # per generate request, queueing included; then 504
    batch_window_ms: float = 10.0               # how long the first request of a batch waits for company
    max_batch: int = 16                         # generate requests gathered into one batch
    scene_cache: int = 64                       # encoded scenes kept (least recently used dropped first)

    @classmethod
    def from_name(cls, name: str, **overrides) -> "ServeLimits":
        """`default`, or `unbatched` (the same limits, each request run alone: the benchmark's baseline)."""
        presets = {"default": cls(), "unbatched": cls(max_batch=1, batch_window_ms=0.0)}
        if name not in presets:
            raise ObjaudioError(f"unknown serve limits preset {name!r}: use one of {', '.join(presets)}")
        return replace(presets[name], **overrides)
