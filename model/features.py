"""Per-frame error features of a prediction, with ``keras.ops`` (run inside the compiled step)."""

from __future__ import annotations

from typing import Any

from keras import ops

from vigil.model.config import FeatureConfig

FEATURE_NAMES = ("mse", "psnr", "patch_max", "motion_max")
"""Per-frame features of a streaming step; ``motion_max`` comes from :mod:`vigil.model.motion`."""


def squared_error_map(prediction: Any, frame: Any) -> Any:
    """Squared error averaged over channels: ``(B, H, W, C) -> (B, H, W, 1)``."""
    return ops.mean(ops.square(prediction - frame), axis=-1, keepdims=True)


def error_features(error_map: Any, config: FeatureConfig, pixel_max: float = 1.0) -> dict[str, Any]:
    """Frame features from a squared-error map ``(B, H, W, 1)``.

    Returns:
        ``mse`` (frame mean), ``psnr`` (dB, w.r.t. ``pixel_max``), ``patch_max`` (largest mean
        squared error over ``patch_size`` patches at ``patch_stride``), each ``(B,)``, and
        ``heatmap``: ``(B, H // s, W // s)`` mean squared error over ``s = heatmap_stride`` cells.
    """
    mse = ops.mean(error_map, axis=(1, 2, 3))
    psnr = 10.0 * ops.log10(pixel_max**2 / ops.maximum(mse, 1e-10))
    patches = ops.average_pool(error_map, config.patch_size, config.patch_stride, padding="valid")
    s = config.heatmap_stride
    heatmap = ops.average_pool(error_map, s, s, padding="valid")
    return {
        "mse": mse,
        "psnr": psnr,
        "patch_max": ops.max(patches, axis=(1, 2, 3)),
        "heatmap": ops.squeeze(heatmap, axis=-1),
    }
