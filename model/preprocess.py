"""Frame preprocessing shared by ingest, training, ``vigil score`` and ``vigil evaluate``."""

from __future__ import annotations

import cv2
import numpy as np


def to_model_input(frame: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """Convert a decoded frame to the model's input: resized (``cv2.INTER_AREA``), gray or colour, uint8.

    Args:
        frame: ``(H0, W0)`` gray or ``(H0, W0, 3)`` RGB (or ``(H0, W0, 1)``) uint8 frame.
        height: Model input height.
        width: Model input width.
        channels: 1 for gray (ITU-R BT.601 luma of RGB input), 3 for RGB.

    Returns:
        ``(height, width, channels)`` uint8 array.

    Example:
        >>> to_model_input(np.zeros((240, 360, 3), np.uint8), 120, 180, 1).shape
        (120, 180, 1)
    """
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8. Received: dtype={frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
        raise ValueError(f"frame must be (H, W), (H, W, 1) or (H, W, 3). Received: shape={frame.shape}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3. Received: channels={channels}")
    if frame.ndim == 3 and channels == 1:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    elif frame.ndim == 2 and channels == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[:2] != (height, width):
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame.reshape(height, width, channels))
