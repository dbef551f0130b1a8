"""Pure timing helpers: fps sampling by presentation time, live-lag tracking and retry backoff.

Example:
    >>> s = FpsSampler(10.0)
    >>> [t for t in (0.0, 0.04, 0.08, 0.12, 0.16, 0.20, 0.24) if s.accept(t)]  # 25 fps -> 10 fps
    [0.0, 0.12, 0.2]
"""

from __future__ import annotations

import random

TOLERANCE_S = 1e-3  # timestamps within 1 ms of a slot count as on time (float rounding of time bases)


class FpsSampler:
    """Keeps frames so that the output rate is at most ``fps``, using timestamps, not frame counts.

    A frame is kept when its timestamp reaches the next slot; slots advance by ``1/fps``. After a gap
    longer than one period, or when time jumps backwards (a new stream), the slots restart at that frame.
    With a source at or below ``fps`` every frame is kept.
    """

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0. Received: fps={fps}")
        self.period = 1.0 / fps
        self.next_t: float | None = None
        self.last_t: float | None = None

    def accept(self, t: float) -> bool:
        """Return True if the frame at time ``t`` (seconds) is kept."""
        backwards = self.last_t is not None and t < self.last_t - TOLERANCE_S
        self.last_t = t
        if self.next_t is None or backwards:
            self.next_t = t + self.period
            return True
        if t < self.next_t - TOLERANCE_S:
            return False
        self.next_t += self.period
        if self.next_t <= t:  # a gap in the stream: restart the slots here
            self.next_t = t + self.period
        return True

    def reset(self) -> None:
        """Forget the slots (a new session)."""
        self.next_t = self.last_t = None


class LagTracker:
    """How far a live stream's frames arrive behind their presentation time.

    The baseline is the smallest ``wall - pts`` seen since the last :meth:`reset`, so network delay and
    the stream's start offset cancel out; what remains is delay added by a slow reader.

    Example:
        >>> lag = LagTracker()
        >>> lag.update(wall=100.0, pts=0.0), lag.update(wall=100.1, pts=0.1), lag.update(wall=103.0, pts=0.2)
        (0.0, 0.0, 2.8)
    """

    def __init__(self) -> None:
        self.base: float | None = None

    def update(self, wall: float, pts: float) -> float:
        """Record a frame; return its lag in seconds (>= 0)."""
        offset = wall - pts
        if self.base is None or offset < self.base:
            self.base = offset
        return round(offset - self.base, 9)

    def reset(self) -> None:
        """Start a new baseline (after skipping ahead, or on a new session)."""
        self.base = None


class Backoff:
    """Exponential backoff with jitter: ``initial * multiplier**n``, capped, scaled by ``[1-jitter, 1]``.

    Example:
        >>> b = Backoff(initial_s=1, max_s=5, multiplier=2, jitter=0, rng=random.Random(0))
        >>> [b.next_delay() for _ in range(5)]
        [1.0, 2.0, 4.0, 5.0, 5.0]
    """

    def __init__(
        self, initial_s: float, max_s: float, multiplier: float = 2.0, jitter: float = 0.3,
        rng: random.Random | None = None,
    ) -> None:  # fmt: skip
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1]. Received: jitter={jitter}")
        self.initial_s, self.max_s, self.multiplier, self.jitter = initial_s, max_s, multiplier, jitter
        self.rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        base = min(self.max_s, self.initial_s * self.multiplier**self.attempt)
        self.attempt += 1
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        """A success: the next failure starts from ``initial_s`` again."""
        self.attempt = 0
