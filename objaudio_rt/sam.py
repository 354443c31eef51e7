"""Points and boxes to masks with Segment Anything (the segment-anything package).

The image embedding (1, 256, 64, 64) is computed once per image and cached on the Scene;
each click then costs only the prompt encoder and mask decoder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ObjaudioError, check

SAM_TYPES = ("vit_b", "vit_l", "vit_h")


@dataclass
class SamEmbedding:
    features: torch.Tensor          # (1, 256, 64, 64)
    original_size: tuple[int, int]
    input_size: tuple[int, int]


def load_sam(checkpoint: str | os.PathLike, model_type: str | None = None, device: str = "cpu"):
    """Build SAM and load an official `.pth` with `torch.load(weights_only=True)` (never unpickles code).

    model_type is guessed from the file name (sam_vit_b_01ec64.pth -> vit_b) when not given.
    """
    from segment_anything import sam_model_registry

    path = Path(checkpoint)
    check(path.is_file(), f"SAM checkpoint not found: {path} (download sam_vit_b_01ec64.pth from the SAM release)")
    if model_type is None:
        model_type = next((t for t in SAM_TYPES if t in path.name), None)
        check(model_type is not None, f"cannot tell the SAM model type from {path.name}: pass one of {SAM_TYPES}")
    check(model_type in SAM_TYPES, f"unknown SAM model type {model_type!r}: use one of {SAM_TYPES}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ObjaudioError(f"cannot read SAM checkpoint {path}: {exc}") from None
    sam = sam_model_registry[model_type](checkpoint=None)
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ObjaudioError(f"{path} is not a SAM {model_type} checkpoint: {str(exc).splitlines()[0]}") from None
    return sam.to(device).eval()


class SamSegmenter:
    def __init__(self, sam):
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(sam)

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> SamEmbedding:
        """image: (H, W, 3) uint8 RGB."""
        self.predictor.set_image(image)
        p = self.predictor
        return SamEmbedding(p.features, tuple(p.original_size), tuple(p.input_size))

    @torch.no_grad()
    def predict(self, emb: SamEmbedding, points: np.ndarray | None = None, labels: np.ndarray | None = None,
                box: np.ndarray | None = None) -> np.ndarray:
        """Best of SAM's three masks for the prompt. Returns (H, W) bool."""
        p = self.predictor
        p.features, p.original_size, p.input_size, p.is_image_set = (
            emb.features, emb.original_size, emb.input_size, True)
        masks, scores, _ = p.predict(point_coords=points, point_labels=labels, box=box, multimask_output=True)
        return masks[int(np.argmax(scores))]
