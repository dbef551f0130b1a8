"""Prometheus metrics of the scorer service."""

from __future__ import annotations

from vigil.shared.telemetry import counter, gauge, histogram

SCORES = counter("vigil_scorer_scores", "Score messages by outcome", ["result"])
DLQ = counter("vigil_scorer_dead_letters", "Malformed score messages sent to the DLQ")
OUTBOX = gauge("vigil_scorer_outbox", "Alert changes waiting for Redis (all cameras)")
OUTBOX_DROPPED = gauge("vigil_scorer_outbox_dropped", "Alert changes dropped because an outbox was full (cached cameras)")
BATCH_SECONDS = histogram("vigil_scorer_batch_seconds", "Time to handle one batch of scores")
PUBLISHED = counter("vigil_scorer_alerts_published", "Alert changes written to Redis", ["event"])
DEDUPED = counter("vigil_scorer_alerts_deduplicated", "Alert changes Redis already had (replays)")
REDIS_FAILURES = counter("vigil_scorer_redis_failures", "Failed Redis write attempts")
REDIS_UP = gauge("vigil_scorer_redis_up", "1 when the last Redis write succeeded")
STATE_DISCARDED = counter("vigil_scorer_states_discarded", "Saved camera states that did not parse and were replaced")
REDIS_REJECTED = counter("vigil_scorer_redis_rejected", "Alert changes Redis refused (kept in the outbox, retried)")
CAMERAS = gauge("vigil_scorer_cameras", "Cameras whose scorer state is in memory")
