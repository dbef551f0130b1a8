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
