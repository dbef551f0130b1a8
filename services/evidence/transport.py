"""The Kafka / Redis side of `vigil evidence`: the loop that feeds :class:`~.core.EvidenceCore` and writes evidence.

Built by :func:`build_service` (never at import). One thread runs :meth:`EvidenceService.wait`, a loop that:

1. polls every partition of the frames and scores topics (:class:`FrameFeed`), committing offsets in its own
   group (``group_id``; the worker's group is untouched, so the hot path pays nothing but the broker's extra
   read). A partition is first read from ``ring_age_s`` ago (``offsets_for_times``), so a restarted service
   refills its ring from Kafka, and evidence waits until it has;
2. reads the alert stream in a Redis consumer group (``alerts_group``): first this consumer's own pending
   entries (those read but not acknowledged before a restart), then new ones. An entry is acknowledged
   once its alert's final evidence is written (a malformed one at once), so a restart resumes;
3. renders and writes the evidence that is due (:meth:`EvidenceCore.due`) in one Redis transaction per alert:
   snapshot, clip, the describing hash, all with TTL ``retention_s``; then ``PUBLISH vigil:evidence-ready``;
4. every ``latest_frame_every_s`` writes each camera's latest frame (JPEG, TTL ``latest_frame_ttl_s``);
5. forgets idle cameras and exports the metrics.

A failed Redis write keeps the rendered evidence and retries it after ``retry_s``; :meth:`stop` renders
every pending alert as final and writes it (shutdown flushes pending evidence).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from vigil.services.evidence import metrics
from vigil.services.evidence.clip import ClipFormat, pick_format
from vigil.services.evidence.core import AlertOutcome, Evidence, EvidenceConfig, EvidenceCore, Job, S, Status
from vigil.services.evidence.footage import FootageConfig, FootageKeeper
from vigil.services.evidence.settings import EvidenceSettings
from vigil.shared.redis_keys import (
    EVIDENCE_READY_CHANNEL,
    evidence_clip_key,
    evidence_key,
    evidence_snapshot_key,
    latest_frame_key,
)
from vigil.shared.runner import StartupError
from vigil.shared.telemetry import Heartbeat

log = logging.getLogger(__name__)


def evidence_fields(ev: Evidence) -> dict[str, str | int]:
    """The fields of the ``vigil:evidence:<id>`` hash for ``ev`` (clip fields only when there is a clip, so a
    final record without frames does not hide the preliminary clip already written).

    Example:
        >>> ev = Evidence("a", "cam", "final", b"jpg", None, "", None, None, 0, "frames gone", 7, 0.0)
        >>> sorted(evidence_fields(ev).items())
        [('camera_id', 'cam'), ('created_ns', 7), ('problem', 'frames gone'), ('snapshot_bytes', 3), ('status', 'final')]
    """
    out: dict[str, str | int] = {"camera_id": ev.camera_id, "status": ev.status, "created_ns": ev.created_ns,
                                 "problem": ev.problem}  # fmt: skip
    if ev.snapshot is not None:
        out["snapshot_bytes"] = len(ev.snapshot)
    if ev.clip is not None:
        out |= {"clip_bytes": len(ev.clip), "clip_mime": ev.clip_mime, "frames": ev.frames,
                "first_seq": ev.first_seq if ev.first_seq is not None else "",
                "last_seq": ev.last_seq if ev.last_seq is not None else ""}  # fmt: skip
    return out


class EvidenceWriter:
    """Writes evidence and latest frames to Redis and acknowledges alert entries (all with the TTLs of the settings)."""

    def __init__(self, client: Any, settings: EvidenceSettings) -> None:
        self.client = client
        self.settings = settings

    def ensure_group(self) -> None:
        """Create the alert stream's consumer group (and the stream) when missing."""
        import redis

        try:
            self.client.xgroup_create(self.settings.alerts_stream, self.settings.alerts_group,
                                      id="0" if self.settings.alerts_from_start else "$", mkstream=True)  # fmt: skip
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_alerts(self, cursor: str) -> list[tuple[str, Any]]:
        """Up to ``alerts_batch`` entries after ``cursor`` (``0``: this consumer's pending ones; ``>``: new ones)."""
        s = self.settings
        resp = self.client.xreadgroup(s.alerts_group, s.consumer_name, {s.alerts_stream: cursor}, count=s.alerts_batch)
        entries = resp[0][1] if resp else []
        return [(_text(entry_id), fields or {}) for entry_id, fields in entries]

    def ack(self, entry_ids: list[str] | tuple[str, ...]) -> None:
        """Acknowledge alert entries."""
        if entry_ids:
            self.client.xack(self.settings.alerts_stream, self.settings.alerts_group, *entry_ids)

    def write(self, ev: Evidence) -> None:
        """Snapshot, clip and hash in one transaction, all expiring after ``retention_s``; then publish and ack."""
        ttl = self.settings.retention_s
        pipe = self.client.pipeline(transaction=True)
        if ev.snapshot is not None:
            pipe.set(evidence_snapshot_key(ev.alert_id), ev.snapshot, ex=ttl)
        if ev.clip is not None:
            pipe.set(evidence_clip_key(ev.alert_id), ev.clip, ex=ttl)
        pipe.hset(evidence_key(ev.alert_id), mapping=evidence_fields(ev))
        for key in (evidence_key(ev.alert_id), evidence_snapshot_key(ev.alert_id), evidence_clip_key(ev.alert_id)):
            pipe.expire(key, ttl)  # a key kept from the preliminary record expires with the final one
        pipe.publish(EVIDENCE_READY_CHANNEL, ev.alert_id)
        pipe.execute()
        if ev.status == "final":
            self.ack(ev.entry_ids)

    def latest_frames(self, frames: list[tuple[str, bytes]]) -> None:
        """Each camera's latest frame (JPEG) with a short TTL."""
        if not frames:
            return
        pipe = self.client.pipeline(transaction=False)
        for cam, data in frames:
            pipe.set(latest_frame_key(cam), data, ex=self.settings.latest_frame_ttl_s)
        pipe.execute()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FrameFeed:
    """Every partition of the frames and scores topics, assigned by hand, read from ``rewind_s`` ago when assigned.

    No group rebalance: every replica of the service needs every camera's frames (an alert of any camera may
    come to it through the Redis group), so the Kafka group (``group_id``) only holds the committed offsets,
    which show the service's lag. New partitions (a topic grown) are picked up every ``refresh_s``; a partition
    is read from ``rewind_s`` ago (``offsets_for_times``) so a restarted service refills its ring, and the
    feed is :meth:`catching_up` until it has read what was there when it was assigned.
    """

    def __init__(self, consumer: Any, topics: list[str], rewind_s: float, refresh_s: float = 60.0) -> None:
        self.consumer = consumer
        self.topics = topics
        self.rewind_s = rewind_s
        self.refresh_s = refresh_s
        self._refresh_at = 0.0
        self._catchup: dict[Any, int] = {}
        """Partition -> its end offset when it was assigned; gone once the position reaches it."""
        self._catchup_until = 0.0

        self.partitions = 0
        """Partitions read (for :meth:`EvidenceService.ready`, read from another thread: no consumer call there)."""
        self.behind = False
        """The last answer of :meth:`catching_up` (likewise)."""

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        """Records by partition (after picking up new partitions, every ``refresh_s``)."""
        if time.monotonic() >= self._refresh_at:
            self.refresh()
            self._refresh_at = time.monotonic() + (self.refresh_s if self.partitions else min(self.refresh_s, 5.0))
        if not self.partitions:  # the topics do not exist yet
            time.sleep(timeout_ms / 1000)
            return {}
        return self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)

    def refresh(self) -> None:
        """Assign every partition of the topics; the new ones are read from ``rewind_s`` ago."""
        from kafka import TopicPartition

        current = set(self.consumer.assignment())
        wanted = {TopicPartition(t, p) for t in self.topics for p in self.consumer.partitions_for_topic(t)}
        new = wanted - current
        if not new:
            if not wanted:
                log.warning("evidence: topics %s have no partitions yet; checking again in 5s", ", ".join(self.topics))
            return
        positions = {tp: self.consumer.position(tp) for tp in current & wanted}
        self.consumer.assign(sorted(wanted))
        self.partitions = len(wanted)
        for tp, offset in positions.items():
            self.consumer.seek(tp, offset)
        self.rewind(sorted(new))

    def rewind(self, partitions: list[Any]) -> None:
        """Seek ``partitions`` to ``rewind_s`` ago (their end where nothing is that recent)."""
        since_ms = int(time.time() * 1000 - self.rewind_s * 1000)
        found = self.consumer.offsets_for_times({tp: since_ms for tp in partitions}) if self.rewind_s else {}
        for tp in partitions:
            hit = found.get(tp)
            if hit is None:
                self.consumer.seek_to_end(tp)
            else:
                self.consumer.seek(tp, hit.offset)
        ends = self.consumer.end_offsets(partitions)
        self._catchup.update({tp: end for tp, end in ends.items() if end})
        self.behind = bool(self._catchup)
        self._catchup_until = time.monotonic() + max(self.rewind_s, 10.0)
        log.info("evidence: reading %d new partition(s) of %s from %.0fs ago", len(partitions), ", ".join(self.topics),
                 self.rewind_s)  # fmt: skip

    def catching_up(self) -> bool:
        """Whether the partitions assigned last have not yet been read up to where they ended then (gives up after
        ``rewind_s``)."""
        if self._catchup:
            self._catchup = {tp: end for tp, end in self._catchup.items() if self.consumer.position(tp) < end}
        if self._catchup and time.monotonic() > self._catchup_until:
            log.warning("evidence: the ring did not refill within %.0fs; rendering evidence anyway", self.rewind_s)
            self._catchup = {}
        self.behind = bool(self._catchup)
        return self.behind


class EvidenceService:
    """`vigil evidence` as a :class:`~vigil.shared.runner.Service` (one loop thread; :meth:`wait` runs it).

    Args:
        settings: The service settings.
        core: The pure core (rings, jobs, rendering).
        feed: The frames and scores (a kafka-python ``KafkaConsumer`` in a :class:`FrameFeed`).
        writer: The Redis side.
    """

    def __init__(self, settings: EvidenceSettings, core: EvidenceCore, feed: FrameFeed, writer: EvidenceWriter) -> None:
        self.settings = settings
        self.core = core
        self.feed = feed
        self.writer = writer
        self.heartbeat = Heartbeat(settings.heartbeat_timeout_s)
        self._stop = threading.Event()
        self._cursor = "0"
        self._unwritten: dict[str, Evidence] = {}
        self._retry_at = 0.0
        self._latest_at = 0.0
        self._latest_written: dict[str, int] = {}
        self._exported: dict[str, Counter[str]] = {"dropped": Counter(), "evicted": Counter(), "footage": Counter()}
        self.turns = 0
        self.footage_counts: Counter[str] = Counter()
        self.footage = None if settings.footage_dir is None else FootageKeeper(
            footage_config(settings), writer.client, self.footage_counts)
        self._footage_at = 0.0

    # -- Service -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the alert group and assign the frames and scores partitions."""
        self.writer.ensure_group()
        self.feed.refresh()
        log.info("evidence: frames from %s, scores from %s (offsets in group %s), alerts from %s (group %s/%s)",
                 self.settings.topics.frames, self.settings.topics.scores, self.settings.group_id,
                 self.settings.alerts_stream, self.settings.alerts_group, self.settings.consumer_name)  # fmt: skip

    def wait(self) -> int:
        """Run the loop until a stop is asked; returns 0."""
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the top of the service loop: log, pause, go on
                log.exception("evidence loop turn failed; retrying in %.1fs", self.settings.retry_s)
                self._stop.wait(self.settings.retry_s)
        return 0

    def request_stop(self) -> None:
        """Ask the loop to end (safe from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        """Write every pending alert's evidence as final, then close the clients."""
        try:
            self.flush()
        finally:
            self.feed.consumer.close()
            self.writer.client.close()

    def ready(self) -> bool:
        """Ready while the loop beats, with partitions assigned and the ring refilled."""
        return self.feed.partitions > 0 and not self.feed.behind and self.heartbeat.alive()

    # -- the loop ------------------------------------------------------------------------------------
    def step(self) -> None:
        """One turn: frames and scores, alert entries, due evidence, latest frames, upkeep, metrics."""
        self.heartbeat.beat()
        self.take_records(self.feed.poll(self.settings.poll_ms, self.settings.max_records))
        now = time.time_ns()
        self.take_alerts(now)
        with self.heartbeat.working():
            if not self.feed.catching_up():  # evidence waits while the ring refills after a (re)start
                self.render_due(self.core.due(now))
            self.write_latest()
            self.sample_footage()
        for cam in self.core.rings.evict_idle(now, int(self.settings.idle_evict_s * S)):
            log.info("camera %s: no frame for %.0fs, its ring is dropped", cam, self.settings.idle_evict_s)
            if self.footage is not None:
                self.footage.planner.forget(cam)
        self.export_metrics()
        self.turns += 1

    def take_records(self, batches: dict[Any, list[Any]]) -> None:
        """Frames into the ring, scores' error maps beside them (a bad record is counted and skipped)."""
        frames_topic = self.settings.topics.frames
        now = time.time_ns()
        for tp, records in batches.items():
            for record in records:
                if record.value is None:
                    continue
                if tp.topic == frames_topic:
                    if self.core.on_frame(record.value, now):
                        metrics.FRAMES.inc()
                else:
                    metrics.SCORES.labels("kept" if self.core.on_score(record.value, now) else "skipped").inc()

    def take_alerts(self, now_ns: int) -> None:
        """Read alert entries (own pending ones first, after a restart) and track them."""
        entries = self.writer.read_alerts(self._cursor)
        if self._cursor != ">":
            self._cursor = entries[-1][0] if entries else ">"
        malformed = []
        for entry_id, fields in entries:
            outcome: AlertOutcome = self.core.on_alert(entry_id, fields, now_ns)
            metrics.ALERTS.labels(outcome.result).inc()
            if outcome.result == "malformed":
                malformed.append(entry_id)
            elif self.footage is not None and outcome.alert_id in self.core.jobs:
                self.footage.on_alert(self.core.jobs[outcome.alert_id].alert)
        self.writer.ack(malformed)

    def sample_footage(self) -> None:
        """Once a second: keep the cameras' due segments that scored confidently normal (``footage_dir``)."""
        import redis

        if self.footage is None or time.monotonic() < self._footage_at:
            return
        self._footage_at = time.monotonic() + 1.0
        try:
            self.footage.sample({cam: list(ring.frames) for cam, ring in self.core.rings.latest()})
        except (redis.RedisError, OSError) as exc:
            metrics.REDIS_FAILURES.inc()
            log.warning("footage sampling failed (%s: %s); retried next second", type(exc).__name__, str(exc)[:200])

    def render_due(self, due: list[tuple[Job, Status]]) -> None:
        """Render and write the due evidence; evidence that failed to be written is retried first."""
        if self._unwritten:
            if time.monotonic() < self._retry_at:
                return
            for ev in list(self._unwritten.values()):
                self._write(ev)
        for job, status in due:
            if job.alert.alert_id not in self._unwritten:
                self._write(self.render(job, status))

    def render(self, job: Job, status: Status) -> Evidence:
        """One alert's evidence; an unexpected failure costs that alert only (written with the reason)."""
        try:
            ev = self.core.render(job, status, time.time_ns())
        except Exception as exc:  # noqa: BLE001 - one hostile alert must not stop the others' evidence
            log.exception("alert %s (camera %s): rendering its evidence failed", job.alert.alert_id, job.alert.camera_id)
            self.core.counts["render_failed"] += 1
            ev = Evidence(job.alert.alert_id, job.alert.camera_id, "final", None, None, "", None, None, 0,
                          f"rendering failed: {type(exc).__name__}", time.time_ns(), 0.0, tuple(job.entry_ids))  # fmt: skip
        metrics.ENCODE_SECONDS.observe(ev.encode_s)
        if ev.problem:
            metrics.INCOMPLETE.inc()
            log.info("alert %s (camera %s): %s evidence with a problem: %s", ev.alert_id, ev.camera_id, ev.status,
                     ev.problem)  # fmt: skip
        return ev

    def _write(self, ev: Evidence) -> bool:
        import redis

        try:
            self.writer.write(ev)
        except redis.RedisError as exc:
            metrics.REDIS_FAILURES.inc()
            log.warning("alert %s: writing its evidence failed (%s); retrying in %.1fs", ev.alert_id,
                        type(exc).__name__, self.settings.retry_s)  # fmt: skip
            self._unwritten[ev.alert_id] = ev
            self._retry_at = time.monotonic() + self.settings.retry_s
            return False
        self._unwritten.pop(ev.alert_id, None)
        self.core.done(ev)
        for kind, data in (("snapshot", ev.snapshot), ("clip", ev.clip)):
            if data is not None:
                metrics.WRITTEN.labels(kind, ev.status).inc()
                metrics.WRITTEN_BYTES.labels(kind).inc(len(data))
        log.debug("alert %s (camera %s): %s evidence written (%d frames)", ev.alert_id, ev.camera_id, ev.status, ev.frames)
        return True

    def write_latest(self) -> None:
        """Each camera's latest frame, every ``latest_frame_every_s``."""
        import redis

        if time.monotonic() < self._latest_at:
            return
        self._latest_at = time.monotonic() + self.settings.latest_frame_every_s
        frames = self.core.latest_frames(self._latest_written)
        try:
            self.writer.latest_frames(frames)
        except redis.RedisError as exc:
            metrics.REDIS_FAILURES.inc()
            log.warning("writing the latest frames failed (%s)", type(exc).__name__)
            return
        if frames:
            metrics.WRITTEN.labels("latest_frame", "").inc(len(frames))

    def flush(self) -> None:
        """Render every pending alert as final now and write it (shutdown); what cannot be written is logged."""
        due = self.core.flush(time.time_ns())
        if due or self._unwritten:
            log.info("flushing the evidence of %d pending alert(s)", len(due) + len(self._unwritten))
        self._retry_at = 0.0
        self.render_due(due)
        for alert_id in self._unwritten:
            log.error("alert %s: its evidence could not be written before shutdown (its entry stays pending)", alert_id)

    def export_metrics(self) -> None:
        """Gauges of the rings, and the core's drop counters as Prometheus counters."""
        rings = self.core.rings
        metrics.BUFFERED.set(rings.frames)
        metrics.RING_BYTES.set(rings.nbytes)
        metrics.CAMERAS.set(len(rings.cameras))
        metrics.PENDING.set(len(self.core.jobs))
        for name, counts, metric in (("dropped", rings.dropped, metrics.DROPPED), ("evicted", rings.evicted, metrics.EVICTED),
                                     ("footage", self.footage_counts, metrics.FOOTAGE)):
            seen = self._exported[name]
            for reason, n in counts.items():
                if n > seen[reason]:
                    metric.labels(reason).inc(n - seen[reason])
                    seen[reason] = n


def footage_config(settings: EvidenceSettings) -> FootageConfig:
    """The footage keeper's parameters from the settings (``footage_dir`` set)."""
    assert settings.footage_dir is not None
    return FootageConfig(settings.footage_dir, int(settings.footage_every_s * S), int(settings.footage_segment_s * S),
                         int(settings.footage_guard_s * S), settings.footage_margin, settings.footage_max_segments,
                         settings.footage_max_bytes)  # fmt: skip


def make_consumer(settings: EvidenceSettings) -> Any:
    """The frames / scores consumer (raw bytes), committing its offsets in the service's own group (its lag)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        return KafkaConsumer(group_id=settings.group_id, auto_offset_reset="latest", enable_auto_commit=True,
                             max_partition_fetch_bytes=4 << 20, **settings.kafka.kafka_python_kwargs())  # fmt: skip
    except KafkaError as exc:
        from vigil.shared.kafka import unavailable_message

        raise StartupError(unavailable_message(settings.kafka, exc)) from exc


def build_service(settings: EvidenceSettings, fmt: ClipFormat | None = None) -> EvidenceService:
    """Wire the core and the clients: pick the clip encoder, check Redis, connect the consumer."""
    import redis

    try:
        fmt = fmt or pick_format(settings.clip_codec)
    except RuntimeError as exc:
        raise StartupError(f"{exc}; set VIGIL_EVIDENCE_CLIP_CODEC to one this PyAV build has") from exc
    client = settings.redis.client()
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StartupError(f"Redis at {settings.redis.url} does not answer ({type(exc).__name__}); start it "
                           "(`make up` here) or set VIGIL_REDIS_URL") from exc  # fmt: skip
    core = EvidenceCore(EvidenceConfig.from_settings(settings), fmt)
    log.info("evidence: clips as %s (%s, %s); ring %d frames / %.0fs per camera, %d MiB in all; retention %.1f days",
             fmt.codec, fmt.container, fmt.mime, settings.ring_frames, settings.ring_age_s, settings.ring_bytes >> 20,
             settings.retention_s / 86_400)  # fmt: skip
    feed = FrameFeed(make_consumer(settings), [settings.topics.frames, settings.topics.scores],
                     settings.ring_age_s if settings.rewind_on_start else 0.0)  # fmt: skip
    return EvidenceService(settings, core, feed, EvidenceWriter(client, settings))
