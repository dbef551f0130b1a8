"""Prometheus metrics of the worker service."""

from __future__ import annotations

from vigil.shared.telemetry import counter, gauge, histogram

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

BATCH_SIZE = histogram("vigil_worker_batch_size", "Records per batch taken from Kafka", buckets=BATCH_BUCKETS)
STEP_SIZE = histogram("vigil_worker_step_size", "Frames per batched model step", buckets=BATCH_BUCKETS)
STEP_SECONDS = histogram("vigil_worker_step_seconds", "Wall time of one batched model step")
BATCH_SECONDS = histogram("vigil_worker_batch_seconds", "Wall time of one batch, produce included")
FRAMES = counter("vigil_worker_frames", "Frame records by outcome", ["outcome"])
RESETS = counter("vigil_worker_state_resets", "Camera state resets by reason", ["reason"])
LAG = gauge("vigil_worker_consumer_lag", "Frames not yet consumed, per partition", ["partition"])
CAMERAS = gauge("vigil_worker_cameras_owned", "Cameras with a state on this worker")
PARTITIONS = gauge("vigil_worker_partitions_owned", "Frames partitions assigned to this worker")
FPS = gauge("vigil_worker_frames_per_second", "Frames scored per second (last summary window)")
MODEL_SWAPS = counter("vigil_worker_model_swaps", "Models hot-swapped", ["model"])
SKIPPED = counter("vigil_worker_frames_skipped", "Frames neither scored nor dead-lettered one by one, by reason "
                  "(stale, superseded) and camera (bounded labels, else 'other')", ["reason", "camera"])  # fmt: skip
REFUSED = counter("vigil_worker_frames_refused", "Well-formed frames dead-lettered by reason (future, not_allowed, "
                  "camera_limit)", ["reason"])  # fmt: skip
ERRORS = counter("vigil_worker_record_errors", "Records or frames dead-lettered after an unexpected error")
PUBLISH_ERRORS = counter("vigil_worker_publish_errors", "Scores, dead letters or status records Kafka did not take",
                         ["topic"])  # fmt: skip
SESSION_CONFLICTS = counter("vigil_worker_session_conflicts", "Batches with frames of two ingest sessions of one "
                            "camera (two ingests publish it)", ["camera"])  # fmt: skip
CLOCK_SKEW = gauge("vigil_worker_clock_skew_seconds", "Smallest receive - capture delay of a camera's frames over "
                   "the last summary interval (ingest clock behind the worker, or backlog)", ["camera"])  # fmt: skip
EVICTED = counter("vigil_worker_cameras_evicted", "Camera states forgotten after idle_evict_s without a frame")
