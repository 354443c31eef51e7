"""What one generation asks for, as the command line describes it: an image, the parts of a selection
(masks, phrases, boxes, clicks), run options, the output WAV (and one WAV per part with stems).

`objaudio generate` is one Job from its flags; `objaudio batch` reads many from a JSONL file (one JSON
object a line) or a folder of images. Plain Python, as every check before the model loads: every job
of a batch is checked (files read, options against the model's settings) before torch is imported.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ObjaudioError, check
from ..core.options import RunOptions

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm", ".gif")
RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunOptions))      # steps, sampler, cfg, seed, duration, union, loop, ...
LINE_FIELDS = ("image", "mask", "text", "box", "point", "bg_point", "out") + RUN_FIELDS


@dataclass(frozen=True)
class Job:
    where: str                                       # how messages name it: "jobs.jsonl line 3"; "" for flags
    image: Path
    out: Path
    options: RunOptions
    masks: tuple[Path, ...] = ()
    texts: tuple[str, ...] = ()
    boxes: tuple[tuple[float, ...], ...] = ()        # (x0, y0, x1, y1) each
    points: tuple[tuple[float, ...], ...] = ()       # (x, y) on the object
    bg_points: tuple[tuple[float, ...], ...] = ()    # (x, y) on the background

    def parts(self, size_hw: tuple[int, int], sam_checkpoint) -> list[tuple[str, object]]:
        """(label, runtime selection) per part, each checked against the image (no model needed)."""
        from ..core.images import load_mask
        from ..core.selection import Box, Mask, Points, Text

        parts = [(f"mask {m.name}", Mask(load_mask(m, size_hw))) for m in self.masks]
        parts += [(f"text '{t}'", Text(t)) for t in self.texts]
        parts += [(f"box {_numbers(b)}", Box(b)) for b in self.boxes]
        if self.points or self.bg_points:
            check(bool(self.points), "--bg-point needs at least one --point on the object")
            label = " ".join(f"point {_numbers(p)}" for p in self.points)
            parts.append((label, Points(self.points + self.bg_points,
                                        (1,) * len(self.points) + (0,) * len(self.bg_points))))
        for _, p in parts:
            if isinstance(p, (Points, Box)):
                from ..modelio.sam import NEED_SAM, check_sam_file

                p.check_inside(size_hw)
                check(sam_checkpoint is not None, NEED_SAM)
                check_sam_file(sam_checkpoint)
        return parts

    def outputs(self, stems: bool) -> list[Path]:
        """The mix's WAV, then with `stems` one WAV per part: OUT.stem-0.wav, OUT.stem-1.wav, ..."""
        n = len(self.masks) + len(self.texts) + len(self.boxes) + (1 if self.points else 0)
        return [self.out] + ([stem_path(self.out, k) for k in range(n)] if stems else [])

    def inputs(self) -> list[Path]:
        return [self.image, *self.masks]


def stem_path(out: Path, k: int) -> Path:
    return out.with_name(f"{out.stem}.stem-{k}{out.suffix}")


def union(parts: list[tuple[str, object]]):
    """The union of the parts' selections, or None (the whole scene) when there are none."""
    if not parts:
        return None
    sel = parts[0][1]
    for _, p in parts[1:]:
        sel = sel | p
    return sel


def describe(parts: list[tuple[str, object]]) -> str:
    return " | ".join(label for label, _ in parts) if parts else "whole scene"


def _numbers(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def parse_numbers(text: str, n: int, what: str) -> tuple[float, ...]:
    """"x,y" or "x0,y0,x1,y1" from a flag -> n floats."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ObjaudioError(f"{what} must be {n} comma-separated numbers, got {text!r}") from None
    check(len(values) == n, f"{what} must be {n} comma-separated numbers, got {text!r}")
    return values


def read_jobs(source: Path, out_dir: Path, defaults: RunOptions, texts: tuple[str, ...] = ()) -> list[Job]:
    """The jobs of a batch: a JSONL file's lines, or one whole-scene (or `texts`) job per image of a folder."""
    from ..core.images import check_file

    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        check(len(images) > 0, f"folder {source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return [Job(f"{p.name}", p, out_dir / f"{p.stem}.wav", defaults, texts=texts) for p in images]
    check_file(source, "jobs", "a .jsonl file (one JSON object a line) or a folder of images")
    check(not texts, "--text applies to a folder of images; in a JSONL file give each line its own \"text\"")
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ObjaudioError(f"cannot read jobs file {source}: {exc}") from None
    jobs = [_job(line, source, n, out_dir, defaults) for n, line in enumerate(lines, 1) if line.strip()]
    check(len(jobs) > 0, f"jobs file {source} has no lines: give one JSON object a line, such as "
                         '{"image": "scene.png", "mask": "bird.png", "out": "bird.wav"}')
    return jobs


def _job(line: str, source: Path, n: int, out_dir: Path, defaults: RunOptions) -> Job:
    where = f"{source.name} line {n}"
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ObjaudioError(f"{where} is not a JSON object ({str(exc)[:80]}): write one object a line, such as "
                            '{"image": "scene.png", "mask": "bird.png", "out": "bird.wav"}') from None
    check(isinstance(data, dict), f"{where} must be a JSON object such as {{\"image\": \"scene.png\"}}")
    unknown = sorted(set(data) - set(LINE_FIELDS))
    check(not unknown, f"{where}: unknown field(s) {', '.join(unknown)}; a line takes {', '.join(LINE_FIELDS)}")
    check(isinstance(data.get("image"), str), f"{where}: \"image\" (a path, relative to {source.name}'s folder) "
                                              "is missing or not a string")
    here = source.parent
    image = here / data["image"]
    out = data.get("out", f"{image.stem}-{n}.wav")
    check(isinstance(out, str) and out and Path(out).name == out and out not in (".", ".."),
          f"{where}: \"out\" must be a file name (it is written into the --out folder), got {out!r}")
    check(Path(out).suffix.lower() == ".wav", f"{where}: \"out\" must end in .wav, got {out!r}")
    given = {k: data[k] for k in RUN_FIELDS if k in data}
    for k, v in given.items():
        if k in ("loop", "silence_gate"):
            check(isinstance(v, bool) or (k == "silence_gate" and v is None),
                  f"{where}: \"{k}\" must be true or false, got {v!r}")
            continue
        check(v is None or (isinstance(v, (int, float, str)) and not isinstance(v, bool)),
              f"{where}: \"{k}\" must be a number or a name, got {v!r}")
    options = dataclasses.replace(defaults, **given)
    return Job(where, image, out_dir / out, options,
               masks=tuple(here / m for m in _strings(data, "mask", where)),
               texts=_strings(data, "text", where),
               boxes=_coords(data, "box", 4, where), points=_coords(data, "point", 2, where),
               bg_points=_coords(data, "bg_point", 2, where))


def _strings(data: dict, key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, [])
    value = [value] if isinstance(value, str) else value
    check(isinstance(value, list) and all(isinstance(v, str) for v in value),
          f"{where}: \"{key}\" must be a string or a list of strings, got {value!r:.60}")
    return tuple(value)


def _finite(x) -> bool:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:                            # an int beyond float's range
        return False


def _coords(data: dict, key: str, n: int, where: str) -> tuple[tuple[float, ...], ...]:
    """[x, y] or [[x, y], ...] (n numbers each) -> a tuple of n-tuples of floats."""
    value = data.get(key, [])
    value = [value] if isinstance(value, list) and value and not isinstance(value[0], list) else value
    ok = isinstance(value, list) and all(isinstance(v, list) and len(v) == n and all(map(_finite, v)) for v in value)
    check(ok, f"{where}: \"{key}\" must be {n} numbers or a list of such, got {value!r:.60}")
    return tuple(tuple(float(x) for x in v) for v in value)
