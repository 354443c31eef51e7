"""Parsing and checking request bodies. Every problem is an ObjaudioError whose message says what to send.

Selections stay plain data here; the service turns them into runtime selections against a scene.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass

from ..errors import ObjaudioError, check
from ..options import SAMPLERS, UNION_MODES, RunOptions
from ..selection import Box, Points, Text
from .limits import ServeLimits

SELECTION_KEYS = ("mask_png", "points", "box", "text", "mask_index", "whole")
GENERATE_FIELDS = ("scene_id", "selections", "union", "stems", "steps", "cfg", "seed", "duration", "sampler",
                   "format")


@dataclass(frozen=True)
class GenerateRequest:
    scene_id: str
    selections: tuple[dict, ...]       # each: exactly one of SELECTION_KEYS, checked
    options: RunOptions                # what must match for requests to share one generate_many call
    stems: bool
    format: str                        # "wav" or "json"


@dataclass(frozen=True)
class SegmentRequest:
    scene_id: str
    points: Points | None
    box: Box | None


def parse_json(body: bytes, limits: ServeLimits) -> dict:
    check(len(body) <= limits.max_body_bytes,
          f"request body is {len(body)} bytes: at most {limits.max_body_bytes} are accepted")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ObjaudioError(f"request body is not valid JSON ({exc}): send a JSON object") from None
    check(isinstance(data, dict), "request body must be a JSON object such as {\"scene_id\": ..., ...}")
    return data


def _number(data: dict, key: str, kind: type, default):
    value = data.get(key, default)
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    check(ok, f"'{key}' must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    check(math.isfinite(value), f"'{key}' must be finite, got {value!r}")
    return kind(value)


def _scene_id(data: dict) -> str:
    sid = data.get("scene_id")
    check(isinstance(sid, str) and 0 < len(sid) <= 64,
          "'scene_id' is missing: upload the image with POST /v1/scenes and send the scene_id it returns")
    return sid


def parse_generate(data: dict, limits: ServeLimits) -> GenerateRequest:
    unknown = sorted(set(data) - set(GENERATE_FIELDS))
    check(not unknown, f"unknown field(s) {', '.join(unknown)}: a generate request takes {', '.join(GENERATE_FIELDS)}")
    sels = data.get("selections", [{"whole": True}])
    check(isinstance(sels, list) and len(sels) > 0,
          "'selections' must be a non-empty list such as [{\"mask_index\": 0}] (or [{\"whole\": true}])")
    check(len(sels) <= limits.max_selections,
          f"{len(sels)} selections in one request: at most {limits.max_selections} are accepted")
    steps = _number(data, "steps", int, None)
    check(steps is None or 1 <= steps <= limits.max_steps, f"'steps' must be in 1..{limits.max_steps}, got {steps}")
    duration = _number(data, "duration", float, None)
    check(duration is None or 0 < duration <= limits.max_duration,
          f"'duration' must be in (0, {limits.max_duration:g}] seconds, got {duration}")
    seed = _number(data, "seed", int, 0)
    check(0 <= seed < 2 ** 63, f"'seed' must be a non-negative integer, got {seed}")
    union = data.get("union", UNION_MODES[0])
    check(union in UNION_MODES, f"'union' must be one of {', '.join(UNION_MODES)}, got {union!r}")
    sampler = data.get("sampler")
    check(sampler in (None, *SAMPLERS), f"'sampler' must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    stems = data.get("stems", False)
    check(isinstance(stems, bool), f"'stems' must be true or false, got {stems!r}")
    fmt = data.get("format", "json" if stems else "wav")
    check(fmt in ("wav", "json"), f"'format' must be \"wav\" or \"json\", got {fmt!r}")
    check(not (stems and fmt == "wav"), "stems come back as JSON (one WAV per selection and the mix): "
                                        "drop \"format\": \"wav\" or set \"stems\": false")
    options = RunOptions(steps, sampler, _number(data, "cfg", float, None), seed, duration, union)
    return GenerateRequest(_scene_id(data), tuple(_selection(s, i, limits) for i, s in enumerate(sels)),
                           options, stems, fmt)


def _selection(sel, i: int, limits: ServeLimits) -> dict:
    check(isinstance(sel, dict) and len(sel) == 1 and next(iter(sel)) in SELECTION_KEYS,
          f"selection {i} must be an object with exactly one of {', '.join(SELECTION_KEYS)}, got {sel!r:.80}")
    key, value = next(iter(sel.items()))
    if key == "mask_png":
        check(isinstance(value, str), f"selection {i}: 'mask_png' must be a base64 PNG string")
        return {key: decode_base64(value, f"selection {i}: 'mask_png'")}
    if key == "points":
        return {key: parse_points(value, limits)}
    if key == "box":
        return {key: parse_box(value)}
    if key == "text":
        check(isinstance(value, str) and len(value) <= limits.max_text_chars,
              f"selection {i}: 'text' must be a phrase of at most {limits.max_text_chars} characters")
        return {key: Text(value)}
    if key == "mask_index":
        check(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
              f"selection {i}: 'mask_index' must be a non-negative integer, got {value!r}")
        return {key: value}
    check(value is True, f"selection {i}: 'whole' must be true")
    return {key: True}


def decode_base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.split(",", 1)[-1] if text.startswith("data:") else text, validate=True)
    except (binascii.Error, ValueError):
        raise ObjaudioError(f"{what} is not valid base64: send the PNG file's bytes base64-encoded") from None


def parse_points(value, limits: ServeLimits) -> Points:
    check(isinstance(value, list) and 0 < len(value) <= limits.max_points,
          f"'points' must be a list of 1..{limits.max_points} [x, y] or [x, y, label] entries")
    coords, labels = [], []
    for p in value:
        check(isinstance(p, list) and len(p) in (2, 3) and all(isinstance(v, (int, float)) for v in p),
              f"each point must be [x, y] or [x, y, label] with label 1 (object) or 0 (background), got {p!r:.40}")
        coords.append((p[0], p[1]))
        labels.append(int(p[2]) if len(p) == 3 else 1)
    return Points(tuple(coords), tuple(labels))


def parse_box(value) -> Box:
    check(isinstance(value, list) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value),
          f"'box' must be [x0, y0, x1, y1] in pixels, got {value!r:.60}")
    return Box(tuple(value))


def parse_segment(data: dict, limits: ServeLimits) -> SegmentRequest:
    unknown = sorted(set(data) - {"scene_id", "points", "box"})
    check(not unknown, f"unknown field(s) {', '.join(unknown)}: a segment request takes scene_id, points, box")
    points = parse_points(data["points"], limits) if data.get("points") is not None else None
    box = parse_box(data["box"]) if data.get("box") is not None else None
    check(points is not None or box is not None, "give 'points' ([[x, y, 1], ...]) or 'box' ([x0, y0, x1, y1])")
    return SegmentRequest(_scene_id(data), points, box)
