"""Per-camera score timelines for the console: the highest score of each interval, one stream entry each.

The scorer sees every score; the console wants a camera's recent history without reading Kafka. Each camera's
scores are bucketed by capture time into intervals of ``interval_s``; when a score falls into a new interval, the
previous interval's highest score (and the threshold at that score) is emitted, to be appended to the stream
``vigil:timeline:<camera>`` (capped). Taking the maximum keeps short spikes visible at one point per interval.

Example:
    >>> tl = Timeline(interval_s=1.0)
    >>> tl.add("cam", 0, 0.5, 2.0), tl.add("cam", 400_000_000, 3.0, 2.0), tl.add("cam", 1_100_000_000, 0.1, 2.0)
    (None, None, (0, 3.0, 2.0))
"""

from __future__ import annotations

from dataclasses import dataclass

TimelinePoint = tuple[int, float, float]
"""(start of the interval in capture ns, highest score, threshold at that score)."""


@dataclass
class _Bucket:
    start_ns: int
    score: float
    threshold: float


class Timeline:
    """Buckets each camera's scores into intervals and emits one point per finished interval.

    Args:
        interval_s: Interval length in seconds.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive. Received: {interval_s}")
        self.interval_ns = int(interval_s * 1e9)
        self._open: dict[str, _Bucket] = {}

    def add(self, camera_id: str, capture_ns: int, score: float, threshold: float) -> TimelinePoint | None:
        """Add one score; returns the previous interval's point when this score starts a new interval."""
        start = capture_ns - capture_ns % self.interval_ns
        b = self._open.get(camera_id)
        if b is None or start > b.start_ns:
            self._open[camera_id] = _Bucket(start, score, threshold)
            return None if b is None else (b.start_ns, b.score, b.threshold)
        if start == b.start_ns and score > b.score:  # a late score (start < bucket) is ignored
            b.score, b.threshold = score, threshold
        return None

    def forget(self, camera_id: str) -> None:
        """Drop a camera's open interval (the camera was evicted from memory)."""
        self._open.pop(camera_id, None)

    def __len__(self) -> int:
        return len(self._open)
