"""Prometheus metrics of the scorer service."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from vigil.shared.telemetry import counter, gauge, histogram

SCORES = counter("vigil_scorer_scores", "Score messages by outcome", ["result"])
DLQ = counter("vigil_scorer_dead_letters", "Malformed score messages sent to the DLQ")
OUTBOX = gauge("vigil_scorer_outbox", "Alert changes waiting for Redis (all cameras)")
OUTBOX_DROPPED = counter("vigil_scorer_outbox_dropped", "Alert changes dropped because a camera's outbox was full")
BATCH_SECONDS = histogram("vigil_scorer_batch_seconds", "Time to handle one batch of scores")
PUBLISHED = counter("vigil_scorer_alerts_published", "Alert changes written to Redis", ["event"])
DEDUPED = counter("vigil_scorer_alerts_deduplicated", "Alert changes Redis already had (replays)")
REDIS_FAILURES = counter("vigil_scorer_redis_failures", "Failed Redis write attempts")
REDIS_UP = gauge("vigil_scorer_redis_up", "1 when the last Redis write succeeded")
STATE_DISCARDED = counter("vigil_scorer_states_discarded", "Saved camera states that did not parse and were replaced")
REDIS_REJECTED = counter("vigil_scorer_redis_rejected", "Alert changes Redis refused (kept in the outbox, retried)")
KIND_PREDICTIONS = counter("vigil_scorer_kind_predictions", "Alert changes by classifier outcome", ["result"])
KIND_LABELS = gauge("vigil_scorer_kind_labels", "Operator labels behind the kind classifier")
LABELS_SKIPPED = counter("vigil_scorer_labels_skipped", "Labels not learnt (malformed, or the alert's features had expired)")
KIND_CAMERAS_FULL = counter("vigil_scorer_kind_camera_labels_site_only", "Labels of a camera beyond "
                            "max_camera_classifiers: learnt by the site's classifier only")
KIND_FEATURES_DROPPED = counter("vigil_scorer_kind_features_dropped", "Alert features not stored (Redis error)")
CAMERAS = gauge("vigil_scorer_cameras", "Cameras whose scorer state is in memory")
CAMERA_SCORE = gauge("vigil_scorer_camera_score", "Latest score of each camera in memory", ["camera"])
CAMERA_THRESHOLD = gauge("vigil_scorer_camera_threshold", "Alert threshold each camera in memory is scored against",
                         ["camera"])  # fmt: skip
CAMERA_LEVEL = gauge("vigil_scorer_camera_level", "How far each camera's overall level of each map has moved from "
                     "its calibration, in log units (the daily cycle it follows; bounded by max_gain)",
                     ["camera", "map"])  # fmt: skip
CAMERA_LAST_SCORE = gauge("vigil_scorer_camera_last_score_timestamp_seconds", "Capture time (Unix seconds) of the "
                          "last frame scored for each camera in memory", ["camera"])  # fmt: skip


def observe_camera(camera_id: str, score: float, threshold: float, capture_ns: int) -> None:
    """Set a camera's score gauges (labels bounded by the scorer's max_cameras; removed by :func:`forget_camera`)."""
    CAMERA_SCORE.labels(camera_id).set(score)
    CAMERA_THRESHOLD.labels(camera_id).set(threshold)
    CAMERA_LAST_SCORE.labels(camera_id).set(capture_ns / 1e9)


_LEVEL_MAPS: dict[str, set[str]] = {}
"""The maps each camera in memory has level gauges for (emptied by :func:`forget_camera`)."""


def observe_level(camera_id: str, gains: Mapping[str, float]) -> None:
    """Set a camera's level gauges, one per map of its core (labels bounded by max_cameras x its maps)."""
    for name, value in gains.items():
        CAMERA_LEVEL.labels(camera_id, name).set(value)
    if gains:
        _LEVEL_MAPS.setdefault(camera_id, set()).update(gains)


def forget_camera(camera_id: str) -> None:
    """Remove an evicted camera's gauges."""
    for g in (CAMERA_SCORE, CAMERA_THRESHOLD, CAMERA_LAST_SCORE):
        with contextlib.suppress(KeyError):
            g.remove(camera_id)
    for name in _LEVEL_MAPS.pop(camera_id, ()):
        with contextlib.suppress(KeyError):
            CAMERA_LEVEL.remove(camera_id, name)


class OutboxDropTally:
    """Turns the cumulative per-camera ``outbox_dropped`` counts of the scorer states into increments of
    :data:`OUTBOX_DROPPED` (a Counter, exported as ``vigil_scorer_outbox_dropped_total``).

    A state object seen for the first time (new, restored from the table, reloaded after eviction) sets the
    baseline, so counts restored from a saved state are not counted twice after a restart. Holds one entry per
    camera in memory (pruned to the cameras passed in).

    Example:
        >>> from types import SimpleNamespace
        >>> tally, st = OutboxDropTally(), SimpleNamespace(outbox_dropped=3)
        >>> tally.observe({"cam": st}), setattr(st, "outbox_dropped", 5), tally.observe({"cam": st})
        (0, None, 2)
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int]] = {}  # camera -> (id of its state object, count seen)

    def observe(self, states: Mapping[str, Any]) -> int:
        """Count the drops since the last call for every camera in ``states``; returns how many were new."""
        new, seen = 0, {}
        for camera, st in states.items():
            count = int(st.outbox_dropped)
            prev = self._seen.get(camera)
            if prev is not None and prev[0] == id(st) and count > prev[1]:
                new += count - prev[1]
            seen[camera] = (id(st), count)
        self._seen = seen
        if new:
            OUTBOX_DROPPED.inc(new)
        return new


OUTBOX_DROPS = OutboxDropTally()
