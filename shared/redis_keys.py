"""Redis key names from ../shared/DESIGN.md, in one place."""

from __future__ import annotations

ALERTS_STREAM = "vigil:alerts"
ALERT_LABELS = "vigil:alert-labels"
"""Hash alert_id -> JSON label ({"kind": ..., "by": ..., "time_ns": ...}) for the supervised classifier."""


def alerts_channel(camera_id: str) -> str:
    """Pub/sub channel for one camera's alerts (subscribe to all with PSUBSCRIBE vigil:alerts:*)."""
    return f"vigil:alerts:{camera_id}"


def camera_hash(camera_id: str) -> str:
    """Hash with a camera's latest score, threshold, status and last frame time."""
    return f"vigil:camera:{camera_id}"


def snapshot_key(alert_id: str) -> str:
    """JPEG snapshot (frame with heat map overlay) of an alert, with a TTL."""
    return f"vigil:snapshot:{alert_id}"


# --- Evidence (vigil evidence), the console (vigil api) and delivery (vigil notify) -------------------------------

EVIDENCE_READY_CHANNEL = "vigil:evidence-ready"
"""Pub/sub channel: the alert id of each alert whose evidence (snapshot, clip) has just been written."""

NOTIFY_DEAD_LETTERS = "vigil:notify:dead"
"""Stream of deliveries (webhook or MQTT) that failed after the last retry, with the reason."""


def evidence_key(alert_id: str) -> str:
    """Hash describing an alert's evidence: sizes, MIME type of the clip, frame range, status; with a TTL."""
    return f"vigil:evidence:{alert_id}"


def evidence_snapshot_key(alert_id: str) -> str:
    """JPEG: the real frame at the alert's peak with the error map and the alert's box overlaid; with a TTL."""
    return f"vigil:evidence:{alert_id}:snapshot"


def evidence_clip_key(alert_id: str) -> str:
    """The alert's clip (a few seconds before and after, MP4 H.264 or WebM) as bytes; with a TTL."""
    return f"vigil:evidence:{alert_id}:clip"


def latest_frame_key(camera_id: str) -> str:
    """JPEG of a camera's latest frame for the console's camera wall, refreshed every few seconds; short TTL."""
    return f"vigil:frame:{camera_id}"


def timeline_key(camera_id: str) -> str:
    """Stream of a camera's score timeline (fields t_ns, score, threshold), at most one entry per second, capped."""
    return f"vigil:timeline:{camera_id}"

LABELS_STREAM = "vigil:labels"
"""Stream of operator labels for the online kind classifier: fields ``alert_id``, ``kind``, ``features`` (the
alert's classifier features as JSON, empty when they had expired). Capped (MAXLEN ~ 10,000)."""

ALERT_FEATURES_PREFIX = "vigil:alert-features:"


def alert_features_key(alert_id: str) -> str:
    """String key: the classifier features (JSON) of an alert, written by the scorer, read when it is labelled."""
    return ALERT_FEATURES_PREFIX + alert_id
