"""Parsing and checking request bodies. Every problem is an ObjaudioError whose message says what to send.

Selections stay plain data here; the service turns them into runtime selections against a scene.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass

from ...core.errors import ObjaudioError, check
from ...core.options import GUIDANCE, SAMPLERS, UNION_MODES, RunOptions, check_sample_rate
from ...core.selection import Box, Points, Text
from .limits import ServeLimits

SELECTION_KEYS = ("mask_png", "points", "box", "text", "mask_index", "whole")
GENERATE_FIELDS = ("scene_id", "selections", "union", "stems", "steps", "cfg", "seed", "duration", "sampler",
                   "format", "sample_rate", "loop", "guidance",
                   "silence_gate")


@dataclass(frozen=True)
class GenerateRequest:
    scene_id: str
    selections: tuple[dict, ...]       # each: exactly one of SELECTION_KEYS, checked
    options: RunOptions                # what must match for requests to share one generate_many call
    stems: bool
    format: str                        # "wav" or "json"
    sample_rate: int | None = None     # the WAVs' rate (audio.resample); None: the model's own


@dataclass(frozen=True)
class SegmentRequest:
    scene_id: str
    points: Points | None
    box: Box | None


MAX_DEPTH = 8          # nesting of a request body: the deepest, {"selections": [{"points": [[x, y, 1]]}]}, is 4


def parse_json(body: bytes, limits: ServeLimits) -> dict:
    """A request body -> a JSON object. Every malformed body is an ObjaudioError (a 400): bad syntax, bad
    UTF-8, an integer of more digits than Python converts, and nesting deeper than MAX_DEPTH (Python's
    parser raises RecursionError near 1000 levels; a 4 KB body reaches that)."""
    check(len(body) <= limits.max_body_bytes,
          f"request body is {len(body)} bytes: at most {limits.max_body_bytes} are accepted")
    try:
        data = json.loads(body)
    except RecursionError:
        data = None
    except (ValueError, UnicodeDecodeError) as exc:           # JSONDecodeError is a ValueError, so is a huge int
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ObjaudioError(f"request body is not valid JSON ({reason}): send a JSON object") from None
    check(data is not None and _depth(data) <= MAX_DEPTH,
          f"request body is JSON nested deeper than {MAX_DEPTH} levels: no field of this API needs more")
    check(isinstance(data, dict), "request body must be a JSON object such as {\"scene_id\": ..., ...}")
    return data


def _depth(value) -> int:
    """How deep lists and objects nest in a parsed JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is not None:
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((c, d + 1) for c in children)
    return deepest


def _number(data: dict, key: str, kind: type, default):
    """data[key] as `kind` (int or float), or `default` when absent or null; a bool, a string, a
    fraction for an int, NaN or inf is refused with the field's name."""
    value = data.get(key, default)
    if value is None:
        return None
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        check(ok, f"'{key}' must be an integer, got {_short(value)}")
        return value
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    check(ok, f"'{key}' must be a number, got {_short(value)}")
    try:
        value = float(value)
    except OverflowError:                                      # an int beyond float's range
        value = math.inf
    check(math.isfinite(value), f"'{key}' must be finite, got {_short(value)}")
    return value


def _short(value, n: int = 60) -> str:
    """repr(value) cut to n characters (a message never repeats a whole body)."""
    text = repr(value)
    return text if len(text) <= n else text[:n - 3] + "..."


def _scene_id(data: dict) -> str:
    sid = data.get("scene_id")
    check(sid is not None,
          "'scene_id' is missing: upload the image with POST /v1/scenes and send the scene_id it returns")
    check(isinstance(sid, str) and 0 < len(sid) <= 64,
          f"'scene_id' must be the string POST /v1/scenes returned (at most 64 characters), got {_short(sid)}")
    return sid


def parse_generate(data: dict, limits: ServeLimits) -> GenerateRequest:
    unknown = sorted(set(data) - set(GENERATE_FIELDS))
    check(not unknown, f"unknown field(s) {', '.join(unknown)}: a generate request takes {', '.join(GENERATE_FIELDS)}")
    check("selections" in data, "'selections' is missing: say what to hear, such as [{\"mask_index\": 0}], "
                                "or [{\"whole\": true}] for the whole scene")
    sels = data["selections"]
    check(isinstance(sels, list) and len(sels) > 0,
          "'selections' must be a non-empty list such as [{\"mask_index\": 0}] (or [{\"whole\": true}])")
    check(len(sels) <= limits.max_selections,
          f"{len(sels)} selections in one request: at most {limits.max_selections} are accepted")
    steps = _number(data, "steps", int, None)
    check(steps is None or 1 <= steps <= limits.max_steps, f"'steps' must be in 1..{limits.max_steps}, got {_short(steps)}")
    duration = _number(data, "duration", float, None)
    check(duration is None or 0 < duration <= limits.max_duration,
          f"'duration' must be in (0, {limits.max_duration:g}] seconds, got {_short(duration)}")
    seed = _number(data, "seed", int, 0)                       # its range: RunOptions.resolve, as for the CLI
    union = data.get("union", UNION_MODES[0])
    check(union in UNION_MODES, f"'union' must be one of {', '.join(UNION_MODES)}, got {_short(union)}")
    sampler = data.get("sampler")
    check(sampler in (None, *SAMPLERS), f"'sampler' must be one of {', '.join(SAMPLERS)}, got {_short(sampler)}")
    stems = data.get("stems", False)
    check(isinstance(stems, bool), f"'stems' must be true or false, got {_short(stems)}")
    fmt = data.get("format", "json" if stems else "wav")
    check(fmt in ("wav", "json"), f"'format' must be \"wav\" or \"json\", got {_short(fmt)}")
    check(not (stems and fmt == "wav"), "stems come back as JSON (one WAV per selection and the mix): "
                                        "drop \"format\": \"wav\" or set \"stems\": false")
    loop = data.get("loop", False)
    check(isinstance(loop, bool), f"'loop' must be true or false, got {_short(loop)}")
    rate = _number(data, "sample_rate", int, None)
    if rate is not None:
        check_sample_rate(rate, "'sample_rate'")
    guidance = data.get("guidance", GUIDANCE[0])
    check(guidance in GUIDANCE, f"'guidance' must be one of {', '.join(GUIDANCE)}, got {_short(guidance)}")
    gate = data.get("silence_gate")
    check(gate is None or isinstance(gate, bool), f"'silence_gate' must be true or false, got {_short(gate)}")
    options = RunOptions(steps, sampler, _number(data, "cfg", float, None), seed, duration, union, loop, guidance,
                         gate)
    return GenerateRequest(_scene_id(data), tuple(_selection(s, i, limits) for i, s in enumerate(sels)),
                           options, stems, fmt, rate)


def _selection(sel, i: int, limits: ServeLimits) -> dict:
    check(isinstance(sel, dict) and len(sel) == 1 and next(iter(sel)) in SELECTION_KEYS,
          f"selection {i} must be an object with exactly one of {', '.join(SELECTION_KEYS)}, got {_short(sel, 80)}")
    key, value = next(iter(sel.items()))
    if key == "mask_png":
        check(isinstance(value, str), f"selection {i}: 'mask_png' must be a base64 PNG string, got {_short(value)}")
        return {key: decode_base64(value, f"selection {i}: 'mask_png'")}
    if key == "points":
        return {key: parse_points(value, limits)}
    if key == "box":
        return {key: parse_box(value)}
    if key == "text":
        check(isinstance(value, str), f"selection {i}: 'text' must be a string, a phrase such as "
                                      f"\"a dog barking\", got {_short(value)}")
        return {key: Text(value)}                              # its length: the runtime's one limit (MAX_TEXT)
    if key == "mask_index":
        check(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
              f"selection {i}: 'mask_index' must be a non-negative integer, got {_short(value)}")
        return {key: value}
    check(value is True, f"selection {i}: 'whole' must be true, got {_short(value)}")
    return {key: True}


def decode_base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.split(",", 1)[-1] if text.startswith("data:") else text, validate=True)
    except (binascii.Error, ValueError):
        raise ObjaudioError(f"{what} is not valid base64: send the PNG file's bytes base64-encoded") from None


def parse_points(value, limits: ServeLimits) -> Points:
    check(isinstance(value, list) and 0 < len(value) <= limits.max_points,
          f"'points' must be a list of 1..{limits.max_points} [x, y] or [x, y, label] entries, got {_short(value)}")
    coords, labels = [], []
    for p in value:
        check(isinstance(p, list) and len(p) in (2, 3) and all(_is_number(v) for v in p)
              and (len(p) == 2 or p[2] in (0, 1)),
              f"each point must be [x, y] or [x, y, label] with label 1 (object) or 0 (background), got {_short(p, 40)}")
        coords.append((p[0], p[1]))
        labels.append(int(p[2]) if len(p) == 3 else 1)
    return Points(tuple(coords), tuple(labels))


def parse_box(value) -> Box:
    check(isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value),
          f"'box' must be [x0, y0, x1, y1] in pixels, got {_short(value)}")
    return Box(tuple(value))


def _is_number(v) -> bool:
    """A finite JSON number (not a bool, whose JSON is true/false)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def parse_segment(data: dict, limits: ServeLimits) -> SegmentRequest:
    unknown = sorted(set(data) - {"scene_id", "points", "box"})
    check(not unknown, f"unknown field(s) {', '.join(unknown)}: a segment request takes scene_id, points, box")
    points = parse_points(data["points"], limits) if data.get("points") is not None else None
    box = parse_box(data["box"]) if data.get("box") is not None else None
    check(points is not None or box is not None, "give 'points' ([[x, y, 1], ...]) or 'box' ([x0, y0, x1, y1])")
    return SegmentRequest(_scene_id(data), points, box)
