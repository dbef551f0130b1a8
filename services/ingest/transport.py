"""The Kafka side of ingest: a kafka-python producer that is created on first use and replaced when wedged.

The pure core (:mod:`vigil.services.ingest.core`, :mod:`~vigil.services.ingest.publisher`) only calls
``send`` / ``flush`` / ``close`` / ``reset``; tests hand it a producer of their own.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from vigil.services.ingest.settings import IngestSettings


class LazyProducer:
    """Creates the kafka-python producer on first use, so the service starts while Kafka is down."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._producer: Any = None
        self._next_try = 0.0

    def _get(self) -> Any:
        from kafka.errors import KafkaError, KafkaTimeoutError

        from vigil.shared.kafka import make_producer

        if self._producer is None:
            if time.monotonic() < self._next_try:
                raise KafkaTimeoutError("Kafka producer not connected yet")
            try:
                self._producer = make_producer(self.settings.kafka, **self.settings.producer_kwargs())
            except KafkaError as exc:
                self._next_try = time.monotonic() + 2.0
                raise KafkaTimeoutError(f"cannot create the Kafka producer: {exc}") from exc
        return self._producer

    def send(self, topic: str, key: bytes | None, value: bytes) -> Any:
        """KafkaProducer.send, creating the producer when needed."""
        return self._get().send(topic, key=key, value=value)

    def flush(self, timeout: float | None = None) -> None:
        """Flush if a producer exists."""
        if self._producer is not None:
            self._producer.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        """Close if a producer exists."""
        if self._producer is not None:
            self._producer.close(timeout=timeout)

    def reset(self) -> None:
        """Drop the current producer (closed in the background); the next send builds a new one.

        kafka-python's idempotent producer can wedge after a broker restart expired some of its
        batches (its sequence numbers no longer match the broker's); a new producer starts clean.
        """
        old, self._producer = self._producer, None
        if old is not None:
            threading.Thread(target=old.close, kwargs={"timeout": 0}, name="producer-close", daemon=True).start()
