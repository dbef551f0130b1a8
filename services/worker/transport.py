"""The Faust side of the worker: consumer group, batching from Kafka, producing, rebalances, metrics.

All workers share one Faust app id, which is their Kafka consumer group, so the partitions of
``vigil.frames`` (and with them the cameras) are split among them. One agent takes batches of up to
``max_batch`` records within ``max_wait_s`` (``stream.take_events``), hands them to
:class:`~vigil.services.worker.core.WorkerEngine` in a worker thread (so the event loop keeps
heartbeating while the model runs), then produces the scores to the same partition of
``vigil.scores`` (co-partitioned) and the dead letters to ``vigil.dlq``, and waits until Kafka has
them. Only then does Faust acknowledge (and later commit) the batch: delivery is at least once, and
a duplicate carries the same camera id and sequence number as the original.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vigil.services.worker import metrics
from vigil.services.worker.core import (
    MAX_DLQ_KEY_BYTES,
    SERVICE,
    BatchResult,
    EngineConfig,
    Output,
    Skipped,
    WorkerEngine,
)
from vigil.services.worker.guards import OTHER, CameraLabels, Throttle
from vigil.services.worker.registry import ModelRegistry, import_loader
from vigil.services.worker.settings import WorkerSettings
from vigil.services.worker.state import StreamStateStore
from vigil.shared.kafka import KafkaRecord
from vigil.shared.runner import FaustService
from vigil.shared.schemas import CameraStatus, DeadLetter

log = logging.getLogger(__name__)

SUMMARY_EVERY_S = 10.0  # also the consumer-lag refresh interval


class WorkerService(FaustService):
    """Owns the engine and the Faust app; ``build()`` wires the agent, timers and rebalance hooks.

    Args:
        settings: Worker settings.
        engine: The engine; built from the settings when None.
    """

    def __init__(self, settings: WorkerSettings, engine: WorkerEngine | None = None) -> None:
        self.settings = settings
        self.engine = engine or build_engine(settings)
        self.owned: set[int] | None = None  # frames partitions assigned; None before the first assignment
        self._assigned = False
        self.log_level = settings.log_level
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-step")
        self._resets_seen: dict[str, int] = {}
        self._scored_since = (0, time.monotonic())
        self._topics: dict[str, Any] = {}
        self.labels = CameraLabels(settings.allowed_cameras, settings.metric_cameras)
        self._throttle = Throttle(settings.report_interval_s)
        self._skipped: dict[tuple[str, str], Skipped] = {}  # since the last summary: reported as dead letters

    # ---------------------------------------------------------------------------------------------
    def build(self) -> Any:
        """Create the faust.App with the agent, the model watcher and the rebalance hooks."""
        import faust

        s, kafka, topics = self.settings, self.settings.kafka, self.settings.topics
        app = faust.App(
            s.app_id, broker=kafka.faust_broker(), broker_credentials=kafka.faust_credentials(),
            value_serializer="raw", key_serializer="raw", web_enabled=False,
            datadir=str(s.datadir / s.app_id), topic_partitions=topics.partitions,
            broker_session_timeout=s.session_timeout_s, broker_heartbeat_interval=s.heartbeat_s,
            broker_rebalance_timeout=s.session_timeout_s, broker_commit_interval=s.commit_interval_s,
            consumer_auto_offset_reset=s.offset_reset, producer_acks=-1,
            stream_buffer_maxsize=max(4 * s.max_batch, 256),
        )  # fmt: skip
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self._topics = {name: app.topic(getattr(topics, name), **raw)
                        for name in ("frames", "scores", "dlq", "camera_status")}  # fmt: skip
        app.agent(self._topics["frames"], name=f"{s.app_id}.frames")(self._agent)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_partitions_revoked.connect(self._on_revoked)
        if s.model_poll_s > 0:
            app.timer(s.model_poll_s, name="model-watch")(self._watch_models)
        app.timer(SUMMARY_EVERY_S, name="summary")(self._summary)
        self.app = app
        return app

    async def _agent(self, stream: Any) -> None:
        s = self.settings
        log.info("worker agent started: max_batch=%d max_wait_s=%.3f", s.max_batch, s.max_wait_s)
        async for events in stream.take_events(s.max_batch, within=s.max_wait_s):
            await self.handle([KafkaRecord.from_message(e.message) for e in events])

    async def handle(self, records: Sequence[KafkaRecord]) -> None:
        """Process one batch and publish its outputs; never raises (the loop must go on)."""
        t0 = time.perf_counter()
        mine = [r for r in records if self.owned is None or r.partition in self.owned]
        if len(mine) < len(records):
            metrics.FRAMES.labels("revoked").inc(len(records) - len(mine))
        metrics.BATCH_SIZE.observe(len(mine))
        received_ns = time.time_ns()
        loop = asyncio.get_running_loop()
        try:
            with self.heartbeat.working():
                result = await loop.run_in_executor(self._pool, self.engine.process, mine, received_ns)
        except Exception as exc:  # top of the service loop: log, dead-letter the batch, keep going
            log.exception("batch of %d records failed; dead-lettering it and resetting all camera states", len(mine))
            result = _failed_batch(mine, exc, self.settings.topics.dlq_max_record_bytes)
            await loop.run_in_executor(self._pool, self.engine.reset_all)
        await self._publish(result)
        await self._report(result)
        self._observe(result, time.perf_counter() - t0)

    async def _publish(self, result: BatchResult) -> None:
        """Produce scores and dead letters and wait for Kafka; a record Kafka refuses is logged and counted."""
        sends = [("scores", o) for o in result.scores] + [("dlq", o) for o in result.dead_letters]
        futures = [(topic, f) for topic, o in sends if (f := await self._send(topic, o)) is not None]
        acks = await asyncio.gather(*(f for _t, f in futures), return_exceptions=True)
        for (topic, _f), ack in zip(futures, acks, strict=True):
            if isinstance(ack, BaseException):
                self._publish_failed(topic, ack)

    async def _send(self, topic: str, out: Output) -> Any:
        """Hand one record to the producer; None (logged, counted) when it refuses it at once."""
        try:
            # force=True: publish now instead of attaching to the current event (sent only at its ack).
            return await self._topics[topic].send(key=out.key, value=out.value, partition=out.partition, force=True)
        except Exception as exc:  # noqa: BLE001 - e.g. a record over the size limit: lose it, not the batch
            self._publish_failed(topic, exc)
            return None

    def _publish_failed(self, topic: str, exc: BaseException) -> None:
        metrics.PUBLISH_ERRORS.labels(topic).inc()
        log.error("a record for %s was not acknowledged by Kafka (%s: %s); it is lost, the batch goes on",
                  topic, type(exc).__name__, exc)  # fmt: skip

    async def _report(self, result: BatchResult) -> None:
        """One log line per batch for skipped frames; status records for cameras that two ingests publish."""
        for key, skipped in result.skipped.items():
            total = self._skipped.setdefault(key, Skipped(skipped.partition, skipped.first_offset, skipped.first_seq,
                                                          skipped.last_seq))  # fmt: skip
            total.count += skipped.count
            total.last_seq = skipped.last_seq
        if result.skipped:
            log.info("batch: %d frames skipped without a score: %s", sum(k.count for k in result.skipped.values()),
                     ", ".join(f"{cam} {n.count} {reason}" for (reason, cam), n in list(result.skipped.items())[:20]))
        now = time.monotonic()
        for cam, (kept, other) in result.conflicts.items():
            metrics.SESSION_CONFLICTS.labels(self.labels.label(cam)).inc()
            if self._throttle.due(f"session:{cam}", now):
                await self._session_conflict(cam, kept, other)

    async def _session_conflict(self, camera_id: str, kept: int, other: int) -> None:
        why = (f"worker: two ingest processes publish camera {camera_id} (sessions {kept} and {other}); scoring the "
               f"newest ({kept}) and skipping the other's frames: stop the older ingest")  # fmt: skip
        log.warning("camera %s: %s", camera_id, why)
        status = CameraStatus(camera_id=camera_id, state="online", reason=why, session=kept)
        out = Output(camera_id.encode(), status.encode())
        if (future := await self._send("camera_status", out)) is not None:
            try:
                await future
            except Exception as exc:  # noqa: BLE001 - a lost status record is logged, never fatal
                self._publish_failed("camera_status", exc)

    def _observe(self, result: BatchResult, seconds: float) -> None:
        metrics.BATCH_SECONDS.observe(seconds)
        for size, sec in zip(result.step_sizes, result.step_seconds, strict=True):
            metrics.STEP_SIZE.observe(size)
            metrics.STEP_SECONDS.observe(sec)
        metrics.FRAMES.labels("scored").inc(len(result.scores))
        metrics.FRAMES.labels("stale").inc(sum(result.stale.values()))
        metrics.FRAMES.labels("dead_letter").inc(len(result.dead_letters))
        metrics.FRAMES.labels("replayed").inc(result.replayed)
        for (reason, cam), skipped in result.skipped.items():
            metrics.SKIPPED.labels(reason, self.labels.label(cam)).inc(skipped.count)
        for reason, n in result.refused.items():
            metrics.REFUSED.labels(reason).inc(n)
        metrics.ERRORS.inc(result.errors)
        metrics.EVICTED.inc(len(result.evicted))
        for reason, total in self.engine.store.resets.items():
            metrics.RESETS.labels(str(reason)).inc(total - self._resets_seen.get(str(reason), 0))
            self._resets_seen[str(reason)] = total
        metrics.CAMERAS.set(len(self.engine.store))
        self._scored_since = (self._scored_since[0] + len(result.scores), self._scored_since[1])

    # ---------------------------------------------------------------------------------------------
    async def _on_assigned(self, sender: Any, assigned: Iterable[Any], **_: Any) -> None:
        frames = self.settings.topics.frames
        mine = {tp.partition for tp in assigned if tp.topic == frames}
        before = self.owned or set()
        changed = (before - mine) | (mine - before)
        dropped = await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.drop_partitions, changed)
        self.owned = mine
        self._assigned = True
        metrics.PARTITIONS.set(len(mine))
        metrics.CAMERAS.set(len(self.engine.store))
        log.info("partitions assigned: %s (new %s, gone %s); %d camera states dropped",
                 sorted(mine), sorted(mine - before), sorted(before - mine), len(dropped))  # fmt: skip

    async def _on_revoked(self, sender: Any, revoked: Iterable[Any], **_: Any) -> None:
        frames = self.settings.topics.frames
        log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked if tp.topic == frames))

    async def _watch_models(self) -> None:
        swapped = await asyncio.get_running_loop().run_in_executor(None, self.engine.models.poll)
        for key in swapped:
            metrics.MODEL_SWAPS.labels(key).inc()

    async def _summary(self) -> None:
        n, since = self._scored_since
        now = time.monotonic()
        fps = n / max(now - since, 1e-9)
        self._scored_since = (0, now)
        metrics.FPS.set(fps)
        lag = await self._lag()
        log.info("%.1f frames/s scored, %d cameras, partitions %s, lag %s",
                 fps, len(self.engine.store), sorted(self.owned or ()), lag)  # fmt: skip
        self._report_skew(now)
        await self._report_skipped(now)

    def _report_skew(self, now: float) -> None:
        """Export each camera's smallest receive - capture delay; warn (once per interval) when it is large."""
        warn_s = self.settings.clock_skew_warn_s
        for cam, skew in self.engine.skew.take().items():
            seconds = skew.min_ns / 1e9
            label = self.labels.label(cam)
            if label != OTHER:
                metrics.CLOCK_SKEW.labels(label).set(seconds)
            if abs(seconds) > warn_s and self._throttle.due(f"skew:{cam}", now):
                side = "behind" if seconds > 0 else "ahead of"
                log.warning("camera %s: its %d frames of the last %.0fs arrived at best %.1fs %s this worker's clock: "
                            "the ingest host's clock is off (check NTP) or the worker is that far behind (see lag); "
                            "frames older than staleness_s=%.1fs are skipped", cam, skew.frames, SUMMARY_EVERY_S,
                            abs(seconds), side, self.settings.staleness_s)  # fmt: skip

    async def _report_skipped(self, now: float) -> None:
        """One dead letter (no payload) per camera and reason with the frames skipped since the last report."""
        pending, self._skipped = self._skipped, {}
        for (reason, cam), n in pending.items():
            if not self._throttle.due(f"skipped:{reason}:{cam}", now):
                self._skipped[(reason, cam)] = n  # keep counting; reported when due
                continue
            why = SKIP_REASONS.get(reason, reason).format(s=self.settings)
            letter = DeadLetter.for_record(
                source_topic=self.settings.topics.frames, partition=n.partition, offset=n.first_offset,
                service=SERVICE, camera_id=cam, original=b"",
                error=f"skipped: {n.count} frames of camera {cam} (seq {n.first_seq}..{n.last_seq}) got no score: {why}",
            )  # fmt: skip
            await self._send("dlq", Output(cam.encode(), letter.encode()))

    async def _lag(self) -> dict[int, int]:
        """Frames per owned partition not processed yet: end offset - (last processed offset + 1)."""
        frames = self.settings.topics.frames
        tps = [tp for tp in self.app.consumer.assignment() if tp.topic == frames]
        if not tps:
            return {}
        ends = await self.app.consumer.highwaters(*tps)
        done = self.engine.last_offsets()
        lag = {}
        for tp, end in ends.items():
            committed = self.app.consumer._committed_offset.get(tp)  # noqa: SLF001 - no public getter
            position = done[tp.partition] + 1 if tp.partition in done else committed
            if end is None or position is None:
                continue
            lag[tp.partition] = max(0, end - position)
            metrics.LAG.labels(str(tp.partition)).set(lag[tp.partition])
        return dict(sorted(lag.items()))

    def ready(self) -> bool:
        """Ready once Kafka has assigned this worker its partitions and its loop is alive."""
        return self._assigned and self.alive()

    def stop(self) -> None:
        """Stop the step thread (after Faust has produced and committed the last batch)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


SKIP_REASONS = {
    "stale": "older than staleness_s={s.staleness_s:g}s when the worker reached them (a backlog after a worker "
             "restart or overload, or the ingest clock behind the worker's)",
    "superseded": "they came from an older ingest session while a newer one publishes the camera (two ingest "
                  "processes; stop the older one)",
}  # fmt: skip
"""Why frames were skipped, for the skipped-frames dead letter (formatted with the settings as ``s``)."""


def _failed_batch(records: Sequence[KafkaRecord], exc: Exception, max_record_bytes: int) -> BatchResult:
    result = BatchResult()
    for rec in records:
        key = rec.key[:MAX_DLQ_KEY_BYTES] if rec.key is not None else None
        letter = DeadLetter.for_record(source_topic=rec.topic, partition=rec.partition, offset=rec.offset,
                                       service=SERVICE, error=f"worker error: {type(exc).__name__}: {exc}",
                                       original=rec.value, key_bytes=len(key or b""),
                                       max_record_bytes=max_record_bytes)  # fmt: skip
        result.dead_letters.append(Output(key, letter.encode()))
    return result


def attach_runtime(predictor: object, settings: WorkerSettings, path: Path) -> None:
    """Step ``predictor`` on ``settings.runtime`` (its export found, or made, under ``runtime_export_root``)."""
    from vigil.model.runtimes import RuntimeSettings, open_for_settings

    if not hasattr(predictor, "use_runtime"):
        raise ValueError(f"VIGIL_WORKER_RUNTIME={settings.runtime} needs a streaming predictor with use_runtime "
                         f"(vigil.model.streaming:StreamingPredictor). Received: {type(predictor).__name__}")
    rt = RuntimeSettings(kind=settings.runtime, quantize=settings.runtime_quantize, threads=settings.runtime_threads,
                         streams=settings.runtime_streams,
                         export_root=settings.runtime_export_root, auto_export=settings.runtime_auto_export,
                         export_dir=None)  # per model and version under the root, never one folder from the env
    runtime = open_for_settings(rt, predictor, path)  # type: ignore[arg-type]
    predictor.use_runtime(runtime)
    log.info("model %s:%s steps on the %s runtime", getattr(predictor, "model_id", "?"),
             getattr(predictor, "model_version", "?"), runtime.name)


def build_engine(settings: WorkerSettings) -> WorkerEngine:
    """Load the models and build the engine from the settings."""
    load = import_loader(settings.predictor)

    def loader(path: Path) -> object:
        predictor = load(path)
        if hasattr(predictor, "motion"):
            predictor.motion = settings.motion
        if settings.runtime != "keras":
            attach_runtime(predictor, settings, path)
        return predictor

    registry = ModelRegistry(loader, settings.model_path(), settings.camera_models)
    store = StreamStateStore(settings.warmup_frames, settings.max_seq_gap)
    config = EngineConfig(
        staleness_s=settings.staleness_s, heatmap=settings.heatmap, max_future_skew_s=settings.max_future_skew_s,
        allowed_cameras=settings.allowed_cameras, max_cameras=settings.max_cameras,
        idle_evict_s=settings.idle_evict_s, session_stick_s=settings.session_stick_s,
    )  # fmt: skip
    engine = WorkerEngine(registry, store, config)
    engine.max_record_bytes = settings.topics.dlq_max_record_bytes
    return engine


def build_service(settings: WorkerSettings) -> WorkerService:
    """Load the models and wire the engine to its Faust app (for :func:`~vigil.shared.runner.run_service`)."""
    settings.datadir.mkdir(parents=True, exist_ok=True)
    service = WorkerService(settings)
    service.build()
    return service
