"""The scorer's parameters, the one definition of their defaults and bounds.

They are a contract of the cameras file (a camera's ``scorer:`` overrides, :mod:`vigil.shared.cameras`)
and of the scorer's settings (``VIGIL_SCORER_SCORING__<FIELD>``, ``VIGIL_SCORER_EVENTS__<FIELD>``), so they
live here, free of the scorer's heavy imports (river); the scorer's core uses them as plain frozen
dataclasses (:mod:`vigil.services.scorer.scoring`, :mod:`vigil.services.scorer.events` re-export them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field


@dataclass(frozen=True)
class ScoringParams:
    """Parameters of one camera's scorer (frame counts assume ~10 fps); the one definition of their defaults.

    Each field carries its bounds and description (``Annotated[..., Field(...)]``), which pydantic applies
    where the parameters are settings (``VIGIL_SCORER_SCORING__<FIELD>``, a camera's ``scorer:`` in the
    cameras file); constructed directly, only :meth:`__post_init__` checks them.

    Attributes:
        fading_factor: Weight of a new frame in the EW mean/variance (1/fading_factor frames ~ memory).
        grace_frames: Frames learned before the camera scores at all (normaliser warm-up); at least
            2 / fading_factor (river's EW statistics start from their first value).
        q: Quantile of past scores used as the threshold.
        min_threshold: Floor of the threshold (in score units), whatever the quantile says.
        min_std: Floor of the log-error standard deviation (relative noise below this is not trusted).
        protect: Do not learn the normal level from frames classified anomalous.
        max_protected_frames: After this many protected frames in a row, learn again (a lasting change
            of scene, e.g. a moved camera, becomes the new normal instead of an alert forever).
    """

    fading_factor: Annotated[float, Field(gt=0, le=1, description="EW weight of a new frame in the normal level")] = 0.001
    grace_frames: Annotated[int, Field(ge=2, le=1_000_000, description="Frames learned before a new camera can "
                                       "alert (>= 2/fading_factor)")] = 3000  # fmt: skip
    q: Annotated[float, Field(gt=0.5, lt=1, description="Quantile of past scores used as the threshold")] = 0.998
    min_threshold: Annotated[float, Field(ge=0, le=1, description="Floor of the threshold (score units)")] = 0.99
    min_std: Annotated[float, Field(gt=0, le=5, description="Floor of the std of the log error")] = 0.03
    protect: Annotated[bool, Field(description="Do not learn the normal level from anomalous frames")] = True
    max_protected_frames: Annotated[int, Field(ge=1, le=10_000_000, description="Learn again after this many "
                                               "protected frames in a row")] = 18_000  # fmt: skip

    def __post_init__(self) -> None:
        if not 0 < self.fading_factor <= 1:
            raise ValueError(f"fading_factor must be in (0, 1]. Received: fading_factor={self.fading_factor}")
        if not 0 < self.q < 1:
            raise ValueError(f"q must be in (0, 1). Received: q={self.q}")
        if self.grace_frames * self.fading_factor < 2:
            raise ValueError(
                "grace_frames must be >= 2 / fading_factor, so that the EW statistics have forgotten their first "
                f"frame before the camera can alert. Received: grace_frames={self.grace_frames}, "
                f"fading_factor={self.fading_factor}"
            )


@dataclass(frozen=True)
class EventParams:
    """Event rules (k, n, m in frames; durations in seconds of capture time); the one definition of their defaults.

    Bounds and descriptions are on the fields for pydantic (``VIGIL_SCORER_EVENTS__<FIELD>``, a camera's
    ``scorer:`` in the cameras file); constructed directly, only :meth:`__post_init__` checks them.
    """

    k: Annotated[int, Field(ge=1, le=1000, description="Open after k of the last n frames are above")] = 5
    n: Annotated[int, Field(ge=1, le=1000, description="Window of the k-of-n rule")] = 10
    m: Annotated[int, Field(ge=1, le=10_000, description="Close after m frames in a row below")] = 20
    min_duration_s: Annotated[float, Field(ge=0, le=3600, description="Events shorter than this are not announced")] = 0.5
    cooldown_s: Annotated[float, Field(ge=0, le=86_400, description="No new event this soon after a close")] = 10.0
    max_length_s: Annotated[float, Field(gt=0, le=86_400, description="Longer events are closed and re-announced")] = 600.0
    update_interval_s: Annotated[float, Field(ge=0, le=3600, description="At most one peak update per interval")] = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError(f"need 1 <= k <= n. Received: k={self.k}, n={self.n}")
        if self.m < 1:
            raise ValueError(f"m must be >= 1. Received: m={self.m}")
        if self.max_length_s <= self.min_duration_s:
            raise ValueError(f"max_length_s must exceed min_duration_s. Received: {self.max_length_s}")
