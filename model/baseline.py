"""Normal statistics per location of the error and motion maps: what a camera starts from.

A score message carries the model's squared-error map and the optical-flow speed map on a grid of
cells (1/8 of the frame each side). The scored locations are the 2x2-cell windows of that grid, the
same 16x16-pixel patches as ``patch_max`` and ``motion_max``. For each map and location,
:class:`LocationStats` holds the mean and variance of ``log(value + eps)`` on normal frames, where
``eps`` is the map's median window value on normal footage (the quiet background): a location where
people walk and one where nobody ever goes get different baselines.

:class:`Calibration` is the model card's ``calibration.locations`` block (or a camera's own file from
``vigil calibrate``): the location statistics, the warm-up length, and the alert threshold, all
measured on normal footage only. It is plain JSON (lists of floats), validated on load.

Example:
    >>> rng = np.random.default_rng(0)
    >>> frames = [rng.lognormal(-6, 0.3, (4, 5)).astype(np.float32) for _ in range(50)]
    >>> stats = LocationStats.fit(frames)
    >>> stats.mean.shape, stats.scale > 0, round(float(np.median([stats.z(stats.logs(f)).max() for f in frames])), 6)
    ((3, 4), True, 0.0)
    >>> LocationStats.from_dict(stats.to_dict()).n
    50
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vigil.model.motion import window_means

MAPS = ("error", "motion")
"""The maps a score message may carry: the model's squared error, and the optical-flow speed."""
MIN_EPS = 1e-9
CALIBRATION_VERSION = 1


@dataclass
class LocationStats:
    """Normal statistics of ``log(window + eps)`` per 2x2-cell window of one map, and the map's z scale.

    A frame's z at a location is ``(log(window + eps) - baseline - gain - centre) / scale``, where
    ``baseline`` blends the location's own mean with the scene's (``weight``, see :meth:`baseline`),
    ``gain`` is the camera's current overall shift (the daily cycle, tracked by the scorer), and
    ``centre`` and ``scale`` are the median and standard deviation, over normal frames, of the frame's
    largest excess over its baselines: z = 1 is one standard deviation of a normal frame's most unusual
    patch, the same unit for every map.

    Attributes:
        mean: ``(h - 1, w - 1)`` mean of the log per location (learnt: follows slow drift).
        var: ``(h - 1, w - 1)`` its variance.
        eps: Added before the log.
        n: Frames the statistics come from.
        weight: 0 keeps each location's own mean, 1 gives every location the scene's.
        centre: Median of a normal frame's largest excess (log units).
        scale: Standard deviation of that excess (log units, floored).
        level: Median over frames of the median over locations of ``log - baseline``: the scene's overall
            level at calibration, against which a later shift (the daily cycle) is measured.
    """

    mean: np.ndarray
    var: np.ndarray
    eps: float
    n: int = 0
    weight: float = 1.0
    centre: float = 0.0
    scale: float = 1.0
    level: float = 0.0

    def logs(self, grid: np.ndarray) -> np.ndarray:
        """``log(window + eps)`` of a cell grid ``(h, w)``."""
        return np.log(np.maximum(window_means(np.asarray(grid, np.float64)), 0.0) + self.eps)

    def baseline(self) -> np.ndarray:
        """Each location's expected log level: its own mean pulled towards the scene's by ``weight``.

        A location seldom visited in the calibration footage (a corner where one person walked once) has
        a narrow, low mean of its own; the blend keeps such a place from alerting on every walker while a
        path and a lawn still differ.
        """
        return (1.0 - self.weight) * self.mean + self.weight * float(self.mean.mean())

    def z(self, logs: np.ndarray, gain: float = 0.0, base: np.ndarray | None = None) -> np.ndarray:
        """z per location of one frame's ``logs`` (``base``: :meth:`baseline`, when the caller has it already)."""
        return (logs - (self.baseline() if base is None else base) - gain - self.centre) / self.scale

    def overall(self, logs: np.ndarray, base: np.ndarray | None = None) -> float:
        """How far one frame's overall level lies from the calibrated one (log units; 0 = as calibrated)."""
        return float(np.median(logs - (self.baseline() if base is None else base))) - self.level

    @classmethod
    def fit(cls, grids: Iterable[np.ndarray], eps: float | None = None, weight: float = 1.0,
            min_scale: float = 0.05, scored: np.ndarray | None = None) -> LocationStats:
        """Statistics of normal cell grids (each ``(h, w)``).

        Args:
            grids: The normal frames' maps.
            eps: Added before the log; default: the median window value (the quiet background).
            weight: See :meth:`baseline`.
            min_scale: Floor of ``scale``.
            scored: ``(h - 1, w - 1)`` bool, the locations inside the camera's zones (all by default).
        """
        windows = np.stack([window_means(np.asarray(g, np.float64)) for g in grids])
        eps = max(float(np.median(windows)) if eps is None else float(eps), MIN_EPS)
        logs = np.log(np.maximum(windows, 0.0) + eps)
        stats = cls(logs.mean(axis=0), logs.var(axis=0), eps, len(windows), weight)
        excess = logs - stats.baseline()
        stats.level = float(np.median(np.median(excess, axis=(1, 2))))
        peaks = (excess if scored is None else np.where(scored, excess, -np.inf)).reshape(len(excess), -1).max(axis=1)
        stats.centre, stats.scale = float(np.median(peaks)), max(float(np.std(peaks)), min_scale)
        return stats

    @classmethod
    def empty(cls, shape: tuple[int, int], eps: float, weight: float, scale: float) -> LocationStats:
        """No statistics yet (a camera without calibration learns them online)."""
        h, w = shape
        return cls(np.zeros((h - 1, w - 1)), np.zeros((h - 1, w - 1)), max(eps, MIN_EPS), 0, weight, 0.0, scale)

    def learn(self, logs: np.ndarray, weight: float) -> None:
        """Exponentially weighted update of the per-location mean and variance with one frame's ``logs``."""
        delta = logs - self.mean
        self.mean = self.mean + weight * delta
        self.var = (1.0 - weight) * (self.var + weight * delta * delta)

    def to_dict(self, digits: int | None = None) -> dict[str, Any]:
        """JSON-ready dict; ``digits`` significant digits for the arrays (None: exact, for saved states)."""
        return {"shape": list(self.mean.shape), "eps": self.eps, "n": self.n, "weight": self.weight,
                "centre": self.centre, "scale": self.scale, "level": self.level,
                "mean": _round(self.mean, digits), "var": _round(self.var, digits)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LocationStats:
        """Inverse of :meth:`to_dict`, validated (shape, finite values, positive eps and scale)."""
        shape = tuple(int(v) for v in d["shape"])
        if len(shape) != 2 or not all(1 <= v <= 512 for v in shape):
            raise ValueError(f"location statistics need a 2-d shape within 512x512. Received: {shape}")
        mean, var = (np.asarray(d[k], np.float64).reshape(shape) for k in ("mean", "var"))
        scalars = {k: float(d[k]) for k in ("eps", "weight", "centre", "scale", "level")}
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var >= 0)
                and all(math.isfinite(v) for v in scalars.values()) and scalars["eps"] > 0
                and scalars["scale"] > 0 and 0 <= scalars["weight"] <= 1):
            raise ValueError("location statistics must be finite, with var >= 0, eps > 0, scale > 0, 0 <= weight <= 1")
        return cls(mean, var, n=int(d.get("n", 0)), **scalars)


def _round(a: np.ndarray, digits: int | None) -> list[list[float]]:
    if digits is None:
        return a.tolist()
    return [[float(f"{v:.{digits}g}") for v in row] for row in a]


@dataclass
class Calibration:
    """What a camera's scoring starts from, measured on normal footage of its scene.

    Attributes:
        grid: ``(h, w)`` cells of the maps.
        cell_px: Side of a cell in frame pixels (the model's heat-map stride).
        stats: :class:`LocationStats` per map name (:data:`MAPS`).
        threshold: Alert threshold in score units: the largest smoothed score on the normal footage plus
            a margin (see :mod:`vigil.model.alerting`).
        normal_max: The largest smoothed score on the normal footage.
        frames: Normal frames measured (after warm-up).
        source: Where the footage came from (clip names, a stream time range).
    """

    grid: tuple[int, int]
    cell_px: int
    stats: dict[str, LocationStats]
    threshold: float
    normal_max: float
    frames: int
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the model card's ``calibration.locations``)."""
        return {"version": CALIBRATION_VERSION, "grid": list(self.grid), "cell_px": self.cell_px,
                "threshold": round(self.threshold, 4), "normal_max": round(self.normal_max, 4),
                "frames": self.frames, "source": self.source, **self.extra,
                "stats": {k: v.to_dict(digits=6) for k, v in self.stats.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming what is wrong."""
        if int(d.get("version", 0)) != CALIBRATION_VERSION:
            raise ValueError(f"calibration version {d.get('version')} is not {CALIBRATION_VERSION}; "
                             "recalibrate with `vigil calibrate`")
        grid = (int(d["grid"][0]), int(d["grid"][1]))
        stats = {k: LocationStats.from_dict(v) for k, v in d["stats"].items() if k in MAPS}
        if "error" not in stats or any(s.mean.shape != (grid[0] - 1, grid[1] - 1) for s in stats.values()):
            raise ValueError(f"calibration statistics must include 'error' and match the grid {grid}")
        threshold = float(d["threshold"])
        if not math.isfinite(threshold):
            raise ValueError(f"calibration threshold must be finite. Received: {threshold}")
        known = {"version", "grid", "cell_px", "threshold", "normal_max", "frames", "source", "stats"}
        return cls(grid, int(d["cell_px"]), stats, threshold, float(d.get("normal_max", threshold)),
                   int(d.get("frames", 0)), str(d.get("source", "")), {k: v for k, v in d.items() if k not in known})
