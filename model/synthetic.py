"""Synthetic anomalies painted into normal clips: labelled data of our own making for choosing the scoring's
parameters, so that no choice is made on a benchmark's test labels.

:func:`inject` paints a textured object that crosses the frame along a straight line, faster than
people walk (a bike, a cart, a runner), into the frames of a normal clip, and returns the frames with
a per-frame label. Deterministic for a given seed. With ``enter=True`` the same object (same seed, same
path) instead slides in across the frame's edge, one column visible on its first painted frame, as real
objects enter a camera's view (docs/model.md, scoring step 13).

Example:
    >>> frames = np.full((30, 48, 64, 1), 128, np.uint8)
    >>> out, label = inject(frames, seed=0, start=5, length=10)
    >>> int(label.sum()), bool((out[5:15] != 128).any()), bool((out[:5] == 128).all())
    (10, True, True)
    >>> out, label = inject(frames, seed=0, start=5, length=10, enter=True)
    >>> int(label.sum()), int(((out[5] != 128).any(axis=(0, 2))).sum())  # one column on the first frame
    (10, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Intruder:
    """One painted object: size (pixels at the model's input size), speed (pixels per frame), brightness
    (blended half and half with a patch cut from the clip itself, so some objects barely stand out)."""

    height: int
    width: int
    speed: float
    level: int


def _intruder(rng: np.random.Generator, h: int, w: int) -> Intruder:
    scale = min(h, w) / 120.0
    return Intruder(int(rng.integers(6, 16) * scale) or 2, int(rng.integers(5, 12) * scale) or 2,
                    float(rng.uniform(1.2, 3.0) * scale), int(rng.integers(60, 200)))


def inject(frames: np.ndarray, seed: int, start: int, length: int,
           rows: np.ndarray | None = None, enter: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Paint one moving object into ``frames[start:start + length]`` (``(T, H, W, C)`` uint8).

    Args:
        frames: The normal clip.
        seed: Random seed (object, path, texture).
        start: First painted frame.
        length: Painted frames at most (fewer when the object leaves the frame).
        rows: Optional ``(H,)`` weights for the row the object starts on, e.g. how much people move on
            each row in normal footage: unusual objects then appear where people go (a bike on a path).
        enter: Start just outside the frame's edge and slide in (one column visible on the first painted
            frame, which is labelled), and leave the same way; False: appear whole at the edge.

    Returns:
        The painted frames (a copy) and the ``(T,)`` int8 label (1 where any of the object is painted).
    """
    rng = np.random.default_rng(seed)
    out = frames.copy()
    t_total, h, w = frames.shape[:3]
    obj = _intruder(rng, h, w)
    ty, tx = int(rng.integers(0, h - obj.height)), int(rng.integers(0, w - obj.width))
    own = frames[start, ty:ty + obj.height, tx:tx + obj.width].astype(np.float64)
    texture = np.clip(0.5 * own + 0.5 * obj.level + rng.normal(0, 12, own.shape), 0, 255).astype(np.uint8)
    if rows is None:
        y0 = rng.uniform(0.2 * h, 0.8 * h - obj.height)
    else:
        weights = np.asarray(rows, np.float64)[: h - obj.height] + 1e-12
        y0 = float(rng.choice(len(weights), p=weights / weights.sum()))
    x0, direction = (0.0, 1.0) if rng.random() < 0.5 else (float(w - obj.width), -1.0)
    if enter:
        x0 -= direction * (obj.width - 1)
    slope = rng.uniform(-0.3, 0.3)
    label = np.zeros(t_total, np.int8)
    for i, t in enumerate(range(start, min(start + length, t_total))):
        x = int(round(x0 + direction * obj.speed * i))
        y = int(round(y0 + slope * obj.speed * i))
        lo, hi = (max(0, -x), min(obj.width, w - x)) if enter else (0, obj.width if 0 <= x <= w - obj.width else 0)
        if lo >= hi or not 0 <= y <= h - obj.height:
            break
        out[t, y:y + obj.height, x + lo:x + hi] = texture[:, lo:hi]
        label[t] = 1
    return out, label
