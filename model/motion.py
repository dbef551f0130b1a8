"""Motion speed: dense optical flow between a camera's previous frame and this one.

PredNet's error measures how *surprising* a frame is, but a good predictor also extrapolates fast
motion that is smooth (a cyclist riding straight), so a bike can be as well predicted as a walker.
Speed itself is the missing cue: ``motion_max`` is the largest mean flow magnitude over local
patches (model pixels per frame), computed with OpenCV's Farneback dense optical flow with the
parameters of OpenCV's own example (not tuned on any data) except one refinement iteration instead of
three, which issue #18 chose for cost (2.1 ms per 120x180 frame on one core instead of 3.4; Ped2's live-path
AUC 0.9170 against 0.9156 with three, docs/model.md). It is causal (this frame and the one before) and is
computed next to the model step, on a thread of its own, on the CPU.

Example:
    >>> prev = np.zeros((32, 48, 1), np.uint8); prev[8:24, 8:20] = 200
    >>> frame = np.roll(prev, 3, axis=1)
    >>> speed = motion_max(prev[None], frame[None], patch_size=8, patch_stride=4)
    >>> bool(1.0 < speed[0] < 4.0)
    True
"""

from __future__ import annotations

import numpy as np

FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 1, "poly_n": 5, "poly_sigma": 1.2,
             "flags": 0}
"""Farneback parameters: those of OpenCV's dense optical flow tutorial, with 1 iteration per pyramid level
instead of 3 (37% less time; measured through Ped2's live scoring path, docs/model.md). A model's card
calibration holds statistics of this flow: `vigil calibrate` after changing them."""


def _gray(frame: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` uint8 -> ``(H, W)`` uint8 (channel mean)."""
    if frame.shape[-1] == 1:
        return np.ascontiguousarray(frame[..., 0])
    return frame.mean(axis=-1).astype(np.uint8)


def flow_magnitude(prev: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Per-pixel optical-flow speed ``(H, W)`` float32 (pixels per frame) between two uint8 frames."""
    import cv2

    flow = cv2.calcOpticalFlowFarneback(_gray(prev), _gray(frame), None, **FARNEBACK)
    return cv2.magnitude(flow[..., 0], flow[..., 1])


def patch_means(values: np.ndarray, patch_size: int, patch_stride: int) -> np.ndarray:
    """Means of ``values (H, W)`` over ``patch_size`` squares at ``patch_stride`` (valid positions only)."""
    k = patch_size
    c = np.pad(values.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return np.maximum(sums[::patch_stride, ::patch_stride] / (k * k), 0.0)


def cell_means(values: np.ndarray, cell: int) -> np.ndarray:
    """Means of ``values (H, W)`` over non-overlapping ``cell`` squares: ``(H // cell, W // cell)``,
    the grid of the error heat map (``average_pool`` with ``padding="valid"``)."""
    h, w = values.shape[0] // cell, values.shape[1] // cell
    return values[: h * cell, : w * cell].reshape(h, cell, w, cell).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def window_means(grid: np.ndarray) -> np.ndarray:
    """Means over 2x2 windows of grid cells at stride 1 (``(..., h, w) -> (..., h - 1, w - 1)``): with cells of
    ``patch_stride`` pixels, exactly the ``patch_size = 2 * patch_stride`` patches of ``patch_max``."""
    return (grid[..., :-1, :-1] + grid[..., 1:, :-1] + grid[..., :-1, 1:] + grid[..., 1:, 1:]) / 4.0


def motion_maps(prev_frames: np.ndarray, frames: np.ndarray, cell: int = 8) -> np.ndarray:
    """Optical-flow speed per ``cell`` square, one map per camera: ``(B, H // cell, W // cell)`` float32.

    Example:
        >>> prev = np.zeros((1, 32, 48, 1), np.uint8); prev[0, 8:24, 8:20] = 200
        >>> maps = motion_maps(prev, np.roll(prev, 3, axis=2), cell=8)
        >>> maps.shape, bool(window_means(maps).max() > 1.0)
        ((1, 4, 6), True)
    """
    if prev_frames.shape != frames.shape:
        raise ValueError(f"prev_frames and frames must have the same shape. Received: {prev_frames.shape} "
                         f"and {frames.shape}")
    return np.stack([cell_means(flow_magnitude(p, f), cell) for p, f in zip(prev_frames, frames, strict=True)])


def motion_max(prev_frames: np.ndarray, frames: np.ndarray, patch_size: int = 16,
               patch_stride: int = 8) -> np.ndarray:
    """Largest mean flow speed over patches, one value per camera.

    Args:
        prev_frames: ``(B, H, W, C)`` uint8, each camera's previous frame.
        frames: ``(B, H, W, C)`` uint8, the current frames.
        patch_size: Patch side (model pixels), as for ``patch_max``.
        patch_stride: Patch stride (model pixels).

    Returns:
        ``(B,)`` float32, pixels per frame at the model's input size.
    """
    if prev_frames.shape != frames.shape:
        raise ValueError(f"prev_frames and frames must have the same shape. Received: {prev_frames.shape} "
                         f"and {frames.shape}")
    return np.array([patch_means(flow_magnitude(p, f), patch_size, patch_stride).max()
                     for p, f in zip(prev_frames, frames, strict=True)], np.float32)
