"""The Kafka side of ingest: a kafka-python producer that is created on first use and replaced when wedged,
and :func:`build_service`, which wires it to the core for the runner.

The pure core (:mod:`vigil.services.ingest.core`, :mod:`~vigil.services.ingest.publisher`) only calls
``send`` / ``flush`` / ``close`` / ``reset``; tests hand it a producer of their own.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from vigil.services.ingest.settings import IngestSettings

if TYPE_CHECKING:
    from vigil.services.ingest.core import IngestService


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
                self._producer = make_producer(self.settings.kafka, self.settings.producer)
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


def build_service(settings: IngestSettings) -> IngestService:
    """Load and validate the cameras file and wire the service to Kafka (for :func:`~vigil.shared.runner.run_service`).

    Raises:
        StartupError: the file cannot be used, or it has invalid cameras and ``strict`` is set (or none is valid).
    """
    from vigil.services.ingest.core import IngestService
    from vigil.shared.cameras import ConfigError, load_cameras
    from vigil.shared.runner import StartupError

    try:
        cameras = load_cameras(settings.cameras_file)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    if cameras.errors and (settings.strict or not cameras.cameras):
        raise StartupError(f"invalid cameras file {settings.cameras_file}:\n{cameras.error_text()}")
    return IngestService(settings, cameras, LazyProducer(settings))
