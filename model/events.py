"""Turn per-frame anomaly flags into alert events: hysteresis, minimum duration, cooldown, re-announce.

Pure, deterministic (times come from the frames' capture times, never from the wall clock, so replaying
the same scores gives the same events), and saved as plain JSON types (:meth:`EventTracker.to_dict`;
the frames' ``heat`` payloads must be JSON-ready). One :class:`EventTracker` per camera.

Rules:
    * **open** after ``k`` of the last ``n`` frames are above the threshold; the event starts at the first
      above-threshold frame in that window (its sequence number makes the alert id). The event is only
      announced once it has lasted ``min_duration_s``; shorter blips are dropped silently.
    * **close** after ``m`` frames in a row below the threshold; the event ends at its last frame above.
    * **update** when the peak score rises, at most once per ``update_interval_s``.
    * **cooldown**: no new event opens within ``cooldown_s`` of the previous close.
    * **max length**: an event longer than ``max_length_s`` is closed and re-announced as a new event
      (new id, starting at the current frame), so a lasting incident is reported again.

Example:
    >>> t = EventTracker(EventParams(k=2, n=3, m=2, min_duration_s=0, cooldown_s=0))
    >>> flags = [0, 1, 1, 1, 0, 0, 0]
    >>> [c.kind for i, f in enumerate(flags) for c in t.step(Frame(i, i * 10**8, 0.999 if f else 0.1, bool(f), 0.99))]
    ['open', 'close']
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from vigil.shared.scorer_params import EventParams

NS = 1_000_000_000
ChangeKind = Literal["open", "update", "close"]


@dataclass(frozen=True)
class Frame:
    """What the tracker needs of one scored frame."""

    seq: int
    ns: int
    score: float
    above: bool
    threshold: float
    heat: object | None = None
    """Opaque payload kept for the peak frame (e.g. the heat map), returned with the changes."""


@dataclass(frozen=True)
class Change:
    """One event change to publish. ``n_update`` numbers the updates of one event (0 for open/close)."""

    kind: ChangeKind
    start_seq: int
    start_ns: int
    end_seq: int | None
    end_ns: int | None
    peak_score: float
    peak_seq: int
    score: float
    threshold: float
    n_update: int = 0
    peak_heat: object | None = None


@dataclass
class _Event:
    start_seq: int
    start_ns: int
    last_above_seq: int
    last_above_ns: int
    peak_score: float
    peak_seq: int
    peak_heat: object | None
    announced: bool = False
    below_run: int = 0
    published_peak: float = -1.0
    last_update_ns: int = 0
    n_update: int = 0

    def change(self, kind: ChangeKind, f: Frame, end: bool = False) -> Change:
        return Change(
            kind, self.start_seq, self.start_ns,
            self.last_above_seq if end else None, self.last_above_ns if end else None,
            self.peak_score, self.peak_seq, f.score, f.threshold, self.n_update if kind == "update" else 0,
            self.peak_heat,
        )  # fmt: skip


@dataclass
class EventTracker:
    """Hysteresis state machine of one camera (see the module docstring for the rules)."""

    params: EventParams = field(default_factory=EventParams)
    window: deque[Frame] = field(default_factory=deque)
    event: _Event | None = None
    cooldown_until_ns: int = 0

    @property
    def open_start_seq(self) -> int | None:
        """Start sequence of the announced (open) event, if any."""
        return self.event.start_seq if self.event is not None and self.event.announced else None

    def step(self, f: Frame) -> list[Change]:
        """Feed one frame (in sequence order); return the changes it causes."""
        self.window.append(f)
        if len(self.window) > self.params.n:
            self.window.popleft()
        if self.event is None:
            self._maybe_start(f)
            return self._maybe_announce(f) if self.event is not None else []
        return self._continue(f)

    def _maybe_start(self, f: Frame) -> None:
        if not f.above or f.ns < self.cooldown_until_ns:
            return
        above = [w for w in self.window if w.above]
        if len(above) < self.params.k:
            return
        first, peak = above[0], max(above, key=lambda w: w.score)
        self.event = _Event(first.seq, first.ns, f.seq, f.ns, peak.score, peak.seq, peak.heat)

    def _continue(self, f: Frame) -> list[Change]:
        ev = self.event
        assert ev is not None
        if not f.above:
            ev.below_run += 1
            return self._close(f) if ev.below_run >= self.params.m else []
        ev.below_run, ev.last_above_seq, ev.last_above_ns = 0, f.seq, f.ns
        if f.score > ev.peak_score:
            ev.peak_score, ev.peak_seq, ev.peak_heat = f.score, f.seq, f.heat
        if not ev.announced:
            return self._maybe_announce(f)
        if f.ns - ev.start_ns >= self.params.max_length_s * NS:
            return self._reannounce(f)
        return self._maybe_update(f)

    def _maybe_announce(self, f: Frame) -> list[Change]:
        ev = self.event
        assert ev is not None
        if f.ns - ev.start_ns < self.params.min_duration_s * NS:
            return []
        ev.announced, ev.published_peak, ev.last_update_ns = True, ev.peak_score, f.ns
        return [ev.change("open", f)]

    def _maybe_update(self, f: Frame) -> list[Change]:
        ev = self.event
        assert ev is not None
        if ev.peak_score <= ev.published_peak or f.ns - ev.last_update_ns < self.params.update_interval_s * NS:
            return []
        ev.n_update += 1
        ev.published_peak, ev.last_update_ns = ev.peak_score, f.ns
        return [ev.change("update", f)]

    def _close(self, f: Frame) -> list[Change]:
        ev = self.event
        assert ev is not None
        self.event = None
        self.window.clear()
        if not ev.announced:
            return []
        self.cooldown_until_ns = f.ns + int(self.params.cooldown_s * NS)
        return [ev.change("close", f, end=True)]

    def _reannounce(self, f: Frame) -> list[Change]:
        ev = self.event
        assert ev is not None
        closed = ev.change("close", f, end=True)
        self.event = _Event(f.seq, f.ns, f.seq, f.ns, f.score, f.seq, f.heat, announced=True,
                            published_peak=f.score, last_update_ns=f.ns)  # fmt: skip
        return [closed, self.event.change("open", f)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (the window's frames, the current event, the cooldown)."""
        return {"window": [asdict(f) for f in self.window],
                "event": None if self.event is None else asdict(self.event),
                "cooldown_until_ns": self.cooldown_until_ns}

    @classmethod
    def from_dict(cls, d: dict[str, Any], params: EventParams) -> EventTracker:
        """Inverse of :meth:`to_dict` (with today's ``params``); raises on malformed data."""
        window = deque((Frame(**f) for f in d["window"][-params.n:]), maxlen=None)
        event = None if d["event"] is None else _Event(**d["event"])
        for v in (*(f.score for f in window), *(() if event is None else (event.peak_score,))):
            if not isinstance(v, int | float) or v != v or v in (float("inf"), float("-inf")):
                raise ValueError(f"event state holds a non-finite score: {v!r}")
        return cls(params, window, event, int(d["cooldown_until_ns"]))
