"""Prometheus metrics of `vigil evidence`."""

from __future__ import annotations

from vigil.shared.telemetry import counter, gauge, histogram

FRAMES = counter("vigil_evidence_frames", "Frame records taken into the ring")
DROPPED = counter("vigil_evidence_dropped", "Frame records not kept, by reason (invalid, stale, out_of_order, "
                  "max_cameras)", ["reason"])  # fmt: skip
EVICTED = counter("vigil_evidence_evicted", "Frames that left the ring, by reason (max_frames, max_age, max_bytes, idle)",
                  ["reason"])  # fmt: skip
BUFFERED = gauge("vigil_evidence_frames_buffered", "Frames held in the rings")
RING_BYTES = gauge("vigil_evidence_ring_bytes", "Bytes held in the rings (payloads + per-frame overhead)")
CAMERAS = gauge("vigil_evidence_cameras", "Cameras with a ring")
PENDING = gauge("vigil_evidence_pending", "Alerts awaiting their final evidence")
ALERTS = counter("vigil_evidence_alert_entries", "Alert stream entries by outcome (tracked, malformed, known)",
                 ["result"])  # fmt: skip
WRITTEN = counter("vigil_evidence_written", "Evidence written, by kind (snapshot, clip, latest_frame) and status",
                  ["kind", "status"])  # fmt: skip
INCOMPLETE = counter("vigil_evidence_incomplete", "Evidence written with a problem (frames missing, odd alert)")
WRITTEN_BYTES = counter("vigil_evidence_written_bytes", "Bytes of evidence written, by kind", ["kind"])
ENCODE_SECONDS = histogram("vigil_evidence_encode_seconds", "Time to render one alert's snapshot and clip",
                           buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))  # fmt: skip
REDIS_FAILURES = counter("vigil_evidence_redis_failures", "Failed Redis reads or writes (retried)")
SCORES = counter("vigil_evidence_scores", "Score records by outcome (kept: has an error map)", ["result"])
FOOTAGE = counter("vigil_evidence_footage_segments", "Footage for retraining: segments by outcome (kept, not_normal, "
                  "undecodable, vetoed: removed for an alert, trimmed: over the per-camera bounds)", ["result"])
