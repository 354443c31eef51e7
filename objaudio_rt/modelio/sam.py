"""Points and boxes to masks with Segment Anything (the segment-anything package).

torch is imported where SAM runs, not with this module: the command line checks a --point or --box
(NEED_SAM, check_sam_file) before it loads torch.

The image embedding (1, 256, 64, 64) is computed once per image and cached on the Scene;
each click then costs only the prompt encoder and mask decoder.
"""
from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ObjaudioError, check
from ..core.options import SAM_TYPES

if TYPE_CHECKING:
    import torch

NEED_SAM = ("points and boxes need Segment Anything: pass --sam-checkpoint (e.g. sam_vit_b_01ec64.pth), "
            "or select with --mask or --text")


def check_sam_file(checkpoint: str | os.PathLike) -> Path:
    path = Path(checkpoint)
    check(not path.is_dir(), f"SAM checkpoint {path} is a folder: give the .pth file")
    check(path.exists(), f"SAM checkpoint not found: {path} (download sam_vit_b_01ec64.pth from the SAM release)")
    check(path.is_file(), f"SAM checkpoint {path} is not a regular file (a named pipe, a device or a socket): "
                          "give the .pth file")
    return path


@dataclass
class SamEmbedding:
    features: torch.Tensor          # (1, 256, 64, 64)
    original_size: tuple[int, int]
    input_size: tuple[int, int]


def load_sam(checkpoint: str | os.PathLike, model_type: str | None = None, device: str = "cpu"):
    """Build SAM and load an official `.pth` with `torch.load(weights_only=True)` (never unpickles code).

    model_type is guessed from the file name (sam_vit_b_01ec64.pth -> vit_b) when not given.
    """
    import torch
    from segment_anything import sam_model_registry

    path = check_sam_file(checkpoint)
    if model_type is None:
        model_type = next((t for t in SAM_TYPES if t in path.name), None)
        check(model_type is not None, f"cannot tell the SAM model type from the name {path.name}: pass --sam-type "
                                      f"({', '.join(SAM_TYPES)})")
    check(model_type in SAM_TYPES, f"unknown SAM model type {model_type!r}: use one of {', '.join(SAM_TYPES)}")
    try:
        with warnings.catch_warnings():        # its pickle-protocol notes are not for the user either
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:        # torch's message advises weights_only=False, which would run the file's code
        raise ObjaudioError(f"cannot read SAM checkpoint {path}: it is not a plain PyTorch state dict "
                            "(damaged, or holds pickled code, which is never run); use the official .pth") from None
    check(isinstance(state, dict), f"cannot read SAM checkpoint {path}: it holds no state dict")
    sam = sam_model_registry[model_type](checkpoint=None)
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ObjaudioError(f"{path} is not a SAM {model_type} checkpoint: {str(exc).splitlines()[0]}") from None
    return sam.to(device).eval()


class SamSegmenter:
    """SAM's predictor holds one image's state (set_image, then predict): every use of it takes
    this segmenter's lock, so threads clicking on different scenes never see each other's image."""

    def __init__(self, sam):
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(sam)
        self._lock = threading.Lock()

    def embed(self, image: np.ndarray) -> SamEmbedding:
        """image: (H, W, 3) uint8 RGB."""
        import torch

        with self._lock, torch.no_grad():
            self.predictor.set_image(image)
            p = self.predictor
            return SamEmbedding(p.features, tuple(p.original_size), tuple(p.input_size))

    def predict(self, emb: SamEmbedding, points: np.ndarray | None = None, labels: np.ndarray | None = None,
                box: np.ndarray | None = None) -> np.ndarray:
        """Best of SAM's three masks for the prompt. Returns (H, W) bool."""
        import torch

        with self._lock, torch.no_grad():
            p = self.predictor
            p.features, p.original_size, p.input_size, p.is_image_set = (
                emb.features, emb.original_size, emb.input_size, True)
            masks, scores, _ = p.predict(point_coords=points, point_labels=labels, box=box, multimask_output=True)
        return masks[int(np.argmax(scores))]
