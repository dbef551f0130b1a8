"""The bounded ring of recent frames (and their error maps) per camera: pure, no network.

Each camera keeps its decoded :class:`~vigil.shared.schemas.FrameMessage` records (payload as it came:
``gray8``, ``bgr8`` or ``jpeg`` bytes, decoded to pixels only when evidence is rendered) and the score
messages that carry an error map. Bounds: ``max_frames`` and ``max_age_ns`` per camera, ``max_bytes``
in all (the largest ring's oldest frame goes first), ``max_cameras``, and idle cameras leave memory.
Every frame refused or evicted is counted by reason.

Example:
    >>> import numpy as np
    >>> from vigil.shared.schemas import FrameMessage
    >>> rings = Rings(RingBounds(max_frames=2, max_age_ns=10**12, max_bytes=10**9, max_cameras=4))
    >>> for seq in range(3):
    ...     _ = rings.add_frame(FrameMessage.from_pixels("cam", seq=seq, pts=0.0, capture_ns=10**9 + seq,
    ...                                                  image=np.zeros((2, 2), np.uint8)), now_ns=10**9)
    >>> [f.seq for f in rings.get("cam").frames], dict(rings.evicted)
    ([1, 2], {'max_frames': 1})
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from vigil.shared.schemas import FrameMessage, ScoreMessage

FRAME_OVERHEAD_BYTES = 1450
"""Memory a ring frame takes besides its payload (the decoded frame message object and its deque slot), counted
into the ring's bytes: 1,432 bytes measured with tracemalloc (Python 3.11, pydantic 2) on 120x180 Ped2 frames,
gray8 and JPEG alike (tests/evidence/test_evidence_core.py checks it)."""


@dataclass(frozen=True)
class RingBounds:
    """How much the rings may hold.

    Attributes:
        max_frames: Frames per camera.
        max_age_ns: Frames older than the camera's newest frame by more than this leave; a frame older
            than the receiver's clock by more than this is refused (``stale``).
        max_bytes: Bytes (payloads + :data:`FRAME_OVERHEAD_BYTES` each) of all rings together.
        max_cameras: Cameras with a ring.
    """

    max_frames: int
    max_age_ns: int
    max_bytes: int
    max_cameras: int


@dataclass
class CameraRing:
    """One camera's recent frames (oldest first) and the error maps of its recent scores."""

    frames: deque[FrameMessage] = field(default_factory=deque)
    scores: deque[ScoreMessage] = field(default_factory=deque)
    nbytes: int = 0
    last_ns: int = 0
    """This host's clock when the camera's last frame arrived (idle eviction)."""
    updated: int = 0
    """Frames added so far (the latest-frame writer compares it)."""

    def newest(self) -> FrameMessage | None:
        """The latest frame, or None."""
        return self.frames[-1] if self.frames else None

    def window(self, lo_ns: int, hi_ns: int) -> list[FrameMessage]:
        """Frames captured in ``[lo_ns, hi_ns]``, oldest first."""
        return [f for f in self.frames if lo_ns <= f.capture_ns <= hi_ns]

    def score_of(self, frame: FrameMessage) -> ScoreMessage | None:
        """The score (with an error map) of this very frame: same sequence number and capture time."""
        for s in reversed(self.scores):
            if s.seq == frame.seq and s.capture_ns == frame.capture_ns:
                return s
        return None


def frame_bytes(frame: FrameMessage) -> int:
    """What one frame costs the ring (payload + fixed overhead)."""
    return len(frame.payload) + FRAME_OVERHEAD_BYTES


class Rings:
    """The rings of every camera, with their bounds; ``dropped`` / ``evicted`` count by reason."""

    def __init__(self, bounds: RingBounds) -> None:
        self.bounds = bounds
        self.cameras: dict[str, CameraRing] = {}
        self.nbytes = 0
        self.dropped: Counter[str] = Counter()
        self.evicted: Counter[str] = Counter()

    def get(self, camera_id: str) -> CameraRing | None:
        """The ring of a camera, or None."""
        return self.cameras.get(camera_id)

    @property
    def frames(self) -> int:
        """Frames held in all."""
        return sum(len(r.frames) for r in self.cameras.values())

    def add_frame(self, frame: FrameMessage, now_ns: int) -> bool:
        """Keep a frame; False (counted in ``dropped``) when it is stale, a repeat, or one camera too many."""
        if now_ns - frame.capture_ns > self.bounds.max_age_ns:
            return self._drop("stale")
        ring = self.cameras.get(frame.camera_id)
        if ring is None:
            if len(self.cameras) >= self.bounds.max_cameras:
                return self._drop("max_cameras")
            ring = self.cameras[frame.camera_id] = CameraRing()
        last = ring.newest()
        if last is not None and (frame.session, frame.seq) <= (last.session, last.seq):
            return self._drop("out_of_order")
        if last is not None and frame.capture_ns < last.capture_ns:
            return self._drop("out_of_order")
        ring.frames.append(frame)
        size = frame_bytes(frame)
        ring.nbytes += size
        self.nbytes += size
        ring.last_ns, ring.updated = now_ns, ring.updated + 1
        self._trim(ring, frame.capture_ns)
        return True

    def add_score(self, score: ScoreMessage, now_ns: int) -> bool:
        """Keep a score's error map for its camera's frames (a score may come first: it opens the camera's ring);
        False when it has no map or the camera would be one too many."""
        if not score.payload or score.heatmap_height == 0:
            return False
        ring = self.cameras.get(score.camera_id)
        if ring is None:
            if len(self.cameras) >= self.bounds.max_cameras:
                return False
            ring = self.cameras[score.camera_id] = CameraRing(last_ns=now_ns)
        ring.scores.append(score)
        while len(ring.scores) > self.bounds.max_frames:
            ring.scores.popleft()
        return True

    def evict_idle(self, now_ns: int, idle_ns: int) -> list[str]:
        """Forget the cameras without a frame for ``idle_ns``; returns their ids."""
        gone = [cam for cam, ring in self.cameras.items() if now_ns - ring.last_ns > idle_ns]
        for cam in gone:
            self._forget(cam, "idle")
        return gone

    def _forget(self, camera_id: str, reason: str) -> None:
        ring = self.cameras.pop(camera_id)
        self.nbytes -= ring.nbytes
        self.evicted[reason] += len(ring.frames)

    def _trim(self, ring: CameraRing, newest_ns: int) -> None:
        while len(ring.frames) > self.bounds.max_frames:
            self._pop_oldest(ring, "max_frames")
        while ring.frames and newest_ns - ring.frames[0].capture_ns > self.bounds.max_age_ns:
            self._pop_oldest(ring, "max_age")
        while self.nbytes > self.bounds.max_bytes:
            largest = max(self.cameras.values(), key=lambda r: r.nbytes)
            if not largest.frames:
                break
            self._pop_oldest(largest, "max_bytes")

    def _pop_oldest(self, ring: CameraRing, reason: str) -> None:
        size = frame_bytes(ring.frames.popleft())
        ring.nbytes -= size
        self.nbytes -= size
        self.evicted[reason] += 1

    def _drop(self, reason: str) -> bool:
        self.dropped[reason] += 1
        return False

    def latest(self) -> Iterable[tuple[str, CameraRing]]:
        """Every camera with at least one frame."""
        return ((cam, ring) for cam, ring in self.cameras.items() if ring.frames)
