"""Decoded frame -> model input (size, channels) -> frame message.

Resizing uses OpenCV; ``area`` (pixel-area averaging) is the default because it anti-aliases when
shrinking, which is what a camera-to-model resize does (see docs/ingest.md for the measurement). A
large shrink first goes through OpenCV's fast integer-factor area path (e.g. 1280x720 -> 640x360 ->
180x120): 3x faster than one general area resize, within 0.2 gray levels RMS of it.

Gray frames are taken straight from the decoder's luma plane, without swscale (which costs more than
the decode itself at 720p); limited-range video (16-235) is stretched to full range after the resize,
as swscale's gray conversion would.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from vigil.shared.cameras import CameraConfig
from vigil.shared.schemas import FrameMessage

INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


# 8-bit formats whose first plane is the luma (Y) at full resolution
_LUMA_FORMATS = frozenset({"gray", "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
                           "yuv440p", "yuvj440p", "yuv411p", "yuv410p", "nv12", "nv21"})  # fmt: skip
_FULL_RANGE_FORMATS = frozenset({"gray", "yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p"})
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)
_AVCOL_RANGE_JPEG = 2


def luma(frame: Any) -> tuple[np.ndarray, bool] | None:
    """The frame's Y plane as a (H, W) uint8 view and whether it is full range; None for other formats."""
    name = frame.format.name
    if name not in _LUMA_FORMATS:
        return None
    plane = frame.planes[0]
    y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
    full = name in _FULL_RANGE_FORMATS or getattr(frame, "color_range", 0) == _AVCOL_RANGE_JPEG
    return y, full


def frame_to_model_input(frame: Any, cam: CameraConfig) -> np.ndarray:
    """A PyAV VideoFrame as the camera's model input: (H, W) gray or (H, W, 3) BGR uint8, full range."""
    if cam.channels == 1 and (y := luma(frame)) is not None:
        plane, full = y
        small = resize(plane, cam.width, cam.height, cam.interpolation)
        return small if full else cv2.LUT(small, _LIMITED_TO_FULL)
    image = frame.to_ndarray(format="gray" if cam.channels == 1 else "bgr24")
    return resize(image, cam.width, cam.height, cam.interpolation)


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


def to_model_input(image: np.ndarray, cam: CameraConfig) -> np.ndarray:
    """Resize a decoded gray or BGR array to the camera's configured model input."""
    if image.ndim == 3 and cam.channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 2 and cam.channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return resize(image, cam.width, cam.height, cam.interpolation)


def build_message(
    image: np.ndarray, cam: CameraConfig, *, seq: int, pts: float, capture_ns: int, session: int
) -> FrameMessage:
    """Encode a model-sized frame as the camera's configured encoding."""
    return FrameMessage.from_pixels(
        cam.id, seq=seq, pts=pts, capture_ns=capture_ns, image=image, encoding=cam.encoding,
        jpeg_quality=cam.jpeg_quality, session=session,
    )  # fmt: skip
