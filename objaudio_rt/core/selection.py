"""What the user points at: a mask, points, a box, a phrase, the whole scene, or a union (`|`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ObjaudioError, check
from .options import MAX_TEXT


class Selection:
    def __or__(self, other: "Selection") -> "Union":
        if not isinstance(other, Selection):
            return NotImplemented
        return Union(self.parts() + other.parts())

    def parts(self) -> tuple["Selection", ...]:
        return (self,)


@dataclass(frozen=True, eq=False)
class Mask(Selection):
    """A mask at the image's size: path, PIL image, bool/uint8/float array or tensor."""
    mask: Any


@dataclass(frozen=True)
class Points(Selection):
    """Clicks as (x, y) pixel coordinates; labels 1 = object, 0 = background (default all 1).
    Resolved to a mask by Segment Anything."""
    coords: tuple[tuple[float, float], ...]
    labels: tuple[int, ...] | None = None

    def __post_init__(self):
        coords = tuple((float(x), float(y)) for x, y in self.coords)
        check(len(coords) > 0, "Points needs at least one (x, y) point")
        object.__setattr__(self, "coords", coords)
        if self.labels is not None:
            labels = tuple(int(v) for v in self.labels)
            check(len(labels) == len(coords), "Points: give one label per point")
            check(all(v in (0, 1) for v in labels), "Points labels must be 1 (object) or 0 (background)")
            check(any(v == 1 for v in labels), "Points needs at least one point labelled 1 (object)")
            object.__setattr__(self, "labels", labels)

    def check_inside(self, size_hw: tuple[int, int]) -> None:
        h, w = size_hw
        for x, y in self.coords:
            check(0 <= x < w and 0 <= y < h, f"point ({x:g}, {y:g}) is outside the {w}x{h} image")


@dataclass(frozen=True)
class Box(Selection):
    """A box (x0, y0, x1, y1) in pixels, resolved to a mask by Segment Anything."""
    box: tuple[float, float, float, float]

    def __post_init__(self):
        check(len(self.box) == 4, "Box needs four numbers: x0, y0, x1, y1")
        box = tuple(float(v) for v in self.box)
        check(box[2] > box[0] and box[3] > box[1], f"Box {box} is empty: need x1 > x0 and y1 > y0")
        object.__setattr__(self, "box", box)

    def check_inside(self, size_hw: tuple[int, int]) -> None:
        h, w = size_hw
        x0, y0, x1, y1 = self.box
        check(x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h,
              f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {w}x{h} image")


@dataclass(frozen=True)
class Text(Selection):
    """A phrase; selects through the model's learned text-image attention (the paper's Table 2, v)."""
    text: str

    def __post_init__(self):
        if not isinstance(self.text, str) or not self.text.strip():
            raise ObjaudioError("Text selection is empty: give a phrase such as 'a dog barking'")
        check(len(self.text) <= MAX_TEXT, f"Text selection is {len(self.text)} characters: at most {MAX_TEXT} are "
                                          "accepted; give a short phrase such as 'a dog barking'")


@dataclass(frozen=True)
class Whole(Selection):
    """The whole scene (holistic generation): a full-image mask."""


@dataclass(frozen=True)
class Union(Selection):
    items: tuple[Selection, ...]

    def parts(self) -> tuple[Selection, ...]:
        return self.items

