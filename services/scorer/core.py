"""The scorer's processing core, independent of Faust: records in, camera states and Redis writes out.

:class:`ScorerCore` takes batches of raw Kafka records (key, value, where they came from), decodes them
(malformed ones go to the dead-letter topic), steps each camera's :class:`ScorerState`, writes alerts
and camera hashes to Redis through :class:`RedisSink`, and then saves the touched states through the
``save`` callback (the Faust table in production, a dict in tests). Redis is written *before* the state
is saved, so a crash in between replays the scores; the dedupe marks in Redis and the order rule drop
the repeats.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from vigil.model.baseline import Calibration
from vigil.services.scorer import metrics
from vigil.services.scorer.kinds import KindBook
from vigil.services.scorer.settings import ScorerSettings
from vigil.services.scorer.sink import RedisSink
from vigil.services.scorer.state import ScoreOutcome, ScorerState, peak_map
from vigil.services.scorer.timeline import Timeline, TimelinePoint
from vigil.shared.kafka import KafkaRecord
from vigil.shared.schemas import Alert, DeadLetter, SchemaError, ScoreMessage

log = logging.getLogger(__name__)



class ScorerCore:
    """Per-camera states, kept in memory and saved after every batch.

    Args:
        settings: Scorer settings (per-camera parameters, limits).
        sink: Redis writer.
        load: Returns a camera's saved state (JSON bytes of a :class:`~vigil.services.scorer.state.ScorerState`,
            never unpickled), or None for a new camera.
        save: Stores a camera's state (JSON bytes).
        dead_letter: Sends a dead letter (async), with the original key.
        kinds: The online kind classifier (None: alerts carry no kind).
    """

    def __init__(
        self, settings: ScorerSettings, sink: RedisSink, load: Callable[[str], bytes | None],
        save: Callable[[str, bytes], None], dead_letter: Callable[[DeadLetter, bytes | None], Awaitable[Any]],
        kinds: KindBook | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.sink = sink
        self.load = load
        self.save = save
        self.dead_letter = dead_letter
        self.book = settings.calibration_book()
        self.states: dict[str, ScorerState] = {}
        self._seen: dict[str, float] = {}
        self._last_sweep = time.monotonic()
        self._known_ids: set[str] | None = None
        self.timeline = Timeline(settings.timeline_interval_s)
        self.kinds = kinds

    def forget(self) -> None:
        """Drop the in-memory cache (partitions were revoked; states are reloaded from the table)."""
        for cam in self.states:
            metrics.forget_camera(cam)  # the camera may now be scored by another scorer
        self.states.clear()

    def _resolve(self, camera_id: str, model_version: str) -> Calibration | None:
        return self.book.lookup(camera_id, model_version).calibration

    def state(self, camera_id: str) -> ScorerState:
        """The camera's state: cached, restored from the table, or new."""
        st = self.states.get(camera_id)
        if st is None:
            st = self._restore(camera_id, self.load(camera_id))
            self.states[camera_id] = st
        return st

    def _restore(self, camera_id: str, data: bytes | None) -> ScorerState:
        params = self.settings.camera_params(camera_id)
        if data is not None:
            try:
                st = ScorerState.loads(data, camera_id, params, self._resolve)
                log.info("camera %s: restored scorer state (last seq %s, %d alert changes pending)", camera_id,
                         st.last_seq, len(st.outbox))  # fmt: skip
                return st
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                metrics.STATE_DISCARDED.inc()
                log.error("camera %s: saved scorer state discarded (%s); it starts afresh from its calibration",
                          camera_id, str(exc)[:200])  # fmt: skip
        log.info("camera %s: new scorer state", camera_id)
        return ScorerState(camera_id, params, self._resolve)

    def adopt(self, saved: Iterable[tuple[str, bytes]]) -> int:
        """Load every saved state that still holds unconfirmed alert changes (start-up, after a rebalance), so
        that a camera that has gone quiet still gets its alerts out; returns how many were adopted."""
        adopted = 0
        for camera_id, data in saved:
            if camera_id in self.states or data is None:
                continue
            st = self._restore(camera_id, data)
            if st.outbox:
                self.states[camera_id] = st
                adopted += 1
        if adopted:
            log.info("%d camera(s) had unconfirmed alert changes in their saved state; publishing them", adopted)
        return adopted

    async def handle(self, records: Sequence[KafkaRecord]) -> None:
        """Process one batch: decode, step, write Redis, save states."""
        t0 = time.perf_counter()
        touched: dict[str, ScorerState] = {}
        hashes: dict[str, dict[str, Any]] = {}
        points: dict[str, list[TimelinePoint]] = {}
        if self.kinds is not None:
            await self.kinds.refresh()
        for rec in records:
            msg = await self._decode(rec)
            if msg is None:
                continue
            try:
                st = self.state(msg.camera_id)
                result = st.step(msg)
            except Exception as exc:  # noqa: BLE001 - one bad record costs one record, never the batch
                log.exception("camera %s: score %d could not be processed; dead-lettered", msg.camera_id, msg.seq)
                await self._reject(rec, f"processing failed: {type(exc).__name__}: {exc}", msg.camera_id)
                continue
            metrics.SCORES.labels(result.admission).inc()
            touched[msg.camera_id] = st
            self._classify(st, msg, result)
            if result.status is not None:
                hashes[msg.camera_id] = _hash_fields(st, msg, result)
            if result.score is not None and result.threshold is not None:
                point = self.timeline.add(msg.camera_id, msg.capture_ns, result.score, result.threshold)
                if point is not None:
                    points.setdefault(msg.camera_id, []).append(point)
                metrics.observe_camera(msg.camera_id, result.score, result.threshold, msg.capture_ns)
        _observe_levels(touched, hashes)
        await self.flush(hashes, points)
        if self.kinds is not None:
            await self.kinds.store_features()
        for cam, st in touched.items():
            self.save(cam, st.dumps())
        self._evict_idle(touched)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - t0)
        metrics.CAMERAS.set(len(self.states))

    def _classify(self, st: ScorerState, msg: ScoreMessage, result: ScoreOutcome) -> None:
        """Remember the frame's score for alert features and give the camera's new alert changes their kind."""
        if self.kinds is None:
            return
        if result.score is not None:
            self.kinds.observe(msg.camera_id, msg.seq, result.score, msg.features.motion_max)
        for p, peak in zip(result.alerts, result.peaks, strict=True):
            annotated = self.kinds.annotate(p, peak_map(peak))
            for i in range(len(st.outbox) - 1, -1, -1):  # the new changes are at the end
                if st.outbox[i] is p:
                    st.outbox[i] = annotated
                    break

    def _evict_idle(self, touched: dict[str, ScorerState]) -> None:
        """Drop from memory the cameras idle for ``idle_evict_s`` (their state stays in the table)."""
        now = time.monotonic()
        for cam in touched:
            self._seen[cam] = now
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        idle = [c for c, t in self._seen.items()
                if now - t > self.settings.idle_evict_s and not (c in self.states and self.states[c].outbox)]
        for cam in idle:
            self.states.pop(cam, None)
            self._seen.pop(cam, None)
            self.timeline.forget(cam)
            metrics.forget_camera(cam)
            if self.kinds is not None:
                self.kinds.forget(cam)
        if idle:
            log.info("%d idle camera(s) dropped from memory (kept in the state table)", len(idle))

    async def flush(self, hashes: dict[str, dict[str, Any]] | None = None,
                    points: dict[str, list[TimelinePoint]] | None = None) -> bool:
        """Write pending alerts of every cached camera (and ``hashes``, timeline ``points``) to Redis; False if
        Redis is down (hashes and timeline points of that batch are then skipped: they are history, not alerts)."""
        pending = [st for st in self.states.values() if st.outbox]
        ok = await self.sink.write(pending, hashes or {}, points or {})
        metrics.OUTBOX.set(sum(len(st.outbox) for st in self.states.values()))
        metrics.OUTBOX_DROPS.observe(self.states)
        return ok

    async def _decode(self, rec: KafkaRecord) -> ScoreMessage | None:
        try:
            msg = ScoreMessage.decode(rec.value)
            if rec.key is not None and rec.key != msg.camera_id.encode():
                raise SchemaError(f"record key {rec.key[:64]!r} does not match camera_id {msg.camera_id!r}")
            self._admissible(msg)
        except SchemaError as exc:
            cam = rec.key.decode("utf-8", "replace")[:256] if rec.key else None
            await self._reject(rec, exc, cam)
            return None
        return msg

    def _admissible(self, msg: ScoreMessage) -> None:
        """Refuse a capture time far in the future (it would make every later score of the camera "late"), an
        unknown camera when only known ones are allowed, and a new camera beyond ``max_cameras``."""
        ahead_s = (msg.capture_ns - time.time_ns()) / 1e9
        if ahead_s > self.settings.max_future_s:
            raise SchemaError(f"capture time {ahead_s:.0f} s in the future (limit {self.settings.max_future_s:.0f} s): "
                              "a wrong clock at ingest; fix its time sync")  # fmt: skip
        known = self._known()
        if known is not None and msg.camera_id not in known:
            raise SchemaError(f"camera {msg.camera_id!r} is not in the cameras file and VIGIL_SCORER_KNOWN_CAMERAS_ONLY is set")
        if msg.camera_id not in self.states and len(self.states) >= self.settings.max_cameras:
            raise SchemaError(f"{len(self.states)} cameras in memory, the limit (VIGIL_SCORER_MAX_CAMERAS); "
                              f"camera {msg.camera_id!r} refused")  # fmt: skip

    def _known(self) -> set[str] | None:
        if not self.settings.known_cameras_only:
            return None
        if self._known_ids is None:
            from vigil.shared.cameras import load_cameras

            file = self.settings.cameras.file
            self._known_ids = set() if file is None else {c.id for c in load_cameras(file, sources=False).cameras}
        return self._known_ids

    async def _reject(self, rec: KafkaRecord, error: str | Exception, camera_id: str | None) -> None:
        metrics.DLQ.inc()
        letter = DeadLetter.for_record(
            source_topic=rec.topic, partition=rec.partition, offset=rec.offset, service="scorer",
            error=error, original=rec.value, camera_id=camera_id,
        )  # fmt: skip
        log.warning("camera %s: score at %s[%d]@%d dead-lettered: %s", camera_id, rec.topic, rec.partition, rec.offset,
                    letter.error)  # fmt: skip
        await self.dead_letter(letter, rec.key)


def _observe_levels(touched: dict[str, ScorerState], hashes: dict[str, dict[str, Any]]) -> None:
    """The level each camera of the batch follows (its core's gain per map), once per batch rather than per
    frame: into its camera hash (``level``, which `vigil cameras status` prints) and its gauges."""
    for cam, st in touched.items():
        if st.core is None:
            continue
        metrics.observe_level(cam, st.core.gain)
        if cam in hashes:
            hashes[cam]["level"] = ",".join(f"{k}:{v:+.4f}" for k, v in sorted(st.core.gain.items()))


def _hash_fields(st: ScorerState, msg: ScoreMessage, r: ScoreOutcome) -> dict[str, Any]:
    open_seq = st.core.events.open_start_seq if st.core is not None else None
    event = st.core.events.event if st.core is not None else None
    return {
        "status": r.status or "",
        "scoring_mode": r.mode or "",
        "score": "" if r.score is None else f"{r.score:.4f}",
        "threshold": "" if r.threshold is None else f"{r.threshold:.4f}",
        "last_seq": msg.seq,
        "last_frame_ns": msg.capture_ns,
        "last_frame_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(min(msg.capture_ns / 1e9, 253402300799))),
        "alert_id": "" if open_seq is None or event is None else Alert.make_id(st.camera_id, open_seq, event.start_ns),
        "model": f"{msg.model_id}:{msg.model_version}",
        "outbox": len(st.outbox),
        "updated_ns": time.time_ns(),
    }
