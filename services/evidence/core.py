"""The pure core of `vigil evidence`: frames, scores and alert changes in, evidence records out.

:class:`EvidenceCore` keeps the rings (:mod:`.ring`), one :class:`Job` per alert awaiting evidence, and
renders an :class:`Evidence` record (snapshot JPEG, clip bytes, frame range, status, problem) when a
job is due: a ``preliminary`` one ``preliminary_after_s`` after ``open`` and the ``final`` one once the
after-window's frames are in the ring (or ``final_grace_s`` later by this host's clock). A hostile or odd
alert costs that alert only: what can be rendered is, and ``problem`` says what is missing.

Example:
    >>> import numpy as np, time
    >>> from vigil.shared.schemas import Alert, FrameMessage
    >>> from vigil.services.evidence.clip import pick_format
    >>> core = EvidenceCore(EvidenceConfig(), pick_format("auto"))
    >>> t0 = time.time_ns()
    >>> for seq in range(20):
    ...     msg = FrameMessage.from_pixels("cam", seq=seq, pts=seq / 10, capture_ns=t0 + seq * 10**8,
    ...                                    image=np.full((24, 36), seq * 10, np.uint8))
    ...     _ = core.on_frame(msg.encode(), now_ns=t0)
    >>> alert = Alert(alert_id="cam:5:0", camera_id="cam", event="close", start_seq=5, end_seq=8,
    ...               start_ns=t0 + 5 * 10**8, end_ns=t0 + 8 * 10**8, peak_score=5, score=1, threshold=2,
    ...               peak_seq=6, box=(0.0, 0.0, 0.5, 0.5))
    >>> core.on_alert("1-0", {b"json": alert.to_json().encode()}, now_ns=t0).result
    'tracked'
    >>> [(job.alert.alert_id, status) for job, status in core.due(now_ns=t0 + 9 * 10**9)]
    [('cam:5:0', 'final')]
    >>> ev = core.render(core.jobs["cam:5:0"], "final", now_ns=t0)
    >>> ev.status, ev.frames, ev.first_seq, ev.last_seq, ev.snapshot[:2] == b"\\xff\\xd8"
    ('final', 20, 0, 19, True)
    >>> ev.problem.split("; ")[0]
    'no error map for frame 6 (the snapshot shows the box only)'
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from vigil.services.evidence.clip import ClipFormat, encode_capped
from vigil.services.evidence.render import draw_box, jpeg, overlay, to_bgr
from vigil.services.evidence.ring import CameraRing, RingBounds, Rings
from vigil.shared.schemas import Alert, FrameMessage, SchemaError, ScoreMessage

log = logging.getLogger(__name__)
S = 1_000_000_000
Status = Literal["preliminary", "final"]


@dataclass(frozen=True)
class EvidenceConfig:
    """The core's parameters (times in ns); :meth:`from_settings` converts the service settings."""

    bounds: RingBounds = RingBounds(max_frames=300, max_age_ns=30 * S, max_bytes=1 << 30, max_cameras=1000)
    before_ns: int = 3 * S
    after_ns: int = 3 * S
    max_alert_ns: int = 20 * S
    preliminary_ns: int = 1 * S
    grace_ns: int = 5 * S
    max_open_ns: int = 900 * S
    max_pending: int = 500
    crf: int = 26
    max_clip_bytes: int = 4 << 20
    fps_max: float = 30.0
    quality: int = 90
    alpha: float = 0.6
    floor: float = 0.35

    @classmethod
    def from_settings(cls, s: Any) -> EvidenceConfig:
        """From :class:`~vigil.services.evidence.settings.EvidenceSettings`."""
        bounds = RingBounds(s.ring_frames, int(s.ring_age_s * S), s.ring_bytes, s.max_cameras)
        return cls(bounds, int(s.before_s * S), int(s.after_s * S), int(s.max_alert_s * S), int(s.preliminary_after_s * S),
                   int(s.final_grace_s * S), int(s.max_open_s * S), s.max_pending, s.clip_crf, s.max_clip_bytes,
                   s.clip_fps_max, s.snapshot_quality, s.heat_alpha, s.heat_floor)  # fmt: skip


@dataclass
class Job:
    """An alert awaiting evidence: its latest change, the stream entries to acknowledge once it is final."""

    alert: Alert
    seen_ns: int
    entry_ids: list[str] = field(default_factory=list)
    preliminary_done: bool = False
    forced: str = ""
    """Why the job is finalised early (too many pending, shutdown), or empty."""
    snapshot_grade: tuple[int, int] = (-1, 0)
    """``(peak_seq, grade)`` of the snapshot written so far (grade: 1 a frame near the peak, 2 the peak frame,
    +1 with its error map); a later snapshot of the same peak that grades lower is not written over it."""


@dataclass(frozen=True)
class Evidence:
    """What is written for one alert (``snapshot`` / ``clip`` None when they could not be rendered)."""

    alert_id: str
    camera_id: str
    status: Status
    snapshot: bytes | None
    clip: bytes | None
    clip_mime: str
    first_seq: int | None
    last_seq: int | None
    frames: int
    problem: str
    created_ns: int
    encode_s: float
    entry_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertOutcome:
    """What :meth:`EvidenceCore.on_alert` did with an entry: ``tracked``, ``malformed`` (ack it now)."""

    result: Literal["tracked", "malformed"]
    alert_id: str | None = None


class EvidenceCore:
    """Rings, pending alerts and the rendering of their evidence (single-threaded)."""

    def __init__(self, config: EvidenceConfig, fmt: ClipFormat) -> None:
        self.config = config
        self.fmt = fmt
        self.rings = Rings(config.bounds)
        self.jobs: dict[str, Job] = {}
        self.counts: Counter[str] = Counter()
        """Events by kind: ``frames``, ``scores``, ``alerts_malformed``, ``undecodable``, ``forced``, ..."""

    # -- input ---------------------------------------------------------------------------------------
    def on_frame(self, value: bytes, now_ns: int) -> bool:
        """Decode a frames-topic record (the schema's own decoder) and keep it; False when refused (counted)."""
        try:
            msg = FrameMessage.decode(value)
        except SchemaError as exc:
            log.debug("undecodable frame record: %s", exc)
            self.rings.dropped["invalid"] += 1
            return False
        return self.rings.add_frame(msg, now_ns)

    def on_score(self, value: bytes, now_ns: int) -> bool:
        """Keep a score's error map (for the snapshot's overlay); False when it has none or does not decode."""
        try:
            msg = ScoreMessage.decode(value)
        except SchemaError:
            self.counts["scores_invalid"] += 1
            return False
        return self.rings.add_score(msg, now_ns)

    def on_alert(self, entry_id: str, fields: Mapping[Any, Any], now_ns: int) -> AlertOutcome:
        """Track an alert stream entry (field ``json``); a malformed one is counted and should be acknowledged."""
        raw = fields.get(b"json", fields.get("json"))
        try:
            alert = Alert.from_json(raw if isinstance(raw, bytes | str) else b"")
        except SchemaError as exc:
            log.warning("alert entry %s is malformed (no evidence): %s", entry_id, exc)
            self.counts["alerts_malformed"] += 1
            return AlertOutcome("malformed")
        job = self.jobs.get(alert.alert_id)
        if job is None:
            self._make_room()
            job = self.jobs[alert.alert_id] = Job(alert, now_ns)
        elif job.alert.camera_id != alert.camera_id:
            log.warning("alert %s: entry %s names camera %s, the alert's is %s; ignored", alert.alert_id, entry_id,
                        alert.camera_id, job.alert.camera_id)  # fmt: skip
            self.counts["alerts_conflicting"] += 1
            job.entry_ids.append(entry_id)
            return AlertOutcome("tracked", alert.alert_id)
        else:
            job.alert = alert
        job.entry_ids.append(entry_id)
        return AlertOutcome("tracked", alert.alert_id)

    def _make_room(self) -> None:
        pending = [j for j in self.jobs.values() if not j.forced]
        if len(pending) >= self.config.max_pending:
            oldest = min(pending, key=lambda j: j.seen_ns)
            oldest.forced = f"finalised early: more than {self.config.max_pending} alerts were pending"
            self.counts["forced"] += 1

    # -- scheduling ----------------------------------------------------------------------------------
    def due(self, now_ns: int) -> list[tuple[Job, Status]]:
        """The jobs whose preliminary or final evidence is due now."""
        out: list[tuple[Job, Status]] = []
        for job in self.jobs.values():
            if self._final_due(job, now_ns):
                out.append((job, "final"))
            elif not job.preliminary_done and now_ns - job.seen_ns >= self.config.preliminary_ns:
                out.append((job, "preliminary"))
        return out

    def _final_due(self, job: Job, now_ns: int) -> bool:
        a, c = job.alert, self.config
        if job.forced or now_ns - job.seen_ns >= c.max_open_ns or self._absurd(a, now_ns):
            return True
        if a.event != "close":
            return False
        until = max(a.start_ns, a.end_ns or a.start_ns) + c.after_ns
        ring = self.rings.get(a.camera_id)
        newest = ring.newest() if ring is not None else None
        return (newest is not None and newest.capture_ns >= until) or now_ns >= until + c.grace_ns

    def _absurd(self, a: Alert, now_ns: int) -> str:
        """Why the alert's times cannot be waited for (they lie beyond ``max_open_ns`` in this host's future), or ''."""
        latest = max(a.start_ns, a.end_ns or 0)
        if latest - now_ns > self.config.max_open_ns:
            return f"the alert's times lie {(latest - now_ns) // S}s in the future (clock skew or a hostile alert)"
        return ""

    def done(self, evidence: Evidence) -> None:
        """The evidence was written: a final one ends its job, a preliminary one marks it."""
        job = self.jobs.get(evidence.alert_id)
        if job is None:
            return
        if evidence.status == "final":
            del self.jobs[evidence.alert_id]
        else:
            job.preliminary_done = True

    def drop_job(self, alert_id: str) -> Job | None:
        """Forget a job (its evidence exists already); returns it."""
        return self.jobs.pop(alert_id, None)

    # -- rendering -----------------------------------------------------------------------------------
    def render(self, job: Job, status: Status, now_ns: int) -> Evidence:
        """Render a job's evidence from the frames in the ring (never raises for missing frames)."""
        a = job.alert
        problems = [p for p in (job.forced, self._absurd(a, now_ns)) if p]
        if status == "final" and a.event != "close":
            problems.append("alert not closed" + ("" if job.forced else f" within {self.config.max_open_ns // S}s"))
        ring = self.rings.get(a.camera_id)
        if ring is None or not ring.frames:
            problems.append(f"no frames of camera {a.camera_id} in the ring (unknown camera, or none for "
                            f"{self.config.bounds.max_age_ns // S}s)")  # fmt: skip
            return self._evidence(a, status, None, (None, None, 0, 0.0), problems, now_ns, job)
        started = time.perf_counter()
        peak = self._peak(ring, a, problems)
        snapshot = self._snapshot(ring, peak, a, problems) if peak is not None else None
        snapshot = self._keep_better(job, snapshot, self._grade(ring, peak, a, snapshot), problems)
        clip = self._clip(ring, a, peak, status, problems)
        return self._evidence(a, status, snapshot, (*clip, time.perf_counter() - started), problems, now_ns, job)

    @staticmethod
    def _grade(ring: CameraRing, peak: FrameMessage | None, a: Alert, snapshot: bytes | None) -> int:
        if snapshot is None or peak is None:
            return 0
        return (2 if peak.seq == a.peak_seq else 1) + (1 if ring.score_of(peak) is not None else 0)

    @staticmethod
    def _keep_better(job: Job, snapshot: bytes | None, grade: int, problems: list[str]) -> bytes | None:
        """None (the written snapshot stays) when one of the same peak with a better grade was written before."""
        seq, best = job.snapshot_grade
        if seq == job.alert.peak_seq and grade < best:
            problems.append("the earlier snapshot is kept (it shows the peak frame with more of its evidence)")
            return None
        if snapshot is not None:
            job.snapshot_grade = (job.alert.peak_seq, grade)
        return snapshot

    def _evidence(self, a: Alert, status: Status, snapshot: bytes | None, clip: tuple, problems: list[str],
                  now_ns: int, job: Job) -> Evidence:  # fmt: skip
        data, span, frames, seconds = clip
        first, last = span if span else (None, None)
        return Evidence(a.alert_id, a.camera_id, status, snapshot, data, self.fmt.mime if data else "", first, last,
                        frames, "; ".join(problems), now_ns, seconds, tuple(job.entry_ids))  # fmt: skip

    def _peak(self, ring: CameraRing, a: Alert, problems: list[str]) -> FrameMessage | None:
        """The frame at ``peak_seq`` captured during the alert, else the frame of the alert nearest to it."""
        lo, hi = self._span(ring, a)
        inside = ring.window(lo, hi) or ring.window(lo - self.config.before_ns, hi + self.config.after_ns)
        if not inside:
            problems.append("no frame of the alert's time in the ring (frames gone, or the alert's times are off)")
            return None
        if not a.start_seq <= a.peak_seq <= (a.end_seq if a.end_seq is not None else a.peak_seq):
            problems.append(f"peak_seq {a.peak_seq} lies outside the alert's frames")
        for f in inside:
            if f.seq == a.peak_seq:
                return f
        near = min(inside, key=lambda f: abs(f.seq - a.peak_seq))
        problems.append(f"peak frame {a.peak_seq} not in the ring; the snapshot shows frame {near.seq}")
        return near

    def _span(self, ring: CameraRing, a: Alert) -> tuple[int, int]:
        """The alert's capture-time span ``[start, end]`` (an open alert: until the newest frame)."""
        newest = ring.newest()
        end = a.end_ns if a.end_ns is not None else (newest.capture_ns if newest else a.start_ns)
        return a.start_ns, max(a.start_ns, end)

    def _snapshot(self, ring: CameraRing, peak: FrameMessage, a: Alert, problems: list[str]) -> bytes | None:
        score = ring.score_of(peak)
        heat = score.heatmap() if score is not None else None
        if heat is None:
            problems.append(f"no error map for frame {peak.seq} (the snapshot shows the box only)")
        try:
            pixels = peak.pixels()
        except SchemaError as exc:
            problems.append(f"peak frame {peak.seq} does not decode: {exc}")
            return None
        image = overlay(pixels, heat, a.box, alpha=self.config.alpha, floor=self.config.floor)
        return jpeg(image, self.config.quality)

    def _clip(self, ring: CameraRing, a: Alert, peak: FrameMessage | None, status: Status,
              problems: list[str]) -> tuple[bytes | None, tuple[int, int] | None, int]:  # fmt: skip
        lo, hi = self._clip_window(ring, a, peak)
        frames, images = self._decoded(ring.window(lo, hi), a, problems)
        if not frames:
            problems.append("no frame of the clip's window in the ring")
            return None, None, 0
        if status == "final" and frames[-1].capture_ns < hi - self._period(frames):
            problems.append(f"the after-window ends early (frames until seq {frames[-1].seq})")
        keep = next((i for i, f in enumerate(frames) if peak is not None and f.seq == peak.seq), 0)
        try:
            capped = encode_capped(images, self._fps(frames), self.fmt, self.config.crf, self.config.max_clip_bytes, keep)
        except ValueError as exc:
            problems.append(f"clip not written: {exc}")
            return None, None, 0
        if capped.last - capped.first + 1 < len(frames):
            problems.append(f"clip cut to {capped.last - capped.first + 1} of {len(frames)} frames (max_clip_bytes)")
        return capped.data, (frames[capped.first].seq, frames[capped.last].seq), capped.last - capped.first + 1

    def _clip_window(self, ring: CameraRing, a: Alert, peak: FrameMessage | None) -> tuple[int, int]:
        """``[start - before, end + after]``, the alert's part capped at ``max_alert_ns`` around its peak."""
        start, end = self._span(ring, a)
        cap = self.config.max_alert_ns
        if end - start > cap:
            centre = peak.capture_ns if peak is not None else start
            start = min(max(start, centre - cap // 2), end - cap)
            end = start + cap
        return start - self.config.before_ns, end + self.config.after_ns

    def _decoded(self, frames: list[FrameMessage], a: Alert,
                 problems: list[str]) -> tuple[list[FrameMessage], list[np.ndarray]]:  # fmt: skip
        """The frames that decode, as BGR images with the box drawn (others are counted and left out)."""
        kept, images = [], []
        for f in frames:
            try:
                images.append(draw_box(to_bgr(f.pixels()), a.box))
            except SchemaError:
                self.counts["undecodable"] += 1
                continue
            kept.append(f)
        if len(kept) < len(frames):
            problems.append(f"{len(frames) - len(kept)} frame(s) of the clip did not decode")
        if len({im.shape for im in images}) > 1:
            shape = images[-1].shape
            kept, images = zip(*[(f, im) for f, im in zip(kept, images, strict=True) if im.shape == shape], strict=True)
            problems.append("the camera's frame size changed during the clip; only the last size is shown")
        return list(kept), list(images)

    @staticmethod
    def _period(frames: list[FrameMessage]) -> int:
        gaps = [b.capture_ns - a.capture_ns for a, b in zip(frames, frames[1:], strict=False) if b.capture_ns > a.capture_ns]
        return int(statistics.median(gaps)) if gaps else S

    def _fps(self, frames: list[FrameMessage]) -> float:
        """The clip's frame rate: the frames' median capture interval, within [1, fps_max]."""
        return round(min(self.config.fps_max, max(1.0, S / self._period(frames))), 3)

    # -- upkeep --------------------------------------------------------------------------------------
    def flush(self, now_ns: int) -> list[tuple[Job, Status]]:
        """Every pending job, to be rendered final now (shutdown)."""
        for job in self.jobs.values():
            if not job.forced and job.alert.event != "close":
                job.forced = "finalised at shutdown while the alert was still open"
        return [(job, "final") for job in self.jobs.values()]

    def latest_frames(self, written: dict[str, int]) -> list[tuple[str, bytes]]:
        """JPEGs of the cameras whose newest frame changed since ``written`` (camera -> frames added), updated."""
        out = []
        for cam, ring in self.rings.latest():
            if written.get(cam) == ring.updated:
                continue
            written[cam] = ring.updated
            try:
                out.append((cam, jpeg(to_bgr(ring.frames[-1].pixels()), self.config.quality)))
            except SchemaError:
                self.counts["undecodable"] += 1
        for cam in [c for c in written if c not in self.rings.cameras]:
            del written[cam]
        return out
