"""Footage for retraining (issue #17): sampled segments of each camera's stream that scored confidently normal.

The evidence service already holds every camera's recent frames. Every ``every_s`` per camera it considers the
segment that ended ``guard_s`` ago (so an alert that opens just after it is known) and keeps it when

* no alert of the camera overlaps the segment widened by ``guard_s`` on both sides, and
* the scorer's timeline (``vigil:timeline:<camera>``, one point per second) covers at least 80% of its seconds
  and every point is at least ``margin`` below the camera's threshold (:func:`confidently_normal`).

A kept segment is written as lossless FFV1 video (``<dir>/<camera>/<start ms>-<end ms>.mkv``, the layout
``vigil train`` / ``vigil retrain --footage`` read). Each camera keeps at most ``max_segments`` and ``max_bytes``
(the oldest go first). The operator's veto: an alert that turns out to overlap a kept segment (it opened later,
or was labelled) removes that segment, so a labelled or alerting moment is never training footage.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vigil.shared.schemas import Alert, FrameMessage, SchemaError

log = logging.getLogger(__name__)
S = 1_000_000_000
SEGMENT_NAME = re.compile(r"^(\d{1,19})-(\d{1,19})\.mkv$")
CAMERA_DIR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class FootageConfig:
    """Where and how much footage is kept (times in ns)."""

    folder: Path
    every_ns: int = 600 * S
    segment_ns: int = 10 * S
    guard_ns: int = 10 * S
    margin: float = 1.0
    max_segments: int = 200
    max_bytes: int = 500 << 20
    spans_per_camera: int = 100


@dataclass(frozen=True)
class Candidate:
    """A segment that passed the alert check and waits for the timeline check."""

    camera_id: str
    lo_ns: int
    hi_ns: int
    frames: list[FrameMessage]


def confidently_normal(points: list[tuple[int, float, float]], lo_ns: int, hi_ns: int, margin: float) -> bool:
    """Whether the timeline points ``(t_ns, score, threshold)`` inside ``[lo_ns, hi_ns]`` cover 80% of its seconds
    and all lie ``margin`` or more below the threshold.

    Example:
        >>> pts = [(t * S, 0.0, 2.0) for t in range(10)]
        >>> confidently_normal(pts, 0, 9 * S, 1.0), confidently_normal(pts[:5], 0, 9 * S, 1.0)
        (True, False)
        >>> confidently_normal(pts[:9] + [(9 * S, 1.5, 2.0)], 0, 9 * S, 1.0)
        False
    """
    inside = [(s, thr) for t, s, thr in points if lo_ns <= t <= hi_ns]
    seconds = max(1, round((hi_ns - lo_ns) / S))
    return len(inside) >= 0.8 * seconds and all(np.isfinite(s) and s <= thr - margin for s, thr in inside)


class FootagePlanner:
    """Decides, per camera, which recent segment to check (pure; the service does the I/O)."""

    def __init__(self, config: FootageConfig) -> None:
        self.config = config
        self.next_ns: dict[str, int] = {}
        self.spans: dict[str, deque[tuple[str, int, int | None]]] = {}

    def on_alert(self, alert: Alert) -> tuple[int, int]:
        """Remember an alert's span (open ones last until closed); returns the span widened by the guard."""
        spans = self.spans.setdefault(alert.camera_id, deque(maxlen=self.config.spans_per_camera))
        kept = [s for s in spans if s[0] != alert.alert_id]
        spans.clear()
        spans.extend(kept + [(alert.alert_id, alert.start_ns, alert.end_ns)])
        end = alert.end_ns if alert.end_ns is not None else alert.start_ns + 3600 * S
        return alert.start_ns - self.config.guard_ns, end + self.config.guard_ns

    def forget(self, camera_id: str) -> None:
        """Drop a camera (its ring was evicted)."""
        self.next_ns.pop(camera_id, None)
        self.spans.pop(camera_id, None)

    def candidate(self, camera_id: str, frames: list[FrameMessage]) -> Candidate | None:
        """The camera's segment to check now, or None (not due, too few frames, or an alert near it)."""
        if not frames:
            return None
        c, newest = self.config, frames[-1].capture_ns
        if newest < self.next_ns.get(camera_id, 0):
            return None
        hi = newest - c.guard_ns
        lo = hi - c.segment_ns
        window = [f for f in frames if lo <= f.capture_ns <= hi]
        if len(window) < 2 or window[-1].capture_ns - window[0].capture_ns < 0.8 * c.segment_ns:
            self.next_ns[camera_id] = newest + S  # the ring does not reach back that far yet
            return None
        if self._near_alert(camera_id, lo, hi):
            self.next_ns[camera_id] = newest + c.segment_ns
            return None
        self.next_ns[camera_id] = newest + c.every_ns
        return Candidate(camera_id, lo, hi, window)

    def _near_alert(self, camera_id: str, lo: int, hi: int) -> bool:
        g = self.config.guard_ns
        return any(start - g <= hi and (end is None or end + g >= lo) for _, start, end in self.spans.get(camera_id, ()))


class FootageStore:
    """The segments on disk: writing, the per-camera bounds, the veto."""

    def __init__(self, config: FootageConfig) -> None:
        self.config = config

    def camera_dir(self, camera_id: str) -> Path | None:
        """The camera's folder, or None for an id that cannot be a folder name."""
        return self.config.folder / camera_id if CAMERA_DIR.match(camera_id) else None

    def segments(self, camera_id: str) -> list[tuple[int, int, Path]]:
        """``(start_ns, end_ns, path)`` of the camera's segments, oldest first."""
        folder = self.camera_dir(camera_id)
        if folder is None or not folder.is_dir():
            return []
        out = []
        for p in folder.iterdir():
            if m := SEGMENT_NAME.match(p.name):
                out.append((int(m[1]) * 1_000_000, int(m[2]) * 1_000_000, p))
        return sorted(out)

    def write(self, cand: Candidate) -> Path | None:
        """Encode the candidate's frames as FFV1 gray video; None when the frames do not decode or differ in size."""
        folder = self.camera_dir(cand.camera_id)
        if folder is None:
            return None
        try:
            images = [_gray(f) for f in cand.frames]
        except SchemaError:
            return None
        if len({im.shape for im in images}) != 1:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{cand.lo_ns // 1_000_000}-{cand.hi_ns // 1_000_000}.mkv"
        tmp = path.with_suffix(".part")
        span_s = max((cand.frames[-1].capture_ns - cand.frames[0].capture_ns) / S, 1e-3)
        _encode_ffv1(images, tmp, fps=max(1, min(120, round((len(images) - 1) / span_s))))
        tmp.rename(path)
        return path

    def enforce(self, camera_id: str) -> int:
        """Delete the camera's oldest segments beyond the bounds; returns how many went."""
        segs, removed = self.segments(camera_id), 0
        total = sum(p.stat().st_size for _, _, p in segs)
        while segs and (len(segs) > self.config.max_segments or total > self.config.max_bytes):
            _, _, p = segs.pop(0)
            total -= p.stat().st_size
            p.unlink(missing_ok=True)
            removed += 1
        return removed

    def veto(self, camera_id: str, lo_ns: int, hi_ns: int) -> int:
        """Delete the camera's segments overlapping ``[lo_ns, hi_ns]``; returns how many went."""
        gone = 0
        for start, end, p in self.segments(camera_id):
            if start <= hi_ns and end >= lo_ns:
                p.unlink(missing_ok=True)
                gone += 1
        if gone:
            log.info("camera %s: %d footage segment(s) overlapping an alert removed", camera_id, gone)
        return gone


def _gray(frame: FrameMessage) -> np.ndarray:
    px = frame.pixels()
    if px.ndim == 3:
        px = px[..., :3].mean(axis=2).astype(np.uint8) if px.shape[2] > 1 else px[..., 0]
    return np.ascontiguousarray(px, dtype=np.uint8)


def _encode_ffv1(images: list[np.ndarray], path: Path, fps: int = 10) -> None:
    import av

    h, w = images[0].shape
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "gray"
        for im in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(im, format="gray")))
        container.mux(stream.encode(None))


class FootageKeeper:
    """The service's side: the planner, the timeline check in Redis, the store, and their counters.

    Args:
        config: Where and how much.
        client: A sync ``redis.Redis`` client (the timeline).
        counts: Where outcomes are counted (``kept``, ``not_normal``, ``undecodable``, ``vetoed``, ``trimmed``).
    """

    def __init__(self, config: FootageConfig, client: object, counts: dict[str, int]) -> None:
        self.planner = FootagePlanner(config)
        self.store = FootageStore(config)
        self.client = client
        self.counts = counts

    def on_alert(self, alert: Alert) -> None:
        """Remember the alert and veto the kept segments it overlaps."""
        lo, hi = self.planner.on_alert(alert)
        self.counts["vetoed"] += self.store.veto(alert.camera_id, lo, hi)

    def sample(self, rings: dict[str, list[FrameMessage]]) -> list[Path]:
        """Check each camera's due segment and keep it when the timeline says it was confidently normal."""
        from vigil.shared.redis_keys import timeline_key

        kept = []
        for camera_id, frames in rings.items():
            cand = self.planner.candidate(camera_id, frames)
            if cand is None:
                continue
            seconds = 2 * (int((cand.hi_ns - cand.lo_ns) / S) + int(self.planner.config.guard_ns / S)) + 10  # points by time
            entries = self.client.xrevrange(timeline_key(camera_id), count=seconds)
            if not confidently_normal([_point(f) for _, f in entries], cand.lo_ns, cand.hi_ns, self.planner.config.margin):
                self.counts["not_normal"] += 1
                continue
            path = self.store.write(cand)
            if path is None:
                self.counts["undecodable"] += 1
                continue
            kept.append(path)
            self.counts["kept"] += 1
            self.counts["trimmed"] += self.store.enforce(camera_id)
        return kept


def _point(fields: dict) -> tuple[int, float, float]:
    """``(t_ns, score, threshold)`` of a timeline entry; a malformed one reads as never normal."""
    try:
        get = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
        return int(get["t_ns"]), float(get["score"]), float(get["threshold"])
    except (KeyError, ValueError, TypeError):
        return 0, float("inf"), 0.0
