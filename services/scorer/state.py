"""One camera's complete scorer state and the per-score step: order rule, scoring, events, outbox.

Everything a camera needs survives a restart by pickling one :class:`ScorerState` (river objects
included) into the Faust table. Alerts wait in the state's ``outbox`` until Redis confirms them, so
alerts raised while Redis is down are neither lost on a restart nor published twice (each change has a
deterministic dedupe field, checked atomically in Redis).

Order rule (per camera, on the sequence number ``seq`` and the capture time):
    * ``seq`` greater than the last processed one: processed (gaps are fine: dropped frames).
    * ``seq`` not greater but a *newer* capture time: the source restarted its numbering; processed.
    * otherwise (a repeat from an at-least-once worker, or a late out-of-order score): ignored and
      counted. Late scores are not re-ordered: alerts are about now, and the k-of-n window has moved on.
"""

from __future__ import annotations

import logging
import pickle
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vigil.services.scorer.events import Change, EventTracker, Frame
from vigil.services.scorer.scoring import FEATURES, CameraScorer
from vigil.shared.redis_keys import snapshot_key
from vigil.shared.schemas import Alert, ScoreMessage
from vigil.shared.scorer_params import EventParams, ScoringParams

log = logging.getLogger(__name__)

Admission = Literal["ok", "restart", "duplicate", "late"]
Status = Literal["warmup", "grace", "normal", "alert"]


@dataclass(frozen=True)
class CameraParams:
    """Everything that configures one camera's scorer."""

    scoring: ScoringParams = field(default_factory=ScoringParams)
    events: EventParams = field(default_factory=EventParams)
    outbox_limit: int = 1000
    snapshots: bool = True


@dataclass(frozen=True)
class PendingAlert:
    """An alert change waiting for Redis; ``dedupe`` is unique per change and the same on replay."""

    alert: Alert
    dedupe: str
    snapshot_key: str | None = None
    snapshot_jpeg: bytes | None = None


@dataclass(frozen=True)
class ScoreOutcome:
    """What one score did to the camera."""

    admission: Admission
    status: Status | None = None
    score: float = 0.0
    z: float | None = None
    threshold: float | None = None
    alerts: tuple[PendingAlert, ...] = ()


@dataclass
class ScorerState:
    """Scorer, event tracker, sequence bookkeeping and unconfirmed alerts of one camera."""

    camera_id: str
    params: CameraParams = field(default_factory=CameraParams)
    scorer: CameraScorer = field(init=False)
    tracker: EventTracker = field(init=False)
    last_seq: int | None = None
    last_capture_ns: int = 0
    outbox: deque[PendingAlert] = field(default_factory=deque)
    outbox_dropped: int = 0
    model: str | None = None

    def __post_init__(self) -> None:
        self.scorer = CameraScorer(self.params.scoring)
        self.tracker = EventTracker(self.params.events)

    def admit(self, seq: int, capture_ns: int) -> Admission:
        """Apply the order rule to a score's (seq, capture time) and remember it when accepted."""
        if self.last_seq is None or seq > self.last_seq:
            verdict: Admission = "ok"
        elif capture_ns > self.last_capture_ns:
            verdict = "restart"
            log.warning("camera %s: sequence restarted (%d after %d, newer capture time)", self.camera_id, seq, self.last_seq)
        else:
            return "duplicate" if seq == self.last_seq else "late"
        self.last_seq, self.last_capture_ns = seq, max(capture_ns, self.last_capture_ns)
        return verdict

    def step(self, msg: ScoreMessage) -> ScoreOutcome:
        """Process one score message; new alert changes are also appended to the outbox."""
        admission = self.admit(msg.seq, msg.capture_ns)
        if admission in ("duplicate", "late"):
            return ScoreOutcome(admission)
        self._follow_model(f"{msg.model_id}:{msg.model_version}")
        x = {f: getattr(msg.features, f) for f in FEATURES}
        if msg.warmup:
            return ScoreOutcome(admission, "warmup", alerts=self._track(msg, 0.0, False, 1.0))
        if not self.scorer.ready:
            self.scorer.update(x)
            return ScoreOutcome(admission, "grace")
        score, threshold = self.scorer.score(x), self.scorer.threshold
        assert threshold is not None  # ready implies a threshold
        above = self.scorer.classify(score)
        z = self.scorer.z(x)
        alerts = self._track(msg, score, above, threshold)
        self.scorer.update(x, score, hold=self.tracker.event is not None)
        status: Status = "alert" if self.tracker.open_start_seq is not None else "normal"
        return ScoreOutcome(admission, status, score, z, threshold, alerts)

    def _follow_model(self, model: str) -> None:
        """Relearn the normal level when the scores come from another model (its error scale differs)."""
        if self.model == model:
            return
        if self.model is not None:
            log.warning("camera %s: scores now come from model %s (was %s); relearning the normal level "
                        "(no alerts for %d frames)", self.camera_id, model, self.model,
                        self.params.scoring.grace_frames)  # fmt: skip
            self.scorer = CameraScorer(self.params.scoring)
        self.model = model

    def _track(self, msg: ScoreMessage, score: float, above: bool, threshold: float) -> tuple[PendingAlert, ...]:
        if msg.warmup and self.tracker.event is None:
            return ()
        heat = _heat(msg) if above and self.params.snapshots else None
        changes = self.tracker.step(Frame(msg.seq, msg.capture_ns, score, above, threshold, heat))
        pending = tuple(self._pending(c, msg) for c in changes)
        for p in pending:
            self._enqueue(p)
        return pending

    def _pending(self, c: Change, msg: ScoreMessage) -> PendingAlert:
        alert_id = Alert.make_id(self.camera_id, c.start_seq)
        jpeg = _render(c.peak_heat) if c.peak_heat is not None else None
        skey = snapshot_key(alert_id) if jpeg is not None else None
        alert = Alert(
            alert_id=alert_id, camera_id=self.camera_id, event=c.kind, start_seq=c.start_seq, end_seq=c.end_seq,
            start_ns=c.start_ns, end_ns=c.end_ns, peak_score=c.peak_score, score=c.score, threshold=c.threshold,
            peak_seq=c.peak_seq, snapshot_key=skey, model_id=msg.model_id, model_version=msg.model_version,
            trigger_seq=msg.seq, trigger_capture_ns=msg.capture_ns,
        )  # fmt: skip
        log.info("camera %s: alert %s %s (peak %.4f, threshold %.4f)", self.camera_id, alert_id, c.kind, c.peak_score, c.threshold)
        return PendingAlert(alert, f"{c.kind}:{c.n_update}", skey, jpeg)

    def _enqueue(self, p: PendingAlert) -> None:
        self.outbox.append(p)
        while len(self.outbox) > self.params.outbox_limit:
            self.outbox.popleft()
            self.outbox_dropped += 1
            log.error("camera %s: alert outbox full (%d), dropped the oldest change", self.camera_id, self.params.outbox_limit)

    def confirm(self, n: int) -> None:
        """Drop the first ``n`` outbox entries (Redis has them)."""
        for _ in range(min(n, len(self.outbox))):
            self.outbox.popleft()

    def dumps(self) -> bytes:
        """Pickle the whole state (for the Faust table)."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: bytes) -> ScorerState:
        """Inverse of :meth:`dumps`."""
        state = pickle.loads(data)
        if not isinstance(state, ScorerState):
            raise TypeError(f"expected a pickled ScorerState. Received: {type(state).__name__}")
        return state


def _heat(msg: ScoreMessage) -> tuple[int, int, float, bytes] | None:
    if not msg.payload:
        return None
    return msg.heatmap_height, msg.heatmap_width, msg.heatmap_scale, msg.payload


def _render(heat: object) -> bytes | None:
    from vigil.services.scorer.snapshot import render_snapshot

    h, w, scale, payload = heat  # type: ignore[misc]
    hm = np.frombuffer(payload, np.uint8).reshape(h, w).astype(np.float32) * (scale / 255.0)
    return render_snapshot(hm)
