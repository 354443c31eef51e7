"""SynthScenes: a procedural audio-visual world, deterministic from a seed.

A scene is an image with 0-3 sounding objects and 0-2 silent distractors, one mask per object
(its visible part), one audio stem per sounding object, their mixture and a caption that names
the sounding objects only. Everything comes from `np.random.default_rng(seed)`: the same seed
always gives the same arrays, and the train / val / test splits use disjoint seed ranges.

Classes and their sounds (each has one shape and one dominant colour):

    car    red body, black wheels      engine hum: harmonics of 45-75 Hz, amplitude-modulated
    bird   yellow body and wing        fast chirps sweeping within 1.8-6 kHz
    dog    brown body, head, legs      barks: harmonic bursts, f0 300-550 Hz, formant 600-900 Hz
    bell   magenta bell, dark clapper  strikes of inharmonic partials with exponential decay
    water  blue pond with light waves  band-filtered noise swells plus rising bubble blips
    fire   orange flame, yellow core   sparse broadband crackles over a low rumble
    crowd  pink people (heads, bodies) babble: several voices of formant-filtered syllables
    siren  cyan dome on a dark base    tone sweeping within 600-1500 Hz (wail, yelp or hi-lo)
    tree, house, rock                  silent distractors: drawn, never heard

Stems are ordered as their objects are in `Scene.classes`; `Scene.sounding_indices` maps one
to the other. With two or more sounding objects the sounds either overlap for the whole clip
("while" captions) or follow one another in caption order ("and then" captions).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import torch
from torch.utils.data import Dataset

from objaudio_rt.core.errors import command

SOUNDING_CLASSES = ("car", "bird", "dog", "bell", "water", "fire", "crowd", "siren")
DISTRACTOR_CLASSES = ("tree", "house", "rock")
ALL_CLASSES = SOUNDING_CLASSES + DISTRACTOR_CLASSES

SPLIT_OFFSETS = {"train": 0, "val": 10_000_000, "test": 20_000_000}
SPLIT_SIZE = 10_000_000

# Caption vocabulary: per class, (noun phrase, gerund, finite verb) synonyms.
PHRASES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "car": (("a car engine", "humming", "hums"), ("a car", "rumbling", "rumbles")),
    "bird": (("a bird", "chirping", "chirps"), ("a bird", "singing", "sings")),
    "dog": (("a dog", "barking", "barks"),),
    "bell": (("a bell", "ringing", "rings"), ("a bell", "chiming", "chimes")),
    "water": (("water", "flowing", "flows"), ("a stream", "splashing", "splashes")),
    "fire": (("a fire", "crackling", "crackles"), ("a fire", "burning", "burns")),
    "crowd": (("a crowd", "chattering", "chatters"), ("people", "talking", "talk")),
    "siren": (("a siren", "wailing", "wails"), ("a siren", "blaring", "blares")),
}
# Words that identify each class in a caption (used by tests and evaluation).
CAPTION_KEYWORDS: dict[str, tuple[str, ...]] = {
    "car": ("car",), "bird": ("bird",), "dog": ("dog",), "bell": ("bell",),
    "water": ("water", "stream"), "fire": ("fire",), "crowd": ("crowd", "people"), "siren": ("siren",),
}
SILENCE_CAPTION = "silence"

# Dominant colour of each class (RGB); a scene jitters it by a few levels.
CLASS_COLOURS = {
    "car": (205, 30, 30), "bird": (245, 215, 35), "dog": (130, 80, 35), "bell": (200, 50, 200),
    "water": (35, 85, 220), "fire": (250, 125, 15), "crowd": (245, 145, 170), "siren": (25, 215, 225),
    "tree": (40, 140, 50), "house": (215, 200, 160), "rock": (115, 115, 120),
}


@dataclass
class Scene:
    image: np.ndarray          # (H, W, 3) uint8
    masks: np.ndarray          # (N, H, W) bool, the visible part of each object
    classes: list[str]         # N class names
    sounding: list[bool]       # N flags
    stems: np.ndarray          # (N_sounding, T) float32, in object order
    mixture: np.ndarray        # (T,) float32, sum of the stems, |x| <= 0.9
    caption: str               # names the sounding objects only; "silence" if none
    seed: int
    layout: str = "overlap"    # "overlap" (sounds together) or "sequence" (one after another)
    sample_rate: int = 16000

    @property
    def sounding_indices(self) -> list[int]:
        """Object index of each stem."""
        return [i for i, s in enumerate(self.sounding) if s]


def split_seeds(split: str, n: int, start: int = 0) -> list[int]:
    """Seeds `start .. start+n-1` of a split; train, val and test ranges never overlap."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}: use one of {sorted(SPLIT_OFFSETS)}")
    if start < 0 or start + n > SPLIT_SIZE:
        raise ValueError(f"a split holds seeds 0..{SPLIT_SIZE - 1}; asked for {start}..{start + n - 1}")
    offset = SPLIT_OFFSETS[split]
    return list(range(offset + start, offset + start + n))


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------

@dataclass
class _Shape:
    """An object drawn at a place: its full (unoccluded) mask and its coloured parts."""
    mask: np.ndarray                                   # (H, W) bool
    parts: list[tuple[np.ndarray, np.ndarray]]         # (mask (H, W) bool, rgb (3,))
    centre: tuple[float, float]                        # (x, y) pixels
    scale: float                                       # object size, pixels


def _ellipse(u, v, u0, v0, a, b):
    return ((u - u0) / a) ** 2 + ((v - v0) / b) ** 2 <= 1.0


def _rect(u, v, u0, v0, u1, v1):
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


def _polygon(u, v, points):
    """Convex polygon with vertices in clockwise order on screen (v grows downwards)."""
    inside = np.ones(u.shape, dtype=bool)
    for (ua, va), (ub, vb) in zip(points, points[1:] + points[:1]):
        inside &= (ub - ua) * (v - va) - (vb - va) * (u - ua) >= 0
    return inside


def _jitter(rng, rgb, amount=18):
    return np.clip(np.asarray(rgb, dtype=np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _draw_parts(cls: str, u: np.ndarray, v: np.ndarray, rng) -> list[tuple[np.ndarray, np.ndarray]]:
    """Coloured parts of one object in local coordinates u, v (the object spans about [-0.5, 0.5])."""
    main = _jitter(rng, CLASS_COLOURS[cls])
    dark = _jitter(rng, (30, 30, 30), 10)
    if cls == "car":
        return [(_rect(u, v, -0.5, -0.1, 0.5, 0.22) | _rect(u, v, -0.25, -0.35, 0.22, -0.1), main),
                (_rect(u, v, -0.18, -0.3, 0.15, -0.14), _jitter(rng, (170, 210, 235), 10)),
                (_ellipse(u, v, -0.28, 0.25, 0.13, 0.13) | _ellipse(u, v, 0.28, 0.25, 0.13, 0.13), dark)]
    if cls == "bird":
        return [(_ellipse(u, v, -0.05, 0.05, 0.32, 0.2) | _ellipse(u, v, 0.27, -0.12, 0.15, 0.15)
                 | _polygon(u, v, [(-0.5, -0.1), (-0.3, 0.0), (-0.5, 0.15)]), main),
                (_polygon(u, v, [(-0.2, -0.05), (0.1, 0.0), (-0.15, -0.4)]), main * 0.8),
                (_polygon(u, v, [(0.4, -0.17), (0.52, -0.1), (0.4, -0.05)]), _jitter(rng, (240, 120, 20), 10))]
    if cls == "dog":
        legs = (_rect(u, v, -0.3, 0.1, -0.2, 0.45) | _rect(u, v, 0.15, 0.1, 0.25, 0.45))
        return [(_ellipse(u, v, -0.05, 0.05, 0.35, 0.17) | _ellipse(u, v, 0.32, -0.18, 0.16, 0.15) | legs
                 | _polygon(u, v, [(-0.5, -0.25), (-0.35, 0.0), (-0.45, 0.02)]), main),
                (_ellipse(u, v, 0.25, -0.18, 0.06, 0.12), main * 0.6)]
    if cls == "bell":
        return [(_polygon(u, v, [(-0.2, -0.32), (0.2, -0.32), (0.42, 0.3), (-0.42, 0.3)])
                 | _ellipse(u, v, 0.0, -0.32, 0.2, 0.13), main),
                (_ellipse(u, v, 0.0, -0.47, 0.06, 0.05), dark),
                (_ellipse(u, v, 0.0, 0.38, 0.09, 0.09), dark)]
    if cls == "water":
        pond = _ellipse(u, v, 0.0, 0.0, 0.5, 0.3)
        waves = pond & (np.sin(u * 28 + 6 * v + rng.uniform(0, 6.3)) > 0.75) & (np.abs(v) < 0.2)
        return [(pond, main), (waves, _jitter(rng, (150, 200, 250), 10))]
    if cls == "fire":
        flame = _polygon(u, v, [(0.0, -0.5), (0.28, 0.12), (-0.28, 0.12)]) | _ellipse(u, v, 0, 0.12, 0.28, 0.24)
        core = _polygon(u, v, [(0.0, -0.15), (0.14, 0.2), (-0.14, 0.2)]) | _ellipse(u, v, 0, 0.2, 0.14, 0.12)
        logs = _rect(u, v, -0.4, 0.36, 0.4, 0.46)
        return [(flame, main), (core, _jitter(rng, (255, 230, 60), 8)), (logs, _jitter(rng, (90, 50, 20), 10))]
    if cls == "crowd":
        xs = np.linspace(-0.34, 0.34, 4) + rng.uniform(-0.04, 0.04, 4)
        heads = np.zeros(u.shape, dtype=bool)
        bodies = np.zeros(u.shape, dtype=bool)
        for i, x in enumerate(xs):
            dy = 0.08 * (i % 2)
            heads |= _ellipse(u, v, x, -0.2 + dy, 0.09, 0.09)
            bodies |= _ellipse(u, v, x, 0.2 + dy, 0.12, 0.24)
        return [(bodies, main), (heads, _jitter(rng, (235, 190, 160), 10))]
    if cls == "siren":
        dome = _ellipse(u, v, 0.0, 0.1, 0.3, 0.45) & (v <= 0.1)
        return [(dome, main), (_rect(u, v, -0.4, 0.1, 0.4, 0.35), _jitter(rng, (60, 60, 70), 8)),
                (_ellipse(u, v, -0.1, -0.12, 0.05, 0.1), _jitter(rng, (235, 250, 250), 5))]
    if cls == "tree":
        return [(_rect(u, v, -0.07, 0.05, 0.07, 0.5), _jitter(rng, (95, 60, 30), 10)),
                (_ellipse(u, v, 0.0, -0.15, 0.35, 0.35), main)]
    if cls == "house":
        return [(_rect(u, v, -0.38, -0.05, 0.38, 0.45), main),
                (_polygon(u, v, [(-0.5, -0.05), (0.0, -0.5), (0.5, -0.05)]), _jitter(rng, (90, 70, 70), 10)),
                (_rect(u, v, -0.08, 0.15, 0.08, 0.45), dark)]
    if cls == "rock":
        angle = np.arctan2(v, u)
        radius = 0.42 + 0.06 * np.sin(3 * angle + rng.uniform(0, 6.3)) + 0.04 * np.sin(5 * angle + rng.uniform(0, 6.3))
        return [((u / 1.1) ** 2 + (v / 0.8) ** 2 <= radius ** 2, main)]
    raise ValueError(f"unknown class {cls!r}")


def _background(rng, size: int) -> np.ndarray:
    """Muted sky-over-ground gradient with a jittered horizon and faint texture. (H, W, 3) float32."""
    blue, grey = rng.uniform([70, 130, 200], [120, 180, 240]), rng.uniform(120, 200)
    sky_top = blue + (grey - blue) * rng.uniform(0, 0.6)                   # clear to overcast
    sky_low = np.clip(sky_top + rng.uniform(10, 50), 0, 255)
    ground = rng.choice([[105, 120, 85], [125, 110, 90], [110, 110, 105], [140, 130, 105]]) + rng.uniform(-15, 15, 3)
    horizon = rng.uniform(0.35, 0.7) * size
    y = np.arange(size, dtype=np.float32)[:, None]
    sky_t = np.clip(y / horizon, 0, 1)
    sky = sky_top * (1 - sky_t) + sky_low * sky_t                          # (H, 3)
    ground_rows = ground * (0.85 + 0.25 * np.clip((y - horizon) / (size - horizon), 0, 1))
    rows = np.where(y < horizon, sky, ground_rows)                          # (H, 3)
    image = np.repeat(rows[:, None, :], size, axis=1)
    return (image + rng.normal(0, 4, (size, size, 1))).astype(np.float32)


def _place_objects(rng, classes: list[str], size: int) -> tuple[list[int], list[_Shape]]:
    """Rejection-sample positions and scales so each object keeps >= 75 % of its area visible.

    Returns the indices of the classes that could be placed and their shapes, in drawing order.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    placed: list[int] = []
    shapes: list[_Shape] = []
    for index, cls in enumerate(classes):
        for attempt in range(40):
            scale = rng.uniform(24, 48 - 16 * attempt / 40)                  # later tries: smaller objects
            cx, cy = rng.uniform(scale / 2, size - scale / 2, 2)
            if any(np.hypot(cx - s.centre[0], cy - s.centre[1]) < 0.4 * (scale + s.scale) for s in shapes):
                continue                                                     # keep objects apart
            u, v = (xx - cx) / scale, (yy - cy) / scale
            parts = _draw_parts(cls, u, v, rng)
            mask = np.logical_or.reduce([m for m, _ in parts])
            area = mask.sum()
            covered = [(s.mask & mask).sum() for s in shapes]
            visible = [(s.mask & ~mask & ~_later_union(shapes, j)).sum() for j, s in enumerate(shapes)]
            if area >= 40 and all(c < 0.15 * area for c in covered) and all(
                    vis >= 0.75 * s.mask.sum() for vis, s in zip(visible, shapes)):
                placed.append(index)
                shapes.append(_Shape(mask, parts, (cx, cy), scale))
                break
    return placed, shapes


def _later_union(shapes: list[_Shape], j: int) -> np.ndarray:
    later = [s.mask for s in shapes[j + 1:]]
    return np.logical_or.reduce(later) if later else np.zeros_like(shapes[j].mask)


def _render(rng, shapes: list[_Shape], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Paint the shapes in order over a background. Returns image (H, W, 3) uint8, masks (N, H, W)."""
    image = _background(rng, size)
    for shape in shapes:
        for part_mask, rgb in shape.parts:
            image[part_mask] = rgb
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    masks = np.zeros((len(shapes), size, size), dtype=bool)
    for j, shape in enumerate(shapes):
        masks[j] = shape.mask & ~_later_union(shapes, j)
    return image, masks


# --------------------------------------------------------------------------------------------
# Sounds
# --------------------------------------------------------------------------------------------

def _events(rng, n: int, sr: int, dur: tuple[float, float], gap: tuple[float, float],
            first: tuple[float, float] = (0.0, 0.3)) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping events covering the clip: onsets and durations in samples, (E,) each."""
    mean_len = (sum(dur) + sum(gap)) / 2
    count = int(n / sr / mean_len) + 8
    durations = rng.uniform(*dur, count) * sr
    gaps = rng.uniform(*gap, count) * sr
    onsets = rng.uniform(*first) * sr + np.concatenate([[0.0], np.cumsum(durations + gaps)[:-1]])
    keep = onsets < n
    return onsets[keep], durations[keep].astype(np.float32)


def _event_time(n: int, onsets: np.ndarray, durations: np.ndarray):
    """Per sample: index of the current event, time since its onset (samples), whether it is on."""
    samples = np.arange(n)
    index = np.searchsorted(onsets.astype(np.int64), samples, side="right") - 1   # (T,)
    safe = np.maximum(index, 0)
    tau = (samples - onsets.astype(np.int64)[safe]).astype(np.float32)
    active = (index >= 0) & (tau < durations[safe])
    return safe, tau, active


def _phase(freq: np.ndarray, sr: int) -> np.ndarray:
    """Running phase (radians, float32, wrapped to [0, 2 pi)) of an instantaneous frequency track in Hz."""
    cycles = np.cumsum(np.asarray(freq, dtype=np.float32) / np.float32(sr))        # float32 is exact enough
    return np.float32(2 * np.pi) * (cycles - np.floor(cycles))


def _band_noise(rng, n: int, sr: int, gain_of_hz) -> np.ndarray:
    """White noise shaped in the frequency domain by `gain_of_hz(freqs) -> gains`. (T,) float32."""
    spectrum = scipy.fft.rfft(rng.standard_normal(n).astype(np.float32))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    return scipy.fft.irfft(spectrum * gain_of_hz(freqs).astype(np.float32), n).astype(np.float32)


def _car(rng, n, sr, t):
    f0 = rng.uniform(45, 75) * (1 + 0.04 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3)))
    phase = _phase(f0, sr)
    k = np.arange(1, 9, dtype=np.float32)[:, None]                         # (8, 1) harmonics
    amps = k[:, 0] ** -0.8 * rng.uniform(0.5, 1.0, 8)
    tone = amps @ np.sin(k * phase[None, :] + rng.uniform(0, 6.3, (8, 1)).astype(np.float32))
    am = 1 + rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * rng.uniform(4, 12) * t)
    rumble = _band_noise(rng, n, sr, lambda f: (f < 250) * 1.0)
    return tone * am + 0.3 * rumble / (rumble.std() + 1e-8) * amps.sum() / 4


def _bird(rng, n, sr, t):
    onsets, durs = _events(rng, n, sr, dur=(0.03, 0.09), gap=(0.02, 0.08))
    phrase = rng.random(len(onsets)) < 0.8                                 # some chirps skipped: phrasing
    start = rng.uniform(2500, 5000, len(onsets))
    end = np.clip(start + rng.uniform(-2000, 1500, len(onsets)), 1800, 6000)
    index, tau, active = _event_time(n, onsets, durs)
    x = tau / durs[index]
    freq = np.where(active, start[index] + (end[index] - start[index]) * x, 3000.0)
    env = np.where(active & phrase[index], np.sin(np.pi * np.clip(x, 0, 1)) ** 2, 0.0).astype(np.float32)
    phase = _phase(freq, sr)
    return env * (np.sin(phase) + 0.2 * np.sin(2 * phase))


def _dog(rng, n, sr, t):
    onsets, durs = _events(rng, n, sr, dur=(0.12, 0.25), gap=(0.1, 0.6), first=(0.0, 0.5))
    f_start = rng.uniform(300, 550, len(onsets)).astype(np.float32)
    index, tau, active = _event_time(n, onsets, durs)
    x = np.clip(tau / durs[index], 0, 1)
    freq = f_start[index] * (1 - 0.3 * x)
    phase = _phase(freq, sr)
    formant = rng.uniform(600, 900)
    k = np.arange(1, 9, dtype=np.float32)[:, None]                         # (8, 1) harmonics
    # Harmonic amplitudes follow a formant peak at the bark's mean pitch.
    amps = np.exp(-((k[:, 0] * f_start.mean() - formant) / 500.0) ** 2) + 0.1
    tone = amps @ np.sin(k * phase[None, :])
    tau_s = tau / np.float32(sr)
    taper = np.minimum(1, (1 - x) / 0.2)                                   # no click at the bark's end
    env = np.where(active, (1 - np.exp(-tau_s / 0.008)) * np.exp(-tau_s / (0.4 * durs[index] / sr)) * taper, 0)
    breath = _band_noise(rng, n, sr, lambda f: np.exp(-((f - formant) / 600.0) ** 2))
    return env.astype(np.float32) * (tone + 0.5 * amps.sum() * breath / (breath.std() + 1e-8) * 0.15)


BELL_RATIOS = np.array([0.5, 1.0, 1.183, 1.506, 2.0, 2.514, 2.662, 3.011], dtype=np.float32)


def _bell(rng, n, sr, t):
    base = rng.uniform(350, 900)
    freqs = (base * BELL_RATIOS * rng.uniform(0.99, 1.01, len(BELL_RATIOS))).astype(np.float32)  # (K,)
    amps = rng.uniform(0.3, 1.0, len(freqs)).astype(np.float32)
    decay = (rng.uniform(0.5, 1.2) * (base / freqs) ** 0.7).astype(np.float32)              # (K,) seconds
    strikes = np.cumsum(np.concatenate([[rng.uniform(0.0, 0.4)], rng.uniform(0.6, 1.2, 2)]))
    strikes = strikes[strikes < t[-1] - 0.3][: rng.integers(1, 4)]
    env = np.zeros((len(freqs), n), dtype=np.float32)                                         # (K, T)
    for s, level in zip(strikes, rng.uniform(0.6, 1.0, len(strikes))):
        start = int(s * sr)
        env[:, start:] += np.float32(level) * np.exp(-(t[None, : n - start]) / decay[:, None])
    partials = np.sin(np.float32(2 * np.pi) * freqs[:, None] * t[None, :])                    # (K, T)
    return amps @ (env * partials)


def _water(rng, n, sr, t):
    centre, width = rng.uniform(400, 1500), rng.uniform(1.0, 2.0)
    noise = _band_noise(rng, n, sr, lambda f: np.exp(-0.5 * (np.log2(np.maximum(f, 1) / centre) / (width / 2)) ** 2))
    swell = 0.25 + 0.75 * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t + rng.uniform(0, 6.3))) ** 1.5
    onsets, durs = _events(rng, n, sr, dur=(0.01, 0.03), gap=(0.08, 0.3))
    f_start = rng.uniform(400, 1200, len(onsets))
    index, tau, active = _event_time(n, onsets, durs)
    x = np.clip(tau / durs[index], 0, 1)
    blips = np.where(active, np.sin(np.pi * x), 0.0) * np.sin(_phase(f_start[index] * (1 + 0.6 * x), sr))
    return (swell * noise / (noise.std() + 1e-8) + 0.6 * blips).astype(np.float32)


def _fire(rng, n, sr, t):
    count = rng.poisson(rng.uniform(15, 40) * n / sr)
    impulses = np.zeros(n, dtype=np.float32)
    impulses[rng.integers(0, n, count)] = rng.lognormal(0, 0.8, count) * rng.choice([-1, 1], count)
    kernel = np.diff(rng.standard_normal(49) * np.exp(-np.arange(49) / 12.0)).astype(np.float32)
    crackle = np.convolve(impulses, kernel)[:n]
    rumble = _band_noise(rng, n, sr, lambda f: (f < 300) / (1 + f / 100))
    return crackle + 0.4 * rumble / (rumble.std() + 1e-8) * crackle.std()


VOWEL_FORMANTS = np.array([[730, 1090], [530, 1840], [270, 2290], [570, 840]], dtype=np.float32)  # a e i o


def _crowd(rng, n, sr, t):
    # Babble lies below 4 kHz: voices are made at half rate and upsampled by the formant filter.
    m, half_sr = (n + 1) // 2, sr // 2
    t_half = t[::2]
    sources = np.zeros((len(VOWEL_FORMANTS), m), dtype=np.float32)                  # (V, T/2), one per vowel
    samples = np.arange(m)
    for _ in range(rng.integers(3, 7)):                                              # voices
        f0 = rng.uniform(100, 240) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(1, 4) * t_half + rng.uniform(0, 6.3)))
        saw = _phase(f0, half_sr) / np.float32(np.pi) - 1                            # sawtooth in [-1, 1]
        onsets, durs = _events(rng, m, half_sr, dur=(0.1, 0.25), gap=(0.02, 0.25), first=(0.0, 0.4))
        vowel = rng.integers(0, len(VOWEL_FORMANTS), len(onsets))
        index, tau, active = _event_time(m, onsets, durs)
        env = np.where(active, np.sin(np.float32(np.pi) * np.minimum(tau / durs[index], 1)), 0).astype(np.float32)
        sources[vowel[index], samples] += np.float32(rng.uniform(0.4, 1.0)) * saw * env
    freqs = np.fft.rfftfreq(m, 1.0 / half_sr).astype(np.float32)
    f1, f2 = VOWEL_FORMANTS[:, :1], VOWEL_FORMANTS[:, 1:]                            # (V, 1) each
    response = np.exp(-((freqs - f1) / 120) ** 2) + 0.7 * np.exp(-((freqs - f2) / 150) ** 2)  # (V, F)
    spectrum = np.zeros(n // 2 + 1, dtype=np.complex64)                              # zero-padded: 2x upsampling
    spectrum[:len(freqs)] = (scipy.fft.rfft(sources, axis=1) * response).sum(axis=0)
    return scipy.fft.irfft(spectrum, n).astype(np.float32)


def _siren(rng, n, sr, t):
    low, high = rng.uniform(600, 800), rng.uniform(1100, 1500)
    mode = rng.integers(0, 3)
    if mode == 0:      # wail: slow sine sweep
        sweep = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.25, 0.6) * t + rng.uniform(0, 6.3))
    elif mode == 1:    # yelp: fast sine sweep
        sweep = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2.5, 4.0) * t + rng.uniform(0, 6.3))
    else:              # hi-lo: two alternating tones
        sweep = (np.sin(2 * np.pi * rng.uniform(0.8, 1.5) * t + rng.uniform(0, 6.3)) > 0).astype(np.float32)
    phase = _phase(low + (high - low) * sweep, sr)
    return np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)


_SYNTHS = {"car": _car, "bird": _bird, "dog": _dog, "bell": _bell,
           "water": _water, "fire": _fire, "crowd": _crowd, "siren": _siren}


def synth_sound(cls: str, rng: np.random.Generator, n_samples: int, sample_rate: int = 16000) -> np.ndarray:
    """One sound of a sounding class, RMS-normalised to 0.1. Returns (n_samples,) float32."""
    if cls not in _SYNTHS:
        raise ValueError(f"{cls!r} is not a sounding class: use one of {SOUNDING_CLASSES}")
    t = np.arange(n_samples, dtype=np.float32) / np.float32(sample_rate)
    wave = np.asarray(_SYNTHS[cls](rng, n_samples, sample_rate, t), dtype=np.float32)
    fade = min(n_samples // 2, int(0.01 * sample_rate))                     # 10 ms fades: no clicks
    ramp = np.linspace(0, 1, fade, dtype=np.float32)
    wave[:fade] *= ramp
    wave[n_samples - fade:] *= ramp[::-1]
    return wave * np.float32(0.1 / (np.sqrt(np.mean(wave ** 2)) + 1e-8))


def _window(n: int, sr: int, start: float, end: float, fade: float = 0.05) -> np.ndarray:
    """1 inside [start, end) seconds, 0 outside, with linear fades. (T,) float32."""
    t = np.arange(n, dtype=np.float32) / sr
    return np.clip(np.minimum((t - start) / fade + 1, (end - t) / fade), 0, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Captions and scenes
# --------------------------------------------------------------------------------------------

def make_caption(rng, classes: list[str], layout: str) -> str:
    """Caption naming `classes` in order; "and then" phrasing for a sequence, "while"/"and" otherwise."""
    if not classes:
        return SILENCE_CAPTION
    words = [PHRASES[c][rng.integers(len(PHRASES[c]))] for c in classes]   # (noun, gerund, finite)
    gerund = [f"{noun} {ger}" for noun, ger, _ in words]
    finite = [f"{noun} {fin}" for noun, _, fin in words]
    if len(classes) == 1:
        return gerund[0]
    if layout == "sequence":
        joiner = (" and then ", " followed by ")[rng.integers(2)]
        return joiner.join(gerund) if len(classes) == 2 else f"{gerund[0]}, then {gerund[1]}, then {gerund[2]}"
    if len(classes) == 2:
        templates = (f"{gerund[0]} while {finite[1]}", f"{gerund[0]} and {gerund[1]}")
    else:
        templates = (f"{gerund[0]} while {finite[1]} and {finite[2]}", f"{gerund[0]}, {gerund[1]} and {gerund[2]}")
    return templates[rng.integers(2)]


def generate_scene(seed: int, image_size: int = 112, seconds: float = 2.56, sample_rate: int = 16000) -> Scene:
    """The scene of `seed`: same seed, same arrays."""
    rng = np.random.default_rng(seed)
    n_samples = int(round(seconds * sample_rate))
    n_sounding = int(rng.choice(4, p=[0.05, 0.3, 0.4, 0.25]))
    n_distract = int(rng.choice(3, p=[0.3, 0.45, 0.25]))
    wanted = list(rng.choice(SOUNDING_CLASSES, n_sounding, replace=False)) + \
        list(rng.choice(DISTRACTOR_CLASSES, n_distract, replace=False))
    wanted = [str(c) for c in rng.permutation(wanted)]
    placed, shapes = _place_objects(rng, wanted, image_size)
    classes = [wanted[i] for i in placed]
    sounding = [c in SOUNDING_CLASSES for c in classes]
    image, masks = _render(rng, shapes, image_size)

    sounding_classes = [c for c in classes if c in SOUNDING_CLASSES]
    order = [int(i) for i in rng.permutation(len(sounding_classes))]       # caption / temporal order
    layout = "sequence" if len(order) >= 2 and rng.random() < 0.35 else "overlap"
    if layout == "sequence":    # slot s of the caption order sounds within [bounds[s], bounds[s+1])
        cuts = [rng.uniform(0.35, 0.65)] if len(order) == 2 else [rng.uniform(0.25, 0.4), rng.uniform(0.6, 0.75)]
        bounds = [-1.0] + [c * seconds for c in cuts] + [seconds + 1.0]
    stems = np.zeros((len(sounding_classes), n_samples), dtype=np.float32)
    for stem_index, cls in enumerate(sounding_classes):
        wave = synth_sound(cls, rng, n_samples, sample_rate)
        if layout == "sequence":
            slot = order.index(stem_index)
            wave = wave * _window(n_samples, sample_rate, bounds[slot], bounds[slot + 1])
        stems[stem_index] = wave * np.float32(10 ** (rng.uniform(-6, 0) / 20))
    mixture = stems.sum(axis=0)
    peak = float(np.abs(mixture).max()) if len(stems) else 0.0
    if peak > 0.9:
        stems *= np.float32(0.9 / peak)
        mixture = stems.sum(axis=0)
    caption = make_caption(rng, [sounding_classes[i] for i in order], layout)
    return Scene(image=image, masks=masks, classes=classes, sounding=sounding, stems=stems,
                 mixture=mixture.astype(np.float32), caption=caption, seed=seed, layout=layout,
                 sample_rate=sample_rate)


# --------------------------------------------------------------------------------------------
# Torch dataset and shards
# --------------------------------------------------------------------------------------------

class SynthScenesDataset(Dataset):
    """Scenes `0..n-1` of a split as tensors; scenes are made on the fly (no files needed).

    Item: image (3, H, W) float32 in [0, 1], masks (N, H, W) bool, classes (N,) int64 indices into
    ALL_CLASSES, sounding (N,) bool, stems (N_sounding, T) float32, mixture (T,) float32,
    caption str, seed int. N varies: batch with `collate_scenes`.
    """

    def __init__(self, split: str, n: int, image_size: int = 112, seconds: float = 2.56, sample_rate: int = 16000):
        self.seeds = split_seeds(split, n)
        self.image_size, self.seconds, self.sample_rate = image_size, seconds, sample_rate

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int) -> dict:
        scene = generate_scene(self.seeds[i], self.image_size, self.seconds, self.sample_rate)
        return {"image": torch.from_numpy(scene.image).permute(2, 0, 1).float() / 255.0,
                "masks": torch.from_numpy(scene.masks),
                "classes": torch.tensor([ALL_CLASSES.index(c) for c in scene.classes], dtype=torch.int64),
                "sounding": torch.tensor(scene.sounding, dtype=torch.bool),
                "stems": torch.from_numpy(scene.stems),
                "mixture": torch.from_numpy(scene.mixture),
                "caption": scene.caption, "seed": scene.seed}


def collate_scenes(items: list[dict]) -> dict:
    """Stack the fixed-size fields (image, mixture, seed); keep the per-object ones as lists."""
    return {"image": torch.stack([it["image"] for it in items]),
            "mixture": torch.stack([it["mixture"] for it in items]),
            "seed": torch.tensor([it["seed"] for it in items]),
            **{k: [it[k] for it in items] for k in ("masks", "classes", "sounding", "stems", "caption")}}


def write_shard(path: str | Path, scenes: list[Scene]) -> Path:
    """Scenes to one .npz. Per-object arrays are concatenated; `objects` / `stem_counts` split them."""
    path = Path(path)
    np.savez(path,
             seeds=np.array([s.seed for s in scenes], dtype=np.int64),
             images=np.stack([s.image for s in scenes]),                            # (S, H, W, 3) uint8
             mixtures=np.stack([s.mixture for s in scenes]),                        # (S, T) float32
             objects=np.array([len(s.classes) for s in scenes], dtype=np.int64),   # (S,)
             masks=np.concatenate([s.masks for s in scenes]),                       # (sum N, H, W) bool
             classes=np.array([ALL_CLASSES.index(c) for s in scenes for c in s.classes], dtype=np.int64),
             sounding=np.array([f for s in scenes for f in s.sounding], dtype=bool),
             stem_counts=np.array([len(s.stems) for s in scenes], dtype=np.int64),  # (S,)
             stems=np.concatenate([s.stems for s in scenes]),                       # (sum N_sounding, T)
             captions=np.array([s.caption for s in scenes]),
             layouts=np.array([s.layout for s in scenes]),
             sample_rate=np.array(scenes[0].sample_rate if scenes else 16000))
    return path


def read_shard(path: str | Path) -> list[Scene]:
    """Scenes written by `write_shard`."""
    with np.load(path) as z:
        obj_end, stem_end = np.cumsum(z["objects"]), np.cumsum(z["stem_counts"])
        scenes = []
        for i, seed in enumerate(z["seeds"]):
            o0, o1 = obj_end[i] - z["objects"][i], obj_end[i]
            s0, s1 = stem_end[i] - z["stem_counts"][i], stem_end[i]
            scenes.append(Scene(image=z["images"][i], masks=z["masks"][o0:o1],
                                classes=[ALL_CLASSES[c] for c in z["classes"][o0:o1]],
                                sounding=[bool(f) for f in z["sounding"][o0:o1]], stems=z["stems"][s0:s1],
                                mixture=z["mixtures"][i], caption=str(z["captions"][i]), seed=int(seed),
                                layout=str(z["layouts"][i]), sample_rate=int(z["sample_rate"])))
    return scenes


@command("python -m training.synthscenes")
def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description="Write SynthScenes shards (.npz).")
    parser.add_argument("--split", choices=sorted(SPLIT_OFFSETS), default="train")
    parser.add_argument("--n", type=int, required=True, help="number of scenes")
    parser.add_argument("--start", type=int, default=0, help="first scene index within the split")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--shard-size", type=int, default=500)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = split_seeds(args.split, args.n, args.start)
    with tqdm(total=len(seeds), unit="scene") as bar:
        for first in range(0, len(seeds), args.shard_size):
            batch = []
            for seed in seeds[first:first + args.shard_size]:
                batch.append(generate_scene(seed))
                bar.update()
            write_shard(args.out / f"{args.split}-{args.start + first:08d}.npz", batch)


if __name__ == "__main__":
    sys.exit(main())
