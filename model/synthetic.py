"""Synthetic anomalies painted into normal clips: labelled data of our own making for choosing the scoring's
parameters, so that no choice is made on a benchmark's test labels.

:func:`inject` paints a textured object that crosses the frame along a straight line, faster than
people walk (a bike, a cart, a runner), into the frames of a normal clip, and returns the frames with
a per-frame label. Deterministic for a given seed. With ``enter=True`` the same object (same seed, same
path) instead slides in across the frame's edge, one column visible on its first painted frame, as real
objects enter a camera's view (docs/model.md, scoring step 13). :func:`cut_people` and :func:`inject_person`
make the hardest set: real people of the scene, cut out of its normal footage by background subtraction and
slid in at a skater's speed (:func:`walking_speed` measures the scene's own; step 14).

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
    mask = np.ones(texture.shape[:2], bool)
    label = _paint(out, texture, mask, (x0, y0), (direction * obj.speed, slope * obj.speed), (start, start + length),
                   enter)
    return out, label


def _paint(out: np.ndarray, texture: np.ndarray, mask: np.ndarray, origin: tuple[float, float],
           step: tuple[float, float], frames: tuple[int, int], enter: bool) -> np.ndarray:
    """Paint ``texture`` where ``mask`` into ``out`` (in place) along a straight path over ``frames`` (first, end
    exclusive), from ``origin`` (x, y of the top-left corner) by ``step`` pixels per frame; stop when it leaves
    the frame (partly visible pixels are painted when ``enter``; a mask's empty columns count as outside).
    Returns the ``(T,)`` int8 label: 1 where any masked pixel was painted."""
    t_total, h, w = out.shape[:3]
    th, tw = mask.shape
    label = np.zeros(t_total, np.int8)
    shown = False
    for i, t in enumerate(range(frames[0], min(frames[1], t_total))):
        x, y = int(round(origin[0] + step[0] * i)), int(round(origin[1] + step[1] * i))
        lo, hi = (max(0, -x), min(tw, w - x)) if enter else (0, tw if 0 <= x <= w - tw else 0)
        if lo >= hi or not 0 <= y <= h - th:
            break
        seen = mask[:, lo:hi]
        visible = bool(seen.any())
        if enter and not visible and shown:
            break  # it has left
        region = out[t, y:y + th, x + lo:x + hi]
        region[seen] = texture[:, lo:hi][seen]
        label[t], shown = visible, shown or visible
    return label


@dataclass(frozen=True)
class Sprite:
    """A person cut out of a normal clip: the pixels of its bounding box, the mask of the person in it, and the
    top row of the box in its source frame (painted on the same row, so its size fits the scene's perspective)."""

    pixels: np.ndarray
    mask: np.ndarray
    row: int


def cut_people(frames: np.ndarray, every: int = 10, threshold: int = 18, area: tuple[int, int] = (40, 200),
               upright: float = 1.3) -> list[Sprite]:
    """People cut out of a normal clip ``(T, H, W, C)`` uint8 by background subtraction: on every ``every``-th
    frame, the foreground (differs from the clip's median frame by more than ``threshold`` grey levels, opened
    2x2 and closed 5x3) is split into connected components; those of ``area`` pixels, standing
    (height at least ``upright`` times the width) and not touching the frame's border are kept.

    The defaults were set by looking at the foreground of Ped2's normal training clips at 120x180 (one person is
    40-200 pixels); docs/model.md, scoring step 14.
    """
    import cv2

    grey = frames[..., 0].astype(np.int16)
    background = np.median(grey, axis=0)
    h, w = grey.shape[1:]
    sprites = []
    for t in range(0, len(frames), every):
        n, comp, stats, _ = cv2.connectedComponentsWithStats(_foreground(grey[t], background, threshold))
        for j in range(1, n):
            x, y, bw, bh, a = (int(v) for v in stats[j])
            inside = x > 0 and y > 0 and x + bw < w and y + bh < h
            if inside and area[0] <= a <= area[1] and bh >= upright * bw:
                sprites.append(Sprite(frames[t, y:y + bh, x:x + bw].copy(), comp[y:y + bh, x:x + bw] == j, y))
    return sprites


def _foreground(grey: np.ndarray, background: np.ndarray, threshold: int) -> np.ndarray:
    """``(H, W)`` uint8 0/1: pixels that differ from ``background`` by more than ``threshold``, opened 2x2 and
    closed 5x3 (specks removed, a person's parts joined)."""
    import cv2

    fg = (np.abs(grey - background) > threshold).astype(np.uint8)
    square = np.ones((2, 2), np.uint8)  # an even kernel: erode and dilate with opposite anchors, or it shifts 1 px
    fg = cv2.dilate(cv2.erode(fg, square, anchor=(0, 0)), square, anchor=(1, 1))
    return cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((5, 3), np.uint8))


def walking_speed(clips: list[np.ndarray], every: int = 3, threshold: int = 18) -> float:
    """How fast people move in normal clips, in pixels per frame: the median optical-flow magnitude (Farneback)
    over the foreground pixels (:func:`cut_people`'s foreground, before its size and shape filters) of every
    ``every``-th frame of each clip."""
    import cv2

    speeds = []
    for frames in clips:
        grey = frames[..., 0]
        background = np.median(grey.astype(np.int16), axis=0)
        for t in range(1, len(grey), every):
            fg = _foreground(grey[t].astype(np.int16), background, threshold).astype(bool)
            flow = cv2.calcOpticalFlowFarneback(grey[t - 1], grey[t], None, 0.5, 3, 9, 3, 5, 1.1, 0)
            speeds.append(np.hypot(flow[..., 0], flow[..., 1])[fg])
    return float(np.median(np.concatenate(speeds))) if speeds else 0.0


def inject_person(frames: np.ndarray, sprite: Sprite, seed: int, start: int, length: int,
                  speed: float) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``sprite`` (a real person of the scene) into ``frames[start:start + length]``, sliding in across the
    left or right edge (chosen by ``seed``) at ``speed`` pixels per frame, on its own row, and out the same way.

    Returns:
        The painted frames (a copy) and the ``(T,)`` int8 label (1 where any of the person is painted).

    Example:
        >>> frames = np.full((30, 48, 64, 1), 128, np.uint8)
        >>> person = Sprite(np.zeros((8, 4, 1), np.uint8), np.ones((8, 4), bool), row=20)
        >>> out, label = inject_person(frames, person, seed=0, start=5, length=10, speed=1.0)
        >>> int(label.sum()), int((out[5] != 128).sum())  # one column of 8 pixels on the first frame
        (10, 8)
    """
    rng = np.random.default_rng(seed)
    out = frames.copy()
    width = out.shape[2]
    tw = sprite.mask.shape[1]
    x0, direction = (float(1 - tw), 1.0) if rng.random() < 0.5 else (float(width - 1), -1.0)
    label = _paint(out, sprite.pixels, sprite.mask, (x0, float(sprite.row)), (direction * speed, 0.0),
                   (start, start + length), enter=True)
    return out, label
