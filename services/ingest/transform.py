"""Decoded frame -> model input (size, channels) -> frame message.

Resizing uses OpenCV; ``area`` (pixel-area averaging) is the default because it anti-aliases when
shrinking, which is what a camera-to-model resize does (see docs/ingest.md for the measurement).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from vigil.services.ingest.config import CameraConfig
from vigil.shared.schemas import FrameMessage

INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def frame_to_array(frame: Any, channels: int) -> np.ndarray:
    """A PyAV VideoFrame as uint8 (H, W) gray or (H, W, 3) BGR, full range."""
    return frame.to_ndarray(format="gray" if channels == 1 else "bgr24")


def resize(image: np.ndarray, width: int, height: int, interpolation: str = "area") -> np.ndarray:
    """Resize to (height, width[, C]) with the named OpenCV interpolation; no copy if already that size."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    return cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[interpolation])


def to_model_input(image: np.ndarray, cam: CameraConfig) -> np.ndarray:
    """Resize a decoded gray or BGR frame to the camera's configured model input."""
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
