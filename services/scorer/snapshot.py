"""Alert snapshots: the error heat map colour-mapped to a JPEG, overlaid on the frame when one is given.

The scorer only sees score messages (features + a small heat map), not the frame, so by default the
snapshot is the heat map alone; :func:`render_snapshot` takes an optional frame for the overlay.
"""

from __future__ import annotations

import numpy as np


def render_snapshot(
    heatmap: np.ndarray, frame: np.ndarray | None = None, size: tuple[int, int] = (320, 240), alpha: float = 0.5,
    quality: int = 85, box: list[float] | tuple[float, ...] | None = None,
) -> bytes:  # fmt: skip
    """Render a JPEG of a heat map (float, any range), optionally blended over a frame.

    Args:
        heatmap: (h, w) float error map.
        frame: Optional (H, W) or (H, W, 3) uint8 frame; the heat map is resized onto it.
        size: (width, height) of the output when there is no frame.
        alpha: Weight of the heat map over the frame.
        quality: JPEG quality.
        box: ``(x0, y0, x1, y1)`` in fractions of the frame, drawn as a white rectangle (where the alert is).

    Returns:
        JPEG bytes.

    Example:
        >>> jpeg = render_snapshot(np.eye(8, dtype=np.float32))
        >>> jpeg[:2] == b"\\xff\\xd8"
        True
    """
    import cv2

    if heatmap.ndim != 2 or heatmap.size == 0:
        raise ValueError(f"heatmap must be a non-empty (h, w) array. Received: shape={heatmap.shape}")
    top = float(np.max(heatmap))
    norm = np.zeros(heatmap.shape, np.uint8) if top <= 0 else np.clip(heatmap / top * 255, 0, 255).astype(np.uint8)
    if frame is not None:
        base = frame if frame.ndim == 3 and frame.shape[2] == 3 else cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
        size = (base.shape[1], base.shape[0])
    coloured = cv2.applyColorMap(cv2.resize(norm, size, interpolation=cv2.INTER_NEAREST), cv2.COLORMAP_JET)
    image = coloured if frame is None else cv2.addWeighted(coloured, alpha, base, 1 - alpha, 0)
    if box is not None:
        w, h = size
        x0, y0, x1, y1 = (int(round(v * s)) for v, s in zip(box, (w, h, w, h), strict=True))
        cv2.rectangle(image, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), (255, 255, 255), 2)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding of the snapshot failed")
    return buf.tobytes()
