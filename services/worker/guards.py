"""Bounds the worker keeps against hostile or broken producers: which cameras it admits, bounded metric
labels, once-per-interval reports, and the clock-skew estimate per camera.

Example:
    >>> labels = CameraLabels(allowed=frozenset(), top_n=2)
    >>> [labels.label(c) for c in ("a", "b", "c", "a")]
    ['a', 'b', 'other', 'a']
    >>> t = Throttle(interval_s=60, max_keys=10)
    >>> t.due("cam", now=0.0), t.due("cam", now=30.0), t.due("cam", now=61.0)
    (True, False, True)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

OTHER = "other"
"""Metric label of every camera beyond the bounded label set."""


class CameraLabels:
    """A bounded set of per-camera metric label values: the allow-listed cameras, else the first ``top_n`` seen.

    Any other camera is labelled :data:`OTHER`, so a producer inventing camera ids cannot create unbounded
    Prometheus series.

    Args:
        allowed: The camera allow-list (labels are exactly these ids when it is not empty).
        top_n: Most distinct camera labels without an allow-list.
    """

    def __init__(self, allowed: frozenset[str], top_n: int) -> None:
        self.allowed = allowed
        self.top_n = top_n
        self._seen: set[str] = set()

    def label(self, camera_id: str) -> str:
        """The label value for ``camera_id``."""
        if self.allowed:
            return camera_id if camera_id in self.allowed else OTHER
        if camera_id in self._seen:
            return camera_id
        if len(self._seen) < self.top_n:
            self._seen.add(camera_id)
            return camera_id
        return OTHER


class Throttle:
    """Says whether a report about ``key`` is due: at most once per ``interval_s``; remembers ``max_keys`` keys."""

    def __init__(self, interval_s: float, max_keys: int = 10_000) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: OrderedDict[str, float] = OrderedDict()

    def due(self, key: str, now: float) -> bool:
        """True (and remember ``now``) when no report about ``key`` was made in the last ``interval_s``."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return True


@dataclass
class Skew:
    """Receive-minus-capture delays of one camera over a report interval (ns)."""

    min_ns: int
    frames: int = 1


class SkewTracker:
    """The smallest ``received - capture`` delay per camera since the last :meth:`take`.

    The smallest delay of an interval is the camera's clock offset plus the fastest transport: a camera whose
    smallest delay is seconds (while the worker keeps up) has an ingest clock behind the worker's; a negative
    one, a clock ahead. Bounded to ``max_cameras`` cameras per interval.
    """

    def __init__(self, max_cameras: int) -> None:
        self.max_cameras = max_cameras
        self._skews: dict[str, Skew] = {}

    def observe(self, camera_id: str, delay_ns: int) -> None:
        """Record one frame's delay."""
        skew = self._skews.get(camera_id)
        if skew is None:
            if len(self._skews) < self.max_cameras:
                self._skews[camera_id] = Skew(delay_ns)
            return
        skew.min_ns = min(skew.min_ns, delay_ns)
        skew.frames += 1

    def take(self) -> dict[str, Skew]:
        """The delays since the last call; starts a new interval."""
        out, self._skews = self._skews, {}
        return out
