"""The Faust side of `vigil scorer`: topics, the state table, the agent and the retry timer.

Built by :func:`build_service` (never at import). The table ``<app_id>-camera-state`` maps camera id (bytes)
to the JSON-serialised :class:`~vigil.services.scorer.state.ScorerState` (never pickled); its changelog topic is what restores
thresholds, events and unconfirmed alerts after a restart or a rebalance. The table uses the producer's
partitioner on the camera id, i.e. the same partition as the camera's scores (co-partitioned).
"""

from __future__ import annotations

import logging
from typing import Any

from vigil.services.scorer.core import ScorerCore
from vigil.services.scorer.kinds import KindBook
from vigil.services.scorer.settings import ScorerSettings
from vigil.services.scorer.sink import RedisSink, SinkOptions
from vigil.shared.kafka import KafkaRecord
from vigil.shared.runner import FaustService
from vigil.shared.schemas import DeadLetter

log = logging.getLogger(__name__)


def state_table_name(settings: ScorerSettings) -> str:
    """Name of the Faust table of per-camera states."""
    return f"{settings.app_id}-camera-state"


def state_changelog_topic(settings: ScorerSettings) -> str:
    """The Kafka topic that holds (and restores) the per-camera states: Faust's ``<app id>-<table>-changelog``."""
    return f"{settings.app_id}-{state_table_name(settings)}-changelog"


def reset_cameras(settings: ScorerSettings, camera_ids: list[str]) -> str:
    """Forget the learned state of cameras: a tombstone per camera on the state changelog.

    Run it while the scorer is stopped (a running scorer keeps its in-memory copy and writes it back).
    The next scorer start restores no state for these cameras, so they relearn their normal level
    (grace period) as new cameras do; useful after a camera was moved or re-aimed, and for demos.

    Returns:
        The changelog topic written to.
    """
    from vigil.shared.kafka import make_admin, make_producer

    topic = state_changelog_topic(settings)
    admin = make_admin(settings.kafka)  # raises KafkaUnavailableError with the start command
    try:
        exists = topic in admin.list_topics()
    finally:
        admin.close()
    if not exists:  # no scorer ever ran with this app id: nothing to forget (and writing would auto-create
        return topic  # the changelog with the broker's partition count instead of Faust's)
    producer = make_producer(settings.kafka)
    try:
        for cam in camera_ids:  # keyed like the table (default partitioner on the camera id)
            producer.send(topic, key=cam.encode(), value=None)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    log.info("reset scorer state of %d camera(s) on %s", len(camera_ids), topic)
    return topic


class ScorerService(FaustService):
    """The scorer's Faust app: the score agent, the per-camera state table, the Redis retry timer.

    Args:
        settings: Scorer settings.
    """

    def __init__(self, settings: ScorerSettings) -> None:
        self.settings = settings
        self.log_level = settings.log_level
        self.app = _faust_app(settings)
        topic = {"key_type": bytes, "value_type": bytes, "value_serializer": "raw"}
        self._scores = self.app.topic(settings.topics.scores, **topic)
        self._dlq = self.app.topic(settings.topics.dlq, **topic)
        self._table = self.app.Table(
            state_table_name(settings), default=None, partitions=settings.topics.partitions,
            key_type=bytes, value_type=bytes, use_partitioner=True,
        )  # fmt: skip
        sink = RedisSink(settings.redis.async_client(), SinkOptions(
            settings.stream_maxlen, settings.dedupe_ttl_s, settings.snapshot_ttl_s, settings.retry_min_s,
            settings.retry_max_s, settings.camera_ttl_s, settings.timeline_maxlen,
        ))  # fmt: skip
        kinds = KindBook(sink.client, settings.kinds) if settings.kinds.enabled else None
        self.core = ScorerCore(settings, sink, self._load, self._save, self._dead_letter, kinds)
        self.app.agent(self._scores, name=f"{settings.app_id}.score")(self._agent)
        self.app.timer(interval=max(settings.retry_min_s, 0.5))(self._retry_pending)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_rebalance_complete.connect(self._on_rebalanced)
        self._scan_saved = True

    def _load(self, camera_id: str) -> bytes | None:
        return self._table.get(camera_id.encode())

    def _save(self, camera_id: str, data: bytes) -> None:
        self._table[camera_id.encode()] = data

    async def _dead_letter(self, letter: DeadLetter, key: bytes | None) -> None:
        await self._dlq.send(key=key, value=letter.encode())

    async def _agent(self, stream: Any) -> None:
        s = self.settings
        async for events in stream.take_events(s.batch_size, within=s.batch_within_s):
            await self.core.handle([KafkaRecord.from_message(e.message) for e in events])

    async def _retry_pending(self) -> None:
        if self._scan_saved and not self.app.in_recovery:
            self._scan_saved = False  # once the table is recovered: cameras gone quiet still publish their alerts
            self.core.adopt((k.decode("utf-8", "replace"), v) for k, v in list(self._table.items()))
        if any(st.outbox for st in self.core.states.values()):
            await self.core.flush()

    async def _on_revoked(self, app: Any, revoked: Any, **kwargs: Any) -> None:
        self.core.forget()

    async def _on_rebalanced(self, app: Any, **kwargs: Any) -> None:
        self._scan_saved = True


def _faust_app(settings: ScorerSettings) -> Any:
    """The faust.App of the scorer (memory store: the table lives in its changelog topic)."""
    import faust

    return faust.App(
        settings.app_id, broker=settings.kafka.faust_broker(), broker_credentials=settings.kafka.faust_credentials(),
        value_serializer="raw", key_serializer="raw", store="memory://", datadir=str(settings.datadir),
        web_enabled=False, topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor, consumer_auto_offset_reset="earliest",
        broker_commit_every=1000, broker_commit_interval=1.0, producer_acks=-1,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
    )  # fmt: skip


def build_service(settings: ScorerSettings) -> ScorerService:
    """The scorer wired to Kafka and Redis (for :func:`~vigil.shared.runner.run_service`)."""
    return ScorerService(settings)
