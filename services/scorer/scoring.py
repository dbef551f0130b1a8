"""Per-camera scoring math: normalise the prediction error against the camera's normal level, then threshold.

Pure and small (no I/O): one :class:`CameraScorer` per camera, picklable, with ``score`` / ``classify`` /
``update``. Built from river pieces:

* :class:`LevelNormaliser` (a river ``AnomalyDetector``) keeps an exponentially weighted mean and variance
  (``river.stats.EWMean`` / ``EWVar``) of the *log* of each error feature. The log turns the daily
  multiplicative swing of the error level (busy hours, quiet nights) into an additive shift that the
  EW mean follows within a few minutes. Each new frame becomes a z-score per feature; the frame's z is
  the largest of them (the local patch error catches a bike covering 2% of the frame, the frame error
  catches global changes).
* The anomaly score is ``Phi(z)``, the standard normal CDF of that z: the probability, under the
  camera's current Gaussian model of log error, that a *normal* frame has a lower error than this one.
  0.5 is a typical frame, 0.99 is about 2.3 sigma, 0.999 about 3.1 sigma, 1.0 means "far beyond".
* :class:`AdaptiveThreshold` (a river ``QuantileFilter``) tracks the ``q``-quantile of past scores and
  calls a frame anomalous when its score reaches it. It protects the normaliser: anomalous frames are
  not learned, so a long incident does not teach the camera that the incident is normal.

Example:
    >>> scorer = CameraScorer(ScoringParams(grace_frames=50, fading_factor=0.05, q=0.99))
    >>> import random
    >>> rng = random.Random(0)
    >>> for _ in range(400):
    ...     x = {"mse": 0.002 * rng.lognormvariate(0, 0.1), "patch_max": 0.02 * rng.lognormvariate(0, 0.1)}
    ...     scorer.update(x)
    >>> scorer.classify(scorer.score({"mse": 0.002, "patch_max": 0.02}))
    False
    >>> scorer.classify(scorer.score({"mse": 0.002, "patch_max": 0.08}))
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from river import anomaly, base, stats

from vigil.shared.schemas import ErrorFeatures
from vigil.shared.scorer_params import ScoringParams

UNSCORED = ("psnr",)
"""Fields of the score message's :class:`ErrorFeatures` left out of the score: PSNR is -10*log10(mse),
the same information as log mse."""
FEATURES = tuple(name for name in ErrorFeatures.model_fields if name not in UNSCORED)
"""Features combined into the score, the other :class:`ErrorFeatures` fields: PredNet's frame and patch
errors (``mse``, ``patch_max``) and the optical-flow speed (``motion_max``; a good predictor also predicts
a fast, smooth object well, so speed is its own cue). A state learned before a feature existed keeps
scoring with the features it has."""
OPTIONAL = tuple(name for name, info in ErrorFeatures.model_fields.items() if not info.is_required())
"""Features a worker may not measure (the :class:`ErrorFeatures` fields with a default: switched off, or a
worker that predates it): a value <= 0 means "not measured" and is neither learned nor scored; the feature
joins the score only once it has been learned from ``grace_period`` frames of its own, so turning it on
later cannot flood a camera with alerts."""


def normal_cdf(z: float) -> float:
    """Standard normal CDF, the map from a z-score to the anomaly score in [0, 1].

    Example:
        >>> round(normal_cdf(0.0), 3), round(normal_cdf(3.0), 5)
        (0.5, 0.99865)
    """
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


class LevelNormaliser(base.AnomalyDetector):
    """EW mean/variance of log error features; scores a frame by ``Phi(max z)``.

    Args:
        fading_factor: Weight of each new frame in the exponentially weighted statistics.
        grace_period: Frames to learn before scoring (scores are 0.0 until then).
        min_std: Floor of the standard deviation of the log error.
        eps: Added to every feature before the log.

    Example:
        >>> norm = LevelNormaliser(fading_factor=0.5, grace_period=2)
        >>> for v in (0.01, 0.02, 0.01):
        ...     norm.learn_one({"mse": v, "patch_max": v})
        >>> 0.5 < norm.score_one({"mse": 0.05, "patch_max": 0.05}) <= 1.0
        True
    """

    def __init__(
        self, fading_factor: float = 0.001, grace_period: int = 3000, min_std: float = 0.03, eps: float = 1e-6
    ) -> None:
        self.fading_factor = fading_factor
        self.grace_period = grace_period
        self.min_std = min_std
        self.eps = eps
        self.n = 0
        self._mean = {f: stats.EWMean(fading_factor) for f in FEATURES}
        self._var = {f: stats.EWVar(fading_factor) for f in FEATURES}

    @property
    def ready(self) -> bool:
        """True once ``grace_period`` frames were learned."""
        return self.n >= self.grace_period

    def _log(self, x: Mapping[str, float], f: str) -> float:
        return math.log(x.get(f, 0.0) + self.eps)  # a feature a sender does not have counts as 0

    def _measured(self, x: Mapping[str, float], f: str) -> bool:
        return f not in OPTIONAL or x.get(f, 0.0) > 0.0

    def _seen(self) -> dict[str, int]:
        """Frames learned per optional feature (created on first use: states pickled before it lack it)."""
        return self.__dict__.setdefault("seen", {})

    def learn_one(self, x: Mapping[str, float], **kwargs: object) -> None:
        """Learn one normal frame's features (does not modify ``x``)."""
        seen = self._seen()
        for f in self._mean:
            if not self._measured(x, f):
                continue
            v = self._log(x, f)
            self._mean[f].update(v)
            self._var[f].update(v)
            if f in OPTIONAL:
                seen[f] = seen.get(f, 0) + 1
        self.n += 1

    def level(self, f: str) -> tuple[float, float]:
        """Current (mean, std) of the log of feature ``f``, std floored at ``min_std``."""
        return self._mean[f].get(), max(math.sqrt(max(self._var[f].get(), 0.0)), self.min_std)

    def z_one(self, x: Mapping[str, float]) -> float | None:
        """Largest z-score over the features, or None during the grace period."""
        if not self.ready:
            return None
        zs = []
        seen = self._seen()
        for f in self._mean:
            if f in OPTIONAL and (not self._measured(x, f) or seen.get(f, 0) < self.grace_period):
                continue
            mean, std = self.level(f)
            zs.append((self._log(x, f) - mean) / std)
        return max(zs)

    def score_one(self, x: Mapping[str, float], **kwargs: object) -> float:
        """Anomaly score in [0, 1]: ``Phi(z)``; 0.0 during the grace period."""
        z = self.z_one(x)
        return 0.0 if z is None else normal_cdf(z)

    @classmethod
    def _unit_test_params(cls):  # noqa: ANN206 - river's convention
        yield {"fading_factor": 0.1, "grace_period": 5}


class AdaptiveThreshold(anomaly.QuantileFilter):
    """river ``QuantileFilter`` with a floor, that only learns scores once the detector is ready.

    Args:
        anomaly_detector: The wrapped detector (a :class:`LevelNormaliser`).
        q: Quantile of past scores used as the threshold.
        min_threshold: Floor of the threshold.
        protect_anomaly_detector: Skip the detector's learning on frames classified anomalous.
        max_protected: After this many protected frames in a row, learn again.
    """

    def __init__(
        self, anomaly_detector: LevelNormaliser, q: float = 0.995, min_threshold: float = 0.99,
        protect_anomaly_detector: bool = True, max_protected: int = 18_000,
    ) -> None:  # fmt: skip
        super().__init__(anomaly_detector, q=q, protect_anomaly_detector=protect_anomaly_detector)
        self.min_threshold = min_threshold
        self.max_protected = max_protected
        self.protected_run = 0

    @property
    def threshold(self) -> float | None:
        """Current threshold in score units, or None while the detector is in its grace period."""
        if not self.anomaly_detector.ready:
            return None
        q = self.quantile.get()
        return self.min_threshold if q is None else max(q, self.min_threshold)

    def classify(self, score: float) -> bool:
        """True when ``score`` reaches the threshold (never during the grace period)."""
        threshold = self.threshold
        return threshold is not None and score >= threshold

    def learn_one(
        self, x: Mapping[str, float], score: float | None = None, hold: bool = False, **kwargs: object
    ) -> None:  # type: ignore[override]
        """Learn one frame.

        Args:
            x: The frame's features (not modified).
            score: The frame's score when already computed.
            hold: The frame belongs to an ongoing event: learn nothing from it. Frame-level protection
                keeps anomalous frames out of the normal level; ``hold`` also keeps a whole incident out
                of the score quantile, which otherwise rises when anomalies make up ~1 - q of the frames.
                Isolated normal exceedances are still learned, so the quantile is not censored.
            **kwargs: Passed to the detector (river's wrapper convention).
        """
        ready = self.anomaly_detector.ready
        if score is None:
            score = self.score_one(x)
        protect = hold or (self.protect_anomaly_detector and self.classify(score))
        self.protected_run = self.protected_run + 1 if protect else 0
        if not protect or self.protected_run > self.max_protected:
            self.anomaly_detector.learn_one(x, **kwargs)
        if ready and (not hold or self.protected_run > self.max_protected):
            self.quantile.update(score)

    @classmethod
    def _unit_test_params(cls):  # noqa: ANN206 - river's convention
        yield {"anomaly_detector": LevelNormaliser(fading_factor=0.1, grace_period=5), "q": 0.9}


class CameraScorer:
    """One camera's scoring state: ``score`` a frame, ``classify`` the score, ``update`` the model.

    Args:
        params: Scoring parameters.

    Example:
        >>> s = CameraScorer(ScoringParams(grace_frames=3, fading_factor=0.9))
        >>> print(s.threshold)
        None
        >>> for _ in range(3):
        ...     s.update({"mse": 0.01, "patch_max": 0.1})
        >>> s.threshold
        0.99
    """

    def __init__(self, params: ScoringParams | None = None) -> None:
        self.params = params or ScoringParams()
        p = self.params
        self.filter = AdaptiveThreshold(
            LevelNormaliser(fading_factor=p.fading_factor, grace_period=p.grace_frames, min_std=p.min_std),
            q=p.q, min_threshold=p.min_threshold, protect_anomaly_detector=p.protect,
            max_protected=p.max_protected_frames,
        )  # fmt: skip

    @property
    def ready(self) -> bool:
        """True once the grace period is over."""
        return self.filter.anomaly_detector.ready

    @property
    def threshold(self) -> float | None:
        """Current threshold in score units (None during the grace period)."""
        return self.filter.threshold

    def z(self, x: Mapping[str, float]) -> float | None:
        """The frame's z-score against the camera's normal level (None during grace)."""
        return self.filter.anomaly_detector.z_one(x)

    def score(self, x: Mapping[str, float]) -> float:
        """Anomaly score of a frame in [0, 1] (0.0 during grace)."""
        return self.filter.score_one(x)

    def classify(self, score: float) -> bool:
        """True if ``score`` is anomalous for this camera now."""
        return self.filter.classify(score)

    def update(self, x: Mapping[str, float], score: float | None = None, hold: bool = False) -> None:
        """Learn from a frame: anomalous frames do not move the normal level, event frames (``hold``) nothing."""
        self.filter.learn_one(x, score, hold)
