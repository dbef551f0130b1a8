"""Pictures of the evidence: the real frame with the error map where it is hot and the alert's box.

Unlike the scorer's heat-map snapshot (:func:`vigil.services.scorer.snapshot.render_snapshot`), which
blends the colour map over the whole picture, the error map here is drawn only where it is above
``floor`` of its top, with an opacity that grows with the error: the rest of the frame keeps its real
pixels, so an operator judges the scene itself.

Example:
    >>> import numpy as np
    >>> frame = np.full((8, 8, 1), 100, np.uint8)
    >>> heat = np.zeros((2, 2), np.float32); heat[0, 0] = 1.0
    >>> out = overlay(frame, heat, None, alpha=0.6, floor=0.3)
    >>> out.shape, bool((out[6:, 6:] == 100).all()), bool((out[0, 0] != 100).any())
    ((8, 8, 3), True, True)
"""

from __future__ import annotations

import numpy as np

BOX_COLOUR = (0, 0, 255)
"""BGR red: the alert's box."""


def to_bgr(pixels: np.ndarray) -> np.ndarray:
    """A (H, W, 3) uint8 BGR copy of a (H, W), (H, W, 1) or (H, W, 3) frame."""
    import cv2

    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return pixels.copy()
    return cv2.cvtColor(np.ascontiguousarray(pixels.reshape(pixels.shape[:2])), cv2.COLOR_GRAY2BGR)


def draw_box(image: np.ndarray, box: tuple[float, float, float, float] | None) -> np.ndarray:
    """Draw ``box`` (fractions ``x0, y0, x1, y1``, clipped to the frame) on ``image`` in place; returns it."""
    import cv2

    if box is None:
        return image
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in box)
    p0 = (int(round(x0 * w)), int(round(y0 * h)))
    p1 = (max(p0[0], int(round(x1 * w)) - 1), max(p0[1], int(round(y1 * h)) - 1))
    cv2.rectangle(image, p0, p1, BOX_COLOUR, max(1, min(h, w) // 120))
    return image


def overlay(
    pixels: np.ndarray, heatmap: np.ndarray | None, box: tuple[float, float, float, float] | None, *,
    alpha: float, floor: float,
) -> np.ndarray:  # fmt: skip
    """The frame in BGR with the hot part of the error map (colour map JET) and the box drawn on it.

    Args:
        pixels: (H, W, C) uint8 frame.
        heatmap: (h, w) float error map (any scale), resized onto the frame; None = no map.
        box: Where the alert is (fractions), or None.
        alpha: Opacity of the map at its top.
        floor: Fraction of the map's top below which it is fully transparent.
    """
    import cv2

    image = to_bgr(pixels)
    if heatmap is not None and heatmap.ndim == 2 and heatmap.size and (top := float(np.max(heatmap))) > 0:
        unit = np.clip(np.asarray(heatmap, np.float32) / top, 0.0, 1.0)
        unit = cv2.resize(unit, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
        weight = np.clip((unit - floor) / max(1e-6, 1.0 - floor), 0.0, 1.0) * alpha
        colour = cv2.applyColorMap((unit * 255).astype(np.uint8), cv2.COLORMAP_JET).astype(np.float32)
        mixed = image.astype(np.float32) * (1 - weight[..., None]) + colour * weight[..., None]
        image = np.where(weight[..., None] > 0, np.rint(mixed), image).astype(np.uint8)
    return draw_box(image, box)


def jpeg(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a uint8 image."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed. Received: shape={image.shape}")
    return buf.tobytes()
