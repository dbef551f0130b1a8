"""Kafka helpers: clients built from settings, topic creation, and dead-lettering.

One producer per process (never one per message). Topic creation is idempotent.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from vigil.shared.schemas import DeadLetter
from vigil.shared.settings import KafkaSettings, ProducerSettings, TopicSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaRecord:
    """One consumed Kafka record, as a service's core takes it (no Kafka client types in the cores)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @classmethod
    def from_message(cls, message: Any) -> KafkaRecord:
        """From a consumed Faust / aiokafka / kafka-python message (``topic``, ``partition``, ``offset``, ...)."""
        return cls(message.topic, message.partition, message.offset, message.key, message.value)


class KafkaUnavailableError(RuntimeError):
    """Kafka could not be reached; the text says where and how to start it."""


def unavailable_message(settings: KafkaSettings, exc: BaseException | None = None) -> str:
    """A message that says which broker was tried and how to start the local one."""
    why = f" ({type(exc).__name__}: {exc})" if exc else ""
    return (
        f"Kafka is not reachable at {settings.bootstrap_servers}{why}. "
        "Start the local broker with `make up` (or set VIGIL_KAFKA_BOOTSTRAP_SERVERS)."
    )


def make_producer(
    settings: KafkaSettings, producer_settings: ProducerSettings | None = None, **overrides: Any
) -> Any:
    """A kafka-python KafkaProducer: connection from ``settings``, behaviour from ``producer_settings``.

    Args:
        settings: How to reach Kafka.
        producer_settings: Acks, idempotence, batching, compression, timeouts; default
            ``ProducerSettings()``, the one definition of the producer defaults (acks=all, idempotent, lz4,
            small linger).
        **overrides: kafka-python ``KafkaProducer`` arguments that win over both (e.g. ``linger_ms=2``).
    """
    from kafka import KafkaProducer

    kw = (producer_settings or ProducerSettings()).kafka_python_kwargs()
    return KafkaProducer(**(settings.kafka_python_kwargs() | kw | overrides))


def make_admin(settings: KafkaSettings) -> Any:
    """A kafka-python KafkaAdminClient; raises KafkaUnavailableError with the start command."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(**settings.kafka_python_kwargs())
    except KafkaError as exc:
        raise KafkaUnavailableError(unavailable_message(settings, exc)) from exc


def ensure_topics(
    settings: KafkaSettings, names_partitions: dict[str, int], replication_factor: int = 1,
    config: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """Create the topics that do not exist yet, with the given partition counts (idempotent)."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, num_partitions=n, replication_factor=replication_factor, topic_configs=config or {})
            for name, n in names_partitions.items()
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new, timeout_ms=30_000)
            log.info("created topics %s", ", ".join(t.name for t in new))
        _wait_for_metadata(admin, set(names_partitions))
    finally:
        admin.close()


def _wait_for_metadata(admin: Any, names: set[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = admin.describe_topics(list(names))
        if all(t.get("error_code", 0) == 0 and t.get("partitions") for t in described):
            return
        time.sleep(0.2)
    raise KafkaUnavailableError(f"topics {sorted(names)} did not appear in the metadata within {timeout_s:.0f}s")


def ensure_vigil_topics(settings: KafkaSettings, topics: TopicSettings) -> None:
    """Create Vigil's four topics: frames and scores co-partitioned, status and DLQ smaller."""
    ensure_topics(
        settings,
        {
            topics.frames: topics.partitions,
            topics.scores: topics.partitions,
            topics.camera_status: min(topics.partitions, 6),
            topics.dlq: min(topics.partitions, 6),
        },
        replication_factor=topics.replication_factor,
    )


def delete_topics(settings: KafkaSettings, names: list[str]) -> None:
    """Delete topics, ignoring those already gone (test clean-up)."""
    from kafka.errors import KafkaError

    admin = make_admin(settings)
    try:
        admin.delete_topics(names, timeout_ms=30_000)
    except KafkaError as exc:
        log.debug("delete_topics %s: %s", names, exc)
    finally:
        admin.close()


def send_dead_letter(producer: Any, dlq_topic: str, letter: DeadLetter, key: bytes | None = None) -> Any:
    """Publish a dead letter (async; returns kafka-python's future) and log it."""
    log.warning(
        "dead-lettered record from %s[%s]@%s (camera %s): %s",
        letter.source_topic, letter.partition, letter.offset, letter.camera_id, letter.error,
    )  # fmt: skip
    return producer.send(dlq_topic, key=key, value=letter.encode())
