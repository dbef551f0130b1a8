"""One camera's complete scorer state and the per-score step: order rule, the scoring core, outbox.

The scoring itself is :class:`vigil.model.alerting.CameraScoring`, the one implementation that
``vigil evaluate`` and the benchmarks also run. This module adds what only the live service needs: the
order rule, the switch to another model's calibration, the alert records, and the outbox of alert
changes that Redis has not confirmed yet.

The state is saved as versioned JSON (:meth:`ScorerState.dumps`; arrays as lists, snapshots base64),
never pickled: the bytes come back from a Kafka changelog, which anyone with write access to that topic
could forge. A state that does not parse, holds a non-finite number, or is too large is discarded (the
camera starts afresh from its calibration) and counted, never executed or trusted.

Order rule (per camera, on the sequence number ``seq`` and the capture time):
    * ``seq`` greater than the last processed one: processed (gaps are fine: dropped frames).
    * ``seq`` not greater but a *newer* capture time: the source restarted its numbering; processed.
    * otherwise (a repeat from an at-least-once worker, or a late out-of-order score): ignored and
      counted. Late scores are not re-ordered: alerts are about now, and the k-of-n window has moved on.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from vigil.model.alerting import CameraScoring, Mode, Observation, Status, ZoneMask
from vigil.model.baseline import Calibration
from vigil.model.events import Change
from vigil.shared.redis_keys import snapshot_key
from vigil.shared.schemas import Alert, ScoreMessage
from vigil.shared.scorer_params import EventParams, ScoringParams

log = logging.getLogger(__name__)

Admission = Literal["ok", "restart", "duplicate", "late"]
STATE_VERSION = 2
MAX_STATE_BYTES = 900_000
"""A saved state must fit one Kafka record (1 MiB by default) with room to spare; the outbox is trimmed to fit."""
Resolver = Callable[[str, str], Calibration | None]
"""``(camera_id, model_version) -> calibration or None`` (see :class:`vigil.services.scorer.calibrations.CalibrationBook`)."""


@dataclass(frozen=True)
class CameraParams:
    """Everything that configures one camera's scorer."""

    scoring: ScoringParams = field(default_factory=ScoringParams)
    events: EventParams = field(default_factory=EventParams)
    outbox_limit: int = 1000
    snapshots: bool = True
    zones: ZoneMask | None = None
    peak_maps: bool = False
    """Keep the peak frame's error map with an open event even without snapshots (the kind classifier's
    error-map-in-box features need it)."""


@dataclass(frozen=True)
class PendingAlert:
    """An alert change waiting for Redis; ``dedupe`` is unique per change and the same on replay."""

    alert: Alert
    dedupe: str
    snapshot_key: str | None = None
    snapshot_jpeg: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (the JPEG base64)."""
        jpeg = None if self.snapshot_jpeg is None else base64.b64encode(self.snapshot_jpeg).decode()
        return {"alert": self.alert.model_dump(mode="json"), "dedupe": self.dedupe, "snapshot_key": self.snapshot_key,
                "snapshot_jpeg": jpeg}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PendingAlert:
        """Inverse of :meth:`to_dict` (the alert is validated by its schema)."""
        jpeg = d.get("snapshot_jpeg")
        return cls(Alert.model_validate(d["alert"]), str(d["dedupe"]), d.get("snapshot_key"),
                   None if jpeg is None else base64.b64decode(jpeg, validate=True))


@dataclass(frozen=True)
class ScoreOutcome:
    """What one score did to the camera."""

    admission: Admission
    status: Status | None = None
    score: float | None = None
    threshold: float | None = None
    mode: Mode | None = None
    alerts: tuple[PendingAlert, ...] = ()
    peaks: tuple[dict[str, Any] | None, ...] = ()
    """The peak-frame evidence of each alert change (same order as ``alerts``; decode it with :func:`peak_map`).
    Only this transient outcome holds it, never the outbox: its memory is one map per change being annotated."""


@dataclass
class ScorerState:
    """Scoring core, sequence bookkeeping and unconfirmed alerts of one camera.

    Args:
        camera_id: The camera.
        params: Its parameters.
        resolve: Finds the camera's calibration for a model version (None: learn online).
    """

    camera_id: str
    params: CameraParams = field(default_factory=CameraParams)
    resolve: Resolver = field(default=lambda camera, version: None, repr=False)
    core: CameraScoring | None = None
    model: str | None = None
    last_seq: int | None = None
    last_capture_ns: int = 0
    outbox: deque[PendingAlert] = field(default_factory=deque)
    outbox_dropped: int = 0

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
        core = self._core_for(msg.model_id, msg.model_version)
        keep = self.params.snapshots or self.params.peak_maps
        evidence = (lambda: _evidence(msg)) if keep else None  # encoded only for frames above the threshold
        verdict = core.step(Observation.from_message(msg), evidence)
        pending = tuple(self._pending(c, msg, core.mode) for c in verdict.changes)
        for p in pending:
            self._enqueue(p)
        peaks = tuple(c.peak_heat if isinstance(c.peak_heat, dict) else None for c in verdict.changes)
        return ScoreOutcome(admission, verdict.status, verdict.score, verdict.threshold, core.mode, pending, peaks)

    def _core_for(self, model_id: str, model_version: str) -> CameraScoring:
        """The scoring core for this model version: a new model means a new calibration (its error scale differs)."""
        model = f"{model_id}:{model_version}"
        if self.core is not None and self.model == model:
            return self.core
        calibration = self.resolve(self.camera_id, model_version)
        if self.core is not None:
            log.warning("camera %s: scores now come from model %s (was %s); scoring %s", self.camera_id, model,
                        self.model, "from its calibration" if calibration else "after learning online")  # fmt: skip
        p = self.params
        self.core, self.model = CameraScoring(p.scoring, p.events, calibration, p.zones), model
        return self.core

    def _pending(self, c: Change, msg: ScoreMessage, mode: Mode) -> PendingAlert:
        alert_id = Alert.make_id(self.camera_id, c.start_seq, c.start_ns)
        peak = c.peak_heat if isinstance(c.peak_heat, dict) else {}
        box = tuple(float(v) for v in peak["box"]) if "box" in peak else None
        jpeg = _render(peak) if "heat" in peak and self.params.snapshots else None  # the peak so far: the key is overwritten as it grows
        skey = snapshot_key(alert_id) if jpeg is not None else None
        alert = Alert(
            alert_id=alert_id, camera_id=self.camera_id, event=c.kind, start_seq=c.start_seq, end_seq=c.end_seq,
            start_ns=c.start_ns, end_ns=c.end_ns, peak_score=_clip(c.peak_score), score=_clip(c.score),
            threshold=_clip(c.threshold), peak_seq=c.peak_seq, snapshot_key=skey, box=box,
            box_px=_pixels(box, msg), scoring_mode=mode, model_id=msg.model_id, model_version=msg.model_version,
            trigger_seq=msg.seq, trigger_capture_ns=msg.capture_ns,
        )  # fmt: skip
        log.info("camera %s: alert %s %s (peak %.2f, threshold %.2f)", self.camera_id, alert_id, c.kind, c.peak_score, c.threshold)
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
        """The state as versioned JSON bytes, at most :data:`MAX_STATE_BYTES` (older outbox entries first go,
        each counted in ``outbox_dropped``)."""
        while True:
            data = json.dumps(self._to_dict(), separators=(",", ":"), allow_nan=False).encode()
            if len(data) <= MAX_STATE_BYTES or not self.outbox:
                return data
            drop = max(1, len(self.outbox) // 4)
            for _ in range(drop):
                self.outbox.popleft()
            self.outbox_dropped += drop
            log.error("camera %s: state over %d bytes; dropped the %d oldest unconfirmed alert changes",
                      self.camera_id, MAX_STATE_BYTES, drop)  # fmt: skip

    def _to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION, "camera_id": self.camera_id, "model": self.model, "last_seq": self.last_seq,
            "last_capture_ns": self.last_capture_ns, "outbox_dropped": self.outbox_dropped,
            "outbox": [p.to_dict() for p in self.outbox], "core": None if self.core is None else self.core.to_dict(),
        }  # fmt: skip

    @classmethod
    def loads(cls, data: bytes, camera_id: str, params: CameraParams, resolve: Resolver) -> ScorerState:
        """Restore a state saved by :meth:`dumps`, with today's ``params``.

        Raises:
            ValueError: The bytes are not a state of this version for this camera (the caller starts afresh).
        """
        if len(data) > 2 * MAX_STATE_BYTES:
            raise ValueError(f"state of {len(data)} bytes exceeds the limit")
        d = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        if not isinstance(d, dict) or d.get("version") != STATE_VERSION or d.get("camera_id") != camera_id:
            raise ValueError(f"not a version-{STATE_VERSION} scorer state of camera {camera_id}")
        st = cls(camera_id, params, resolve)
        st.last_seq = None if d["last_seq"] is None else _bounded_int(d["last_seq"])
        st.last_capture_ns, st.outbox_dropped = _bounded_int(d["last_capture_ns"]), _bounded_int(d["outbox_dropped"])
        st.outbox.extend(PendingAlert.from_dict(p) for p in d["outbox"][-params.outbox_limit:])
        if d["core"] is not None and isinstance(d["model"], str) and ":" in d["model"]:
            st.model = d["model"]
            calibration = resolve(camera_id, st.model.rsplit(":", 1)[1])
            st.core = CameraScoring.from_dict(d["core"], params.scoring, params.events, calibration, params.zones)
        return st


def _reject_constant(name: str) -> float:
    raise ValueError(f"a scorer state holds the non-finite number {name}")


def _bounded_int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**63:
        raise ValueError(f"a scorer state holds an invalid integer: {v!r}")
    return v


def _clip(v: float) -> float:
    """A score for the alert record (bounded by its schema)."""
    return float(min(max(v, -1e6), 1e6)) if v == v else 0.0


def _pixels(box: tuple[float, ...] | None, msg: ScoreMessage) -> tuple[int, int, int, int] | None:
    if box is None or not (msg.frame_width and msg.frame_height):
        return None
    w, h = msg.frame_width, msg.frame_height
    return (round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h))


def _evidence(msg: ScoreMessage) -> dict[str, Any] | None:
    """The error map to render a snapshot from, should this frame become an event's peak (JSON-ready)."""
    if not msg.payload:
        return None
    n = msg.heatmap_height * msg.heatmap_width
    return {"heat": [msg.heatmap_height, msg.heatmap_width, msg.heatmap_scale, msg.heatmap_encoding,
                     base64.b64encode(msg.payload[:n]).decode()]}


def peak_map(peak: dict[str, Any] | None) -> np.ndarray | None:
    """The float32 ``(h, w)`` error map of an event's peak frame (kept by :func:`_evidence`), or None.

    Example:
        >>> data, scale = ScoreMessage.quantize_heatmap(np.array([[0.0, 2.0], [1.0, 4.0]]))
        >>> float(peak_map({"box": [0, 0, 1, 1], "heat": [2, 2, scale, "linear", base64.b64encode(data).decode()]}).max())
        4.0
        >>> peak_map({"box": [0, 0, 1, 1]}) is None, peak_map({"heat": [2, 2, 1.0, "linear", "!!"]}) is None
        (True, True)
    """
    if not peak or "heat" not in peak:
        return None
    try:
        h, w, scale, encoding, payload = peak["heat"]
        data = base64.b64decode(payload, validate=True)
        hm = ScoreMessage.dequantize(data, (int(h), int(w)), float(scale), str(encoding))
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("peak error map unreadable: %s", exc)
        return None
    return np.asarray(hm, np.float32)


def _render(peak: dict[str, Any]) -> bytes | None:
    from vigil.services.scorer.snapshot import render_snapshot

    hm = peak_map(peak)
    if hm is None:
        return None
    try:
        return render_snapshot(hm, box=peak.get("box"))
    except ValueError as exc:
        log.warning("snapshot not rendered: %s", exc)
        return None
