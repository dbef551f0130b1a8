"""Prometheus metrics of the ingest service, labelled by camera id (never by URL)."""

from __future__ import annotations

from vigil.shared.telemetry import counter, gauge, histogram

FRAMES_DECODED = counter("vigil_ingest_frames_decoded", "Frames decoded from the source", ["camera"])
FRAMES_PUBLISHED = counter("vigil_ingest_frames_published", "Frames acknowledged by Kafka", ["camera"])
FRAMES_DROPPED = counter(
    "vigil_ingest_frames_dropped",
    "Frames not published, by reason: behind (live reader late), corrupt, buffer_full (oldest dropped), "
    "stale (too old to send), kafka (delivery failed), encode",
    ["camera", "reason"],
)
STREAM_EVENTS = counter(
    "vigil_ingest_stream_events", "Irregularities of a source: resolution_change (new session), pts_jump "
    "(realtime file pacing re-anchored)", ["camera", "event"],
)  # fmt: skip
RECONNECTS = counter("vigil_ingest_reconnects", "Connection attempts after a failure or drop", ["camera"])
DECODE_SECONDS = histogram("vigil_ingest_decode_seconds", "Decode + resize + encode time per published frame", ["camera"])
PUBLISH_SECONDS = histogram("vigil_ingest_publish_seconds", "Capture time to Kafka acknowledgement", ["camera"])
FPS = gauge("vigil_ingest_frames_per_second", "Frames published per second over the last few seconds", ["camera"])
CAMERA_STATE = gauge("vigil_ingest_camera_state", "0 offline, 1 reconnecting, 2 online", ["camera"])
BUFFERED = gauge("vigil_ingest_buffered_frames", "Frames waiting in the bounded send buffer")
KAFKA_UP = gauge("vigil_ingest_kafka_up", "1 while sends to Kafka succeed, 0 while they fail")

STATE_VALUES = {"offline": 0, "reconnecting": 1, "online": 2}
