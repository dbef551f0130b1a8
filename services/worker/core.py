"""The worker's processing of one batch of raw Kafka records, with no Kafka in sight.

``WorkerEngine.process`` decodes the records, sends undecodable or mis-sized ones to dead letters,
skips frames older than the staleness bound, cuts the rest into batched steps
(:mod:`vigil.services.worker.batching`), gathers each camera's state into the step, scatters the new
states back (:mod:`vigil.services.worker.state`) and builds one :class:`ScoreMessage` per stepped
frame. The Faust app (:mod:`vigil.services.worker.transport`) only moves bytes in and out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vigil.model.messages import FrameRef, score_message
from vigil.model.replay import model_warmup
from vigil.services.worker.batching import plan_steps
from vigil.services.worker.guards import SkewTracker
from vigil.services.worker.registry import ModelRegistry, ModelSlot, StepOutputLike
from vigil.services.worker.state import StreamState, StreamStateStore
from vigil.shared.kafka import KafkaRecord
from vigil.shared.schemas import MAX_RECORD_BYTES, DeadLetter, FrameMessage, SchemaError, ScoreMessage

log = logging.getLogger(__name__)

SERVICE = "worker"
MAX_DLQ_KEY_BYTES = 256
"""A dead letter keeps at most this much of the original key (camera ids are at most 64 characters)."""


@dataclass(frozen=True)
class Output:
    """One record to produce: ``partition`` None lets the producer choose by key."""

    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass(frozen=True)
class EngineConfig:
    """Processing options of :class:`WorkerEngine`.

    Attributes:
        staleness_s: Frames older than this (capture time to now) are skipped; 0 = never.
        heatmap: Attach the quantised heat map to each score.
        max_step: Largest batched model step (None = the whole wave).
        max_future_skew_s: A frame captured more than this ahead of the worker's clock is dead-lettered; 0 = off.
        allowed_cameras: When not empty, only these camera ids are scored; others are dead-lettered.
        max_cameras: Most cameras with a state; frames of a new camera beyond it are dead-lettered.
        idle_evict_s: A camera with no frame for this long loses its state (0 = never).
        session_stick_s: While a camera's newest session sent a frame this recently, frames of an older session
            (a second ingest publishing the camera) are skipped instead of resetting the state; 0 = off.
    """

    staleness_s: float = 0.0
    heatmap: bool = True
    max_step: int | None = None
    max_future_skew_s: float = 86_400.0
    allowed_cameras: frozenset[str] = frozenset()
    max_cameras: int = 10_000
    idle_evict_s: float = 600.0
    session_stick_s: float = 10.0


@dataclass
class Skipped:
    """Frames of one camera skipped for one reason in a batch: how many and which."""

    partition: int
    first_offset: int
    first_seq: int
    last_seq: int
    count: int = 0


@dataclass
class BatchResult:
    """What one batch produced, plus counts for the metrics."""

    scores: list[Output] = field(default_factory=list)
    dead_letters: list[Output] = field(default_factory=list)
    stale: Counter[str] = field(default_factory=Counter)
    skipped: dict[tuple[str, str], Skipped] = field(default_factory=dict)  # (reason, camera) -> frames
    refused: Counter[str] = field(default_factory=Counter)  # dead letters by reason (not_allowed, ...)
    conflicts: dict[str, tuple[int, int]] = field(default_factory=dict)  # camera -> (kept, skipped) session
    errors: int = 0  # records / frames dead-lettered after an unexpected error
    evicted: list[str] = field(default_factory=list)
    step_sizes: list[int] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    warmup: int = 0
    replayed: int = 0

    def skip(self, reason: str, record: KafkaRecord, msg: FrameMessage) -> None:
        """Count one skipped frame (no score, no dead letter of its own)."""
        key = (reason, msg.camera_id)
        entry = self.skipped.setdefault(key, Skipped(record.partition, record.offset, msg.seq, msg.seq))
        entry.count += 1
        entry.last_seq = msg.seq


class RefusedFrameError(Exception):
    """A well-formed frame the worker will not score (``reason`` names the counter); the text says why."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


@dataclass(frozen=True)
class _Frame:
    record: KafkaRecord
    msg: FrameMessage
    pixels: np.ndarray
    model_key: str


class WorkerEngine:
    """Batched, stateful scoring of frames; thread-safe (one batch at a time).

    Args:
        models: The models to serve.
        store: Per-camera states.
        config: Processing options.
    """

    def __init__(self, models: ModelRegistry, store: StreamStateStore, config: EngineConfig) -> None:
        self.models = models
        self.store = store
        self.config = config
        self.skew = SkewTracker(max_cameras=min(config.max_cameras, 10_000))
        self.max_record_bytes = MAX_RECORD_BYTES
        self._lock = threading.Lock()
        self._offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset processed
        self._batch_new: set[str] = set()  # cameras admitted in this batch without a state yet
        self._next_evict = 0.0

    def process(self, records: Sequence[KafkaRecord], received_ns: int | None = None) -> BatchResult:
        """Process one batch of frame records taken from Kafka, in their order.

        A record that fails in any way costs that record only (a dead letter); the rest of the batch goes on.
        """
        received_ns = received_ns or time.time_ns()
        result = BatchResult()
        with self._lock:
            result.evicted = self._evict_idle()
            self._batch_new = set()
            slots = {s.key: s for s in self.models.slots()}
            frames = self._decode_all(self._skip_replayed(records, result), slots, result, received_ns)
            frames = self._one_session(frames, result)
            steps = plan_steps([f.msg.camera_id for f in frames], [f.model_key for f in frames], self.config.max_step)
            for step in steps:
                self._step(slots[step.model_key], [frames[p] for p in step.positions], result, received_ns)
        return result

    def drop_partitions(self, partitions: Iterable[int]) -> list[str]:
        """Forget the cameras and offsets of partitions that left this worker (waits for a running batch)."""
        gone = set(partitions)
        with self._lock:
            self._offsets = {tp: off for tp, off in self._offsets.items() if tp[1] not in gone}
            return self.store.drop_partitions(gone)

    def last_offsets(self) -> dict[int, int]:
        """Partition -> last frame offset processed (for the consumer-lag metric)."""
        return {p: off for (_t, p), off in dict(self._offsets).items()}

    def reset_all(self) -> None:
        """Forget every camera's state (waits for a running batch)."""
        with self._lock:
            self.store.clear()
            self._offsets.clear()

    def _evict_idle(self) -> list[str]:
        """Forget idle cameras, at most every tenth of ``idle_evict_s`` (the walk is over every camera)."""
        idle_s = self.config.idle_evict_s
        now = time.monotonic()
        if not idle_s or now < self._next_evict:
            return []
        self._next_evict = now + max(1.0, idle_s / 10)
        return self.store.evict_idle(idle_s, now)

    # ---------------------------------------------------------------------------------------------
    def _skip_replayed(self, records: Sequence[KafkaRecord], result: BatchResult) -> list[KafkaRecord]:
        """Drop records at or below the last offset this worker processed on a partition it kept.

        Kafka replays from the last committed offset after a rebalance, also on partitions that stay;
        their scores were produced (and acknowledged by Kafka) already, so stepping them again would
        both duplicate the scores and rewind the camera's state.
        """
        fresh = []
        for rec in records:
            tp = (rec.topic, rec.partition)
            if rec.offset <= self._offsets.get(tp, -1):
                result.replayed += 1
                continue
            self._offsets[tp] = rec.offset
            fresh.append(rec)
        if result.replayed:
            log.info("skipped %d replayed records already scored by this worker", result.replayed)
        return fresh

    # ---------------------------------------------------------------------------------------------
    def _decode_all(self, records: Sequence[KafkaRecord], slots: dict[str, ModelSlot], result: BatchResult,
                    received_ns: int) -> list[_Frame]:  # fmt: skip
        frames = [f for rec in records if (f := self._decode(rec, slots, result, received_ns)) is not None]
        return self._fresh(frames, result)

    def _fresh(self, frames: list[_Frame], result: BatchResult) -> list[_Frame]:
        """Drop (and count) frames older than the staleness bound now.

        Checked when the batch arrives and again before every step, since the waves of one big
        batch (a camera's backlog) run one after another and the last ones can turn stale meanwhile.
        """
        if not self.config.staleness_s:
            return frames
        now = time.time_ns()
        fresh = []
        for f in frames:
            age_s = (now - f.msg.capture_ns) / 1e9
            if age_s > self.config.staleness_s:
                result.stale[f.msg.camera_id] += 1
                result.skip("stale", f.record, f.msg)
            else:
                fresh.append(f)
        return fresh

    def _one_session(self, frames: list[_Frame], result: BatchResult) -> list[_Frame]:
        """Skip frames of a camera's older session while its newest session is live (two ingests, one camera).

        Sessions only grow (ingest numbers them from its start time), so a frame of a lower session than the
        one the camera's state follows comes from a second, older ingest process: stepping it would reset the
        state on every frame. It is skipped (reason ``superseded``) and the conflict reported; when the newest
        session has sent nothing for ``session_stick_s``, the older one is followed again (state reset).
        """
        stick_s = self.config.session_stick_s
        if not stick_s:
            return frames
        now = time.monotonic()
        newest: dict[str, int] = {}
        kept = []
        for f in frames:
            cam, session = f.msg.camera_id, f.msg.session
            best = newest.get(cam)
            if best is None:
                st = self.store.get(cam)
                best = st.session if st is not None and now - st.last_seen <= stick_s else session
            if session < best:
                result.skip("superseded", f.record, f.msg)
                result.conflicts[cam] = (best, session)
                continue
            newest[cam] = session
            kept.append(f)
        return kept

    def _decode(self, rec: KafkaRecord, slots: dict[str, ModelSlot], result: BatchResult,
                received_ns: int) -> _Frame | None:  # fmt: skip
        camera_id = None
        try:
            msg = FrameMessage.decode(rec.value)
            camera_id = msg.camera_id
            self._check_time(msg, received_ns)
            self._admit(msg.camera_id)
            self.skew.observe(msg.camera_id, received_ns - msg.capture_ns)
            pixels = msg.pixels()
            key = self.models.key_for(msg.camera_id)
            want = tuple(slots[key].predictor.input_shape)
        except SchemaError as exc:
            self._dead_letter(rec, exc, camera_id, result)
            return None
        except RefusedFrameError as exc:
            result.refused[exc.reason] += 1
            self._dead_letter(rec, str(exc), camera_id, result)
            return None
        except Exception as exc:  # noqa: BLE001 - one record's failure costs that record, never the batch
            log.exception("camera %s: record %s[%d]@%d failed unexpectedly", camera_id, rec.topic, rec.partition,
                          rec.offset)  # fmt: skip
            result.errors += 1
            self._dead_letter(rec, f"worker error: {type(exc).__name__}: {exc}", camera_id, result)
            return None
        if pixels.shape != want:
            why = f"frame is {pixels.shape} (H, W, C) but model {key} ({slots[key].version}) takes {want}"
            self._dead_letter(rec, why, msg.camera_id, result)
            return None
        return _Frame(rec, msg, pixels, key)

    def _check_time(self, msg: FrameMessage, received_ns: int) -> None:
        """A capture time far ahead of this worker's clock is an error, not a new normal."""
        ahead_s = (msg.capture_ns - received_ns) / 1e9
        limit = self.config.max_future_skew_s
        if limit and ahead_s > limit:
            raise RefusedFrameError("future", f"capture time is {ahead_s:.0f}s ahead of this worker's clock (more than "
                               f"VIGIL_WORKER_MAX_FUTURE_SKEW_S={limit:g}): fix the clock of the ingest host (NTP)")

    def _admit(self, camera_id: str) -> None:
        """Refuse cameras outside the allow-list, and new cameras beyond ``max_cameras``."""
        cfg = self.config
        if cfg.allowed_cameras and camera_id not in cfg.allowed_cameras:
            raise RefusedFrameError("not_allowed", f"camera {camera_id} is not in VIGIL_WORKER_ALLOWED_CAMERAS; add it "
                               "there (and to the cameras file) if it is a real camera")  # fmt: skip
        if camera_id in self.store or camera_id in self._batch_new:
            return
        if len(self.store) + len(self._batch_new) >= cfg.max_cameras and cfg.idle_evict_s:
            self.store.evict_idle(cfg.idle_evict_s)
        if len(self.store) + len(self._batch_new) >= cfg.max_cameras:
            raise RefusedFrameError("camera_limit", f"this worker already holds {cfg.max_cameras} cameras "
                               "(VIGIL_WORKER_MAX_CAMERAS): raise it, add workers, or set VIGIL_WORKER_ALLOWED_CAMERAS")
        self._batch_new.add(camera_id)

    def _dead_letter(self, rec: KafkaRecord, error: str | Exception, camera_id: str | None,
                     result: BatchResult) -> None:  # fmt: skip
        key = rec.key[:MAX_DLQ_KEY_BYTES] if rec.key is not None else None
        letter = DeadLetter.for_record(
            source_topic=rec.topic, partition=rec.partition, offset=rec.offset, service=SERVICE,
            error=error, original=rec.value, camera_id=camera_id, key_bytes=len(key or b""),
            max_record_bytes=self.max_record_bytes,
        )  # fmt: skip
        log.warning("camera %s: record %s[%d]@%d dead-lettered: %s", camera_id, rec.topic, rec.partition,
                    rec.offset, letter.error)  # fmt: skip
        result.dead_letters.append(Output(key, letter.encode()))

    def _step(self, slot: ModelSlot, frames: list[_Frame], result: BatchResult, received_ns: int) -> None:
        frames = self._fresh(frames, result)
        if not frames:
            return
        states: list[StreamState] = []
        for f in frames:
            st, _ = self.store.prepare(
                f.msg.camera_id, partition=f.record.partition, seq=f.msg.seq, session=f.msg.session,
                model_token=slot.token, initial_state=slot.predictor.initial_state,
                warmup_frames=model_warmup(getattr(slot.predictor, "card", None) or {}),
            )  # fmt: skip
            states.append(st)
        t0 = time.perf_counter()
        try:
            out = slot.predictor.step(np.stack([f.pixels for f in frames]), [st.states for st in states])
        except Exception:  # noqa: BLE001 - isolate the frame that breaks the model, keep the others
            log.exception("model %s: a step of %d cameras failed; retrying each camera alone", slot.key, len(frames))
            self._step_each(slot, frames, states, result, received_ns)
            return
        result.step_seconds.append(time.perf_counter() - t0)
        result.step_sizes.append(len(frames))
        self._emit(slot, frames, states, out, result, received_ns)

    def _step_each(self, slot: ModelSlot, frames: list[_Frame], states: list[StreamState], result: BatchResult,
                   received_ns: int) -> None:  # fmt: skip
        """Step each frame of a failed batched step alone; a frame that fails alone is dead-lettered."""
        for f, st in zip(frames, states, strict=True):
            t0 = time.perf_counter()
            try:
                out = slot.predictor.step(f.pixels[None], [st.states])
            except Exception as exc:  # noqa: BLE001 - this frame breaks the model: it alone is lost
                result.errors += 1
                self.store.drop(f.msg.camera_id)
                self._dead_letter(f.record, f"model step failed on this frame: {type(exc).__name__}: {exc}",
                                  f.msg.camera_id, result)  # fmt: skip
                continue
            result.step_seconds.append(time.perf_counter() - t0)
            result.step_sizes.append(1)
            self._emit(slot, [f], [st], out, result, received_ns)

    def _emit(self, slot: ModelSlot, frames: list[_Frame], states: list[StreamState], out: StepOutputLike,
              result: BatchResult, received_ns: int) -> None:  # fmt: skip
        """Build each frame's score and scatter its new state back; a frame whose score fails is dead-lettered."""
        for i, (f, st) in enumerate(zip(frames, states, strict=True)):
            gap = 0 if st.last_seq is None else f.msg.seq - st.last_seq
            try:
                score = self._score(slot, f, out, i, st.warmup_left > 0, received_ns, gap)
                value, new_state = score.encode(), out.new_states[i]
            except Exception as exc:  # noqa: BLE001 - one frame's bad output costs that frame
                log.exception("camera %s: score of frame %d could not be built", f.msg.camera_id, f.msg.seq)
                result.errors += 1
                self._dead_letter(f.record, f"worker error: {type(exc).__name__}: {exc}", f.msg.camera_id, result)
                continue
            result.warmup += self.store.advance(st, seq=f.msg.seq, new_state=new_state)
            result.scores.append(Output(f.msg.camera_id.encode(), value, f.record.partition))

    def _score(self, slot: ModelSlot, f: _Frame, out: StepOutputLike, i: int, warmup: bool, received_ns: int,
               gap: int) -> ScoreMessage:
        """The score message of frame ``i`` of a step (built by :func:`vigil.model.messages.score_message`,
        the same code evaluation and benchmarks use); ``gap`` = frames since the camera's previous frame."""
        m = f.msg
        ref = FrameRef(m.camera_id, seq=m.seq, session=m.session, pts=m.pts, capture_ns=m.capture_ns,
                       width=m.width, height=m.height)
        return score_message(ref, (slot.predictor.model_id, slot.predictor.model_version), out, i, warmup=warmup,
                             gap=gap, received_ns=received_ns, maps=self.config.heatmap)
