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
from vigil.services.worker.batching import plan_steps
from vigil.services.worker.registry import ModelRegistry, ModelSlot, StepOutputLike
from vigil.services.worker.state import StreamState, StreamStateStore
from vigil.shared.kafka import KafkaRecord
from vigil.shared.schemas import DeadLetter, FrameMessage, SchemaError, ScoreMessage

log = logging.getLogger(__name__)

SERVICE = "worker"


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
    """

    staleness_s: float = 0.0
    heatmap: bool = True
    max_step: int | None = None


@dataclass
class BatchResult:
    """What one batch produced, plus counts for the metrics."""

    scores: list[Output] = field(default_factory=list)
    dead_letters: list[Output] = field(default_factory=list)
    stale: Counter[str] = field(default_factory=Counter)
    step_sizes: list[int] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    warmup: int = 0
    replayed: int = 0


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
        self._lock = threading.Lock()
        self._offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset processed

    def process(self, records: Sequence[KafkaRecord], received_ns: int | None = None) -> BatchResult:
        """Process one batch of frame records taken from Kafka, in their order."""
        received_ns = received_ns or time.time_ns()
        result = BatchResult()
        with self._lock:
            slots = {s.key: s for s in self.models.slots()}
            frames = self._decode_all(self._skip_replayed(records, result), slots, result)
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
    def _decode_all(self, records: Sequence[KafkaRecord], slots: dict[str, ModelSlot], result: BatchResult) -> list[_Frame]:
        frames = [f for rec in records if (f := self._decode(rec, slots, result)) is not None]
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
                log.debug("camera %s: frame %d is %.2fs old, skipped", f.msg.camera_id, f.msg.seq, age_s)
            else:
                fresh.append(f)
        return fresh

    def _decode(self, rec: KafkaRecord, slots: dict[str, ModelSlot], result: BatchResult) -> _Frame | None:
        camera_id = None
        try:
            msg = FrameMessage.decode(rec.value)
            camera_id = msg.camera_id
            pixels = msg.pixels()
        except SchemaError as exc:
            self._dead_letter(rec, exc, camera_id, result)
            return None
        key = self.models.key_for(msg.camera_id)
        want = tuple(slots[key].predictor.input_shape)
        if pixels.shape != want:
            why = f"frame is {pixels.shape} (H, W, C) but model {key} ({slots[key].version}) takes {want}"
            self._dead_letter(rec, why, msg.camera_id, result)
            return None
        return _Frame(rec, msg, pixels, key)

    @staticmethod
    def _dead_letter(rec: KafkaRecord, error: str | Exception, camera_id: str | None, result: BatchResult) -> None:
        letter = DeadLetter.for_record(
            source_topic=rec.topic, partition=rec.partition, offset=rec.offset, service=SERVICE,
            error=error, original=rec.value, camera_id=camera_id,
        )  # fmt: skip
        log.warning("camera %s: record %s[%d]@%d dead-lettered: %s", camera_id, rec.topic, rec.partition,
                    rec.offset, letter.error)  # fmt: skip
        result.dead_letters.append(Output(rec.key, letter.encode()))

    def _step(self, slot: ModelSlot, frames: list[_Frame], result: BatchResult, received_ns: int) -> None:
        frames = self._fresh(frames, result)
        if not frames:
            return
        states: list[StreamState] = []
        for f in frames:
            st, _ = self.store.prepare(
                f.msg.camera_id, partition=f.record.partition, seq=f.msg.seq, session=f.msg.session,
                model_token=slot.token, initial_state=slot.predictor.initial_state,
            )  # fmt: skip
            states.append(st)
        gaps = [0 if st.last_seq is None else f.msg.seq - st.last_seq for f, st in zip(frames, states, strict=True)]
        t0 = time.perf_counter()
        out = slot.predictor.step(np.stack([f.pixels for f in frames]), [st.states for st in states])
        result.step_seconds.append(time.perf_counter() - t0)
        result.step_sizes.append(len(frames))
        for i, (f, st) in enumerate(zip(frames, states, strict=True)):
            warmup = self.store.advance(st, seq=f.msg.seq, new_state=out.new_states[i])
            result.warmup += warmup
            score = self._score(slot, f, out, i, warmup, received_ns, gaps[i])
            result.scores.append(Output(f.msg.camera_id.encode(), score.encode(), f.record.partition))

    def _score(self, slot: ModelSlot, f: _Frame, out: StepOutputLike, i: int, warmup: bool, received_ns: int,
               gap: int) -> ScoreMessage:
        """The score message of frame ``i`` of a step (built by :func:`vigil.model.messages.score_message`,
        the same code evaluation and benchmarks use); ``gap`` = frames since the camera's previous frame."""
        m = f.msg
        ref = FrameRef(m.camera_id, seq=m.seq, session=m.session, pts=m.pts, capture_ns=m.capture_ns,
                       width=m.width, height=m.height)
        return score_message(ref, (slot.predictor.model_id, slot.predictor.model_version), out, i, warmup=warmup,
                             gap=gap, received_ns=received_ns, maps=self.config.heatmap)
