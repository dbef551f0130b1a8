"""The scorer's parameters, the one definition of their defaults and bounds.

They are a contract of the cameras file (a camera's ``scorer:`` overrides, :mod:`vigil.shared.cameras`)
and of the scorer's settings (``VIGIL_SCORER_SCORING__<FIELD>``, ``VIGIL_SCORER_EVENTS__<FIELD>``), so they
live here, free of the scorer's heavy imports (river); the scorer's core uses them as plain frozen
dataclasses (:mod:`vigil.model.alerting`, :mod:`vigil.model.events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field


@dataclass(frozen=True)
class ScoringParams:
    """Parameters of one camera's scoring (frame counts assume ~10 fps); the one definition of their defaults.

    Each field carries its bounds and description (``Annotated[..., Field(...)]``), which pydantic applies
    where the parameters are settings (``VIGIL_SCORER_SCORING__<FIELD>``, a camera's ``scorer:`` in the
    cameras file); constructed directly, only :meth:`__post_init__` checks them. Scores are in units of
    standard deviations of the log error (a sum of two z-scores, see :mod:`vigil.model.alerting`);
    docs/model.md says how each default was chosen.

    Attributes:
        smooth: Frames averaged into the score (a trailing window: 0.5 s at 10 fps).
        threshold_margin: Added by ``vigil calibrate`` to the largest score seen on normal footage (this
            class's default; ``--margin`` and a model card's recorded margin override it). A calibration
            stores the resulting threshold, so a running scorer does not read this field, and the scorer's
            setting of it only logs a warning.
        threshold_offset: Added to a calibrated camera's threshold (negative: more sensitive).
        online_threshold: Threshold of a camera without calibration, once its grace period is over.
        learn_margin: A frame is confidently normal, and learned, when its score is this far below the
            threshold (and no event is open).
        gain_fading: Weight of a frame in the fast global level (daily cycle); every frame counts, since
            the level is a median over locations that a local incident does not move.
        max_gain: Bound of that level's shift from the calibration, in log units (2.0: a factor of 7.4).
        fading_factor: Weight of a confidently normal frame in the slow per-location statistics.
        grace_frames: Frames a camera without calibration learns from before it can alert.
        min_std: Floor of the per-location std of the log error.
        location_weight: Calibration: 0 keeps each location's own statistics, 1 gives every location the
            scene's pooled ones; in between, a blend (:meth:`vigil.model.baseline.LocationStats.shrunk`).
        full_window: A score can be above the threshold only once it is a mean of ``smooth`` frames: the
            first ``smooth - 1`` scores after a fresh state (a camera's start, a restart, a rebalance) are
            published but never alert.
    """

    smooth: Annotated[int, Field(ge=1, le=100, description="Frames averaged into the score")] = 5
    threshold_margin: Annotated[float, Field(ge=-10, le=100, description="Not read by a running scorer (logged "
                                             "if set): a calibration carries its threshold; set the margin with "
                                             "`vigil calibrate --margin`")] = -1.5  # fmt: skip
    threshold_offset: Annotated[float, Field(ge=-100, le=100, description="Added to the calibrated threshold "
                                             "(negative = more sensitive)")] = 0.0  # fmt: skip
    online_threshold: Annotated[float, Field(gt=0, le=1000, description="Threshold of a camera without "
                                             "calibration")] = 2.5  # fmt: skip
    learn_margin: Annotated[float, Field(ge=0, le=100, description="Learn only frames this far below the "
                                         "threshold")] = 1.0  # fmt: skip
    gain_fading: Annotated[float, Field(gt=0, le=1, description="EW weight of a normal frame in the global "
                                        "level")] = 0.0003  # fmt: skip
    max_gain: Annotated[float, Field(ge=0, le=10, description="Bound of the global level shift (log units)")] = 2.0
    fading_factor: Annotated[float, Field(gt=0, le=1, description="EW weight of a normal frame in the "
                                          "per-location statistics")] = 0.0001  # fmt: skip
    grace_frames: Annotated[int, Field(ge=2, le=1_000_000, description="Frames a camera without calibration "
                                       "learns before it can alert")] = 3000  # fmt: skip
    min_std: Annotated[float, Field(gt=0, le=5, description="Floor of the per-location std of the log error")] = 0.05
    log_eps: Annotated[float, Field(ge=0, le=1, description="Calibration: added before the log (0: the map's "
                                    "median, its quiet background)")] = 1e-6  # fmt: skip
    spread: Annotated[int, Field(ge=-1, le=4, description="Fuse each map's largest z within this many "
                                 "locations (-1: anywhere in the frame)")] = -1  # fmt: skip
    location_weight: Annotated[float, Field(ge=0, le=1, description="Calibration: pull of each location's "
                                            "statistics towards the scene's pooled ones")] = 1.0  # fmt: skip
    full_window: Annotated[bool, Field(description="Only a full smoothing window's score can alert (not the first "
                                       "smooth-1 scores after a fresh state)")] = True  # fmt: skip

    def __post_init__(self) -> None:
        if not 0 < self.fading_factor <= 1 or not 0 < self.gain_fading <= 1:
            raise ValueError(f"fading_factor and gain_fading must be in (0, 1]. Received: {self.fading_factor}, "
                             f"{self.gain_fading}")
        if self.smooth < 1 or self.grace_frames < 2:
            raise ValueError(f"need smooth >= 1 and grace_frames >= 2. Received: {self.smooth}, {self.grace_frames}")


@dataclass(frozen=True)
class EventParams:
    """Event rules (k, n, m in frames; durations in seconds of capture time); the one definition of their defaults.

    The defaults open an alert at the first frame whose score (already a 5-frame mean) is above the threshold
    (k 1 of n 6, announced at once: docs/model.md scoring step 15's rule "1 of 1", chosen on the scene's
    synthetic sets; n stays 6 so that a camera's own ``k`` of up to 6 still validates, and 1 of 6 opens on the
    same frame as 1 of 1; it was 3 of 6 announced after 0.2 s, step 6).

    Bounds and descriptions are on the fields for pydantic (``VIGIL_SCORER_EVENTS__<FIELD>``, a camera's
    ``scorer:`` in the cameras file); constructed directly, only :meth:`__post_init__` checks them.
    """

    k: Annotated[int, Field(ge=1, le=1000, description="Open after k of the last n frames are above")] = 1
    n: Annotated[int, Field(ge=1, le=1000, description="Window of the k-of-n rule")] = 6
    m: Annotated[int, Field(ge=1, le=10_000, description="Close after m frames in a row below")] = 20
    min_duration_s: Annotated[float, Field(ge=0, le=3600, description="Events shorter than this are not announced")] = 0.0
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
