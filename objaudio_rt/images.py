"""Reading and checking images and masks. Every problem becomes an ObjaudioError that says what to do."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .errors import ObjaudioError, check

MIN_SIDE = 32          # pixels; smaller images carry too little for a 7x7 patch grid
MAX_SIDE = 8192        # pixels; larger images are refused rather than resized silently
MAX_PIXELS = 40_000_000


def _open_path(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    check(path.is_file(), f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            w, h = im.size
            check(w * h <= MAX_PIXELS, f"image {path} is {w}x{h}: at most {MAX_PIXELS} pixels are accepted")
            return np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ObjaudioError):
            raise
        raise ObjaudioError(f"cannot read image {path}: the file is not a readable image ({exc})") from None


def load_image(image) -> np.ndarray:
    """A path, PIL image, (H, W, 3) array or tensor -> (H, W, 3) uint8 RGB, with its size checked."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        arr = _open_path(Path(image))
    elif isinstance(image, Image.Image):
        arr = np.asarray(image.convert("RGB"))
    elif isinstance(image, (np.ndarray, torch.Tensor)):
        arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
        check(arr.ndim == 3 and arr.shape[2] in (3, 4),
              f"image array must be (H, W, 3) RGB, got shape {arr.shape}")
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            check(np.issubdtype(arr.dtype, np.floating), f"image array must be uint8 or float, got {arr.dtype}")
            check(bool(np.isfinite(arr).all()), "image contains NaN or inf values")
            check(arr.min() >= 0.0 and arr.max() <= 1.0, "a float image must hold values in [0, 1]")
            arr = (arr * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ObjaudioError(f"cannot use {type(image).__name__} as an image: pass a path, PIL image or array")
    h, w = arr.shape[:2]
    check(min(h, w) >= MIN_SIDE, f"image is {w}x{h}: each side must be at least {MIN_SIDE} pixels")
    check(max(h, w) <= MAX_SIDE, f"image is {w}x{h}: each side must be at most {MAX_SIDE} pixels; resize it first")
    return np.ascontiguousarray(arr)


def load_mask(mask, size_hw: tuple[int, int]) -> np.ndarray:
    """A path, PIL image, array or tensor -> (H, W) float32 in [0, 1] matching the image size.

    Greyscale images count pixel values / 255 (so a soft mask stays soft); bool arrays count
    True as 1; a colour mask image counts any non-black pixel. The mask must have the image's
    size: it is never resized silently.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(mask, (str, os.PathLike)):
        path = Path(mask)
        check(path.is_file(), f"mask file not found: {path}")
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("L") if im.mode not in ("1", "L", "I", "F") else im)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ObjaudioError(f"cannot read mask {path}: the file is not a readable image ({exc})") from None
        where = str(path)
    elif isinstance(mask, Image.Image):
        arr, where = np.asarray(mask.convert("L")), "mask"
    elif isinstance(mask, (np.ndarray, torch.Tensor)):
        arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        where = "mask"
    else:
        raise ObjaudioError(f"cannot use {type(mask).__name__} as a mask: pass a path, PIL image or array")
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    check(arr.ndim == 2, f"{where} must be a 2-D image, got shape {arr.shape}")
    h, w = size_hw
    check(arr.shape == (h, w), f"{where} is {arr.shape[1]}x{arr.shape[0]} but the image is {w}x{h}: "
                               "make the mask the same size as the image")
    if arr.dtype == bool:
        out = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.float32) / (255.0 if arr.max() > 1 else 1.0)
    else:
        out = arr.astype(np.float32)
        check(bool(np.isfinite(out).all()), f"{where} contains NaN or inf values")
        check(out.min() >= 0.0 and out.max() <= 1.0, f"{where}: a float mask must hold values in [0, 1]")
    out = np.clip(out, 0.0, 1.0)
    check(out.max() > 0, f"{where} is empty (all zero): it selects nothing; draw the object's region")
    return out
