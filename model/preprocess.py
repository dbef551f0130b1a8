"""Decoded frame -> model input: the one conversion of ingest, training, ``vigil evaluate`` and ``vigil score``.

:func:`to_model_input` takes a PyAV ``VideoFrame`` (what ingest and :func:`vigil.model.data.read_video`
decode) or a uint8 array, and returns ``(H, W, C)`` uint8: gray (``C = 1``, BT.601 luma) or BGR
(``C = 3``; OpenCV's order and the ``bgr8`` frame message's), full range. Ingest and training call it
with the same frames, so a model sees the same pixels live as in training.

Resizing uses OpenCV; ``area`` (pixel-area averaging) is the default because it anti-aliases when
shrinking, which is what a camera-to-model resize does (see docs/ingest.md for the measurement). A
large shrink first goes through OpenCV's fast integer-factor area path (e.g. 1280x720 -> 640x360 ->
180x120): 3x faster than one general area resize, within 0.2 gray levels RMS of it.

Gray frames are taken straight from the decoder's luma plane, without swscale (which costs more than
the decode itself at 720p); limited-range video (16-235) is stretched to full range after the resize,
as swscale's gray conversion would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}
"""OpenCV resize flags by the names camera configs use."""

# 8-bit formats whose first plane is the luma (Y) at full resolution
_LUMA_FORMATS = frozenset({"gray", "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
                           "yuv440p", "yuvj440p", "yuv411p", "yuv410p", "nv12", "nv21"})  # fmt: skip
_FULL_RANGE_FORMATS = frozenset({"gray", "yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p"})
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)
_AVCOL_RANGE_JPEG = 2


@dataclass(frozen=True)
class InputSpec:
    """The model input a frame is converted to.

    Attributes:
        height: Rows of the model input.
        width: Columns of the model input.
        channels: 1 = gray (BT.601 luma), 3 = BGR.
        interpolation: Resize method, a key of :data:`INTERPOLATIONS`.
    """

    height: int
    width: int
    channels: int = 1
    interpolation: str = "area"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={self.channels}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}. "
                             f"Received: interpolation={self.interpolation!r}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"height and width must be >= 1. Received: {self.height}x{self.width}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)``."""
        return self.height, self.width, self.channels


def to_model_input(frame: Any, spec: InputSpec) -> np.ndarray:
    """Convert a decoded frame to the model's input.

    Args:
        frame: A PyAV ``VideoFrame`` (any pixel format), or a uint8 array: ``(H0, W0)`` or
            ``(H0, W0, 1)`` gray, ``(H0, W0, 3)`` BGR.
        spec: Size, channels and interpolation of the model input.

    Returns:
        ``(spec.height, spec.width, spec.channels)`` uint8, C-contiguous, full range; gray or BGR.

    Example:
        >>> to_model_input(np.zeros((240, 360, 3), np.uint8), InputSpec(120, 180, 1)).shape
        (120, 180, 1)
    """
    if isinstance(frame, np.ndarray):
        image = _convert_channels(_check_array(frame), spec.channels)
    elif spec.channels == 1 and (y := _luma(frame)) is not None:
        plane, full = y
        small = resize(plane, spec.width, spec.height, spec.interpolation)
        return _hwc(small if full else cv2.LUT(small, _LIMITED_TO_FULL), spec)
    else:
        image = frame.to_ndarray(format="gray" if spec.channels == 1 else "bgr24")
    return _hwc(resize(image, spec.width, spec.height, spec.interpolation), spec)


def resize(image: np.ndarray, width: int, height: int, interpolation: str = "area") -> np.ndarray:
    """Resize to (height, width[, C]) with the named OpenCV interpolation; no copy if already that size."""
    h, w = image.shape[:2]
    if h == height and w == width:
        return image
    if interpolation == "area":
        k = _fast_area_factor(w, h, width, height)
        if k > 1:
            image = cv2.resize(image, (w // k, h // k), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[interpolation])


def _fast_area_factor(w: int, h: int, width: int, height: int) -> int:
    """Largest integer k dividing w and h with the k-times smaller image still >= 2x the target."""
    for k in range(min(w // (2 * width), h // (2 * height)), 1, -1):
        if w % k == 0 and h % k == 0:
            return k
    return 1


def _luma(frame: Any) -> tuple[np.ndarray, bool] | None:
    """The frame's Y plane as a (H, W) uint8 view and whether it is full range; None for other formats."""
    name = frame.format.name
    if name not in _LUMA_FORMATS:
        return None
    plane = frame.planes[0]
    y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
    full = name in _FULL_RANGE_FORMATS or getattr(frame, "color_range", 0) == _AVCOL_RANGE_JPEG
    return y, full


def _check_array(image: np.ndarray) -> np.ndarray:
    """``image`` as ``(H, W)`` gray or ``(H, W, 3)`` BGR uint8; raises on anything else."""
    if image.dtype != np.uint8:
        raise ValueError(f"frame must be uint8. Received: dtype={image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"frame must be (H, W), (H, W, 1) or (H, W, 3). Received: shape={image.shape}")
    return image


def _convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Gray ``(H, W)`` or BGR ``(H, W, 3)`` to ``channels`` (BT.601 luma for gray)."""
    if image.ndim == 3 and channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 2 and channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


def _hwc(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The resized image as a C-contiguous ``(height, width, channels)`` array."""
    return np.ascontiguousarray(image.reshape(spec.shape))
