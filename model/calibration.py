"""Turning per-frame error features into anomaly scores.

Two ways, labelled as such everywhere:

* **causal**: a frame's score depends only on that frame and earlier frames of its stream, plus
  statistics of the normal training data (held-out training clips). The first ``n_warmup`` frames
  of a stream (fresh state, the prediction is still poor) get the neutral score 0, i.e. the median
  of normal frames. The score is the feature standardised with the training statistics
  (``(x - median) / std``, sign flipped for PSNR), optionally averaged over the last ``smooth``
  frames (a trailing, causal window).
* **fused** (the headline's base): the sum of the log-standardised patch features (:data:`FUSED`:
  PredNet's ``patch_max`` and the optical-flow ``motion_max``, each ``(log(x + eps) - median) / std``
  with the statistics of the log on normal held-out training clips): a frame scores high when it is
  badly predicted, unusually fast, or both. Equal weights, fixed a priori.
* **per-clip min-max**: the usual literature protocol, which rescales each clip's scores to [0, 1]
  with the clip's own minimum and maximum after warm-up (uses future frames; for comparison only);
  warm-up frames get the clip's median.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vigil.model.features import FrameFeatures

FUSED_FEATURE = "fused"
"""Name of the fused score (beside the :class:`FrameFeatures` names in statistics and scores)."""
FUSED = FrameFeatures.names(scope="patch")
"""Features whose log z-scores are summed into ``fused``: the patch features (``patch_max``, ``motion_max``)."""
ANOMALY_SIGN = {**{f: FrameFeatures.info(f).anomaly_sign for f in FrameFeatures.names()}, FUSED_FEATURE: 1.0}
"""+1 where a higher value is more anomalous, -1 where a lower one is (PSNR), by score name."""
LOG_EPS = 1e-6


@dataclass
class FeatureStats:
    """Statistics of one feature on normal frames after warm-up.

    Attributes:
        median: Median (the neutral level).
        std: Standard deviation (at least a small epsilon).
        p99: 99th percentile.
        log_median: Median of ``log(x + LOG_EPS)`` (for the fused score; NaN on old cards).
        log_std: Standard deviation of ``log(x + LOG_EPS)``.
    """

    median: float
    std: float
    p99: float
    log_median: float = float("nan")
    log_std: float = float("nan")

    def to_dict(self) -> dict[str, float]:
        """Plain dict."""
        return asdict(self)


def warmup_length(mse_curves: list[np.ndarray], ratio: float = 1.5, settle_from: int = 10) -> int:
    """Frames after a fresh state until the error settles, from normal clips only.

    The steady level is the median MSE of frames ``t >= settle_from``; warm-up ends at the first
    ``t >= 1`` where the median over clips of ``mse[t]`` is within ``ratio`` times that level.

    Example:
        >>> curve = np.array([9.0, 4.0, 1.4, 1.0, 1.1] + [1.0] * 10)
        >>> warmup_length([curve, curve])
        2
    """
    steady = float(np.median(np.concatenate([c[settle_from:] for c in mse_curves])))
    length = min(len(c) for c in mse_curves)
    per_t = np.median(np.stack([c[:length] for c in mse_curves]), axis=0)
    for t in range(1, length):
        if per_t[t] <= ratio * steady:
            return t
    return length


def feature_stats(values: list[np.ndarray], n_warmup: int) -> FeatureStats:
    """Statistics of one feature over normal clips, skipping each clip's warm-up frames."""
    pooled = np.concatenate([v[n_warmup:] for v in values]).astype(np.float64)
    logs = _log(pooled)
    return FeatureStats(float(np.median(pooled)), float(max(np.std(pooled), 1e-12)),
                        float(np.percentile(pooled, 99)), float(np.median(logs)), float(max(np.std(logs), 1e-12)))


def fused_values(features: FrameFeatures, stats: dict[str, FeatureStats]) -> np.ndarray:
    """The fused feature of one stream: the sum over :data:`FUSED` of log z-scores.

    Example:
        >>> s = FeatureStats(median=1.0, std=1.0, p99=2.0, log_median=0.0, log_std=1.0)
        >>> z = np.zeros(2)
        >>> v = fused_values(FrameFeatures(mse=z, psnr=z, patch_max=np.array([1.0, np.e]), motion_max=np.ones(2)),
        ...                  {f: s for f in FUSED})
        >>> np.round(v, 3).tolist()
        [0.0, 1.0]
    """
    missing = [f for f in FUSED if f not in stats or not np.isfinite(stats[f].log_std)]
    if missing:
        raise ValueError(f"The calibration lacks log statistics of {missing}; recalibrate the model with "
                         "`vigil calibrate --model DIR`.")
    return sum((_log(getattr(features, f)) - stats[f].log_median) / stats[f].log_std for f in FUSED)


def _log(values: np.ndarray) -> np.ndarray:
    """``log(x + LOG_EPS)`` in float64, negative values (numerical noise) clipped to 0: the scale of ``fused``."""
    return np.log(np.maximum(np.asarray(values, np.float64), 0.0) + LOG_EPS)


def causal_scores(values: np.ndarray, feature: str, stats: FeatureStats, n_warmup: int,
                  smooth: int = 1) -> np.ndarray:
    """Causal anomaly score of one stream (higher = more anomalous).

    Example:
        >>> s = FeatureStats(median=1.0, std=0.5, p99=2.0)
        >>> causal_scores(np.array([50.0, 1.5, 2.0]), "mse", s, n_warmup=1).tolist()
        [0.0, 1.0, 2.0]
    """
    z = ANOMALY_SIGN[feature] * (np.asarray(values, np.float64) - stats.median) / stats.std
    z[:n_warmup] = 0.0
    if smooth > 1:
        csum = np.concatenate([[0.0], np.cumsum(z)])
        idx = np.arange(1, len(z) + 1)
        lo = np.maximum(idx - smooth, 0)
        z = (csum[idx] - csum[lo]) / (idx - lo)
    return z


def per_clip_minmax(values: np.ndarray, feature: str, n_warmup: int = 0) -> np.ndarray:
    """Per-clip min-max normalised anomaly score in [0, 1] (uses the whole clip; not causal).

    Min and max are taken after the warm-up frames, which get the clip's median score (neutral).

    Example:
        >>> per_clip_minmax(np.array([30.0, 20.0, 25.0]), "psnr").tolist()
        [0.0, 1.0, 0.5]
    """
    v = ANOMALY_SIGN[feature] * np.asarray(values, np.float64)
    rest = v[n_warmup:] if len(v) > n_warmup else v
    span = rest.max() - rest.min()
    out = (v - rest.min()) / span if span > 0 else np.zeros_like(v)
    out[:n_warmup] = float(np.median(out[n_warmup:])) if len(v) > n_warmup else 0.0
    return out
