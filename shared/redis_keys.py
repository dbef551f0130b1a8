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
