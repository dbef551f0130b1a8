"""The ingest service: settings, the producer, one reader thread per camera, and ``main``.

Process model: one process reads many cameras, one thread each, with one shared Kafka producer.
PyAV (FFmpeg), swscale and OpenCV release the GIL while they work, so the threads spread over the
cores; a 360x240 camera at 10 fps costs about 1% of a core. Beyond what one process can decode, run
one process per camera group (several cameras files), e.g. one ingest pod per group.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil.services.ingest.camera import CameraReader
from vigil.services.ingest.publisher import Publisher
from vigil.shared.cameras import CamerasConfig, RejectedCamera
from vigil.shared.logging import mask_url
from vigil.shared.schemas import CameraStatus, DeadLetter
from vigil.shared.settings import ServiceSettings

log = logging.getLogger(__name__)


class IngestSettings(ServiceSettings):
    """Settings of the ingest service (environment prefix ``VIGIL_INGEST_``)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_INGEST_", extra="ignore")

    cameras_file: Path = Field(Path("cameras.yaml"), description="The cameras YAML file")
    realtime: bool = Field(True, description="Read local files at native speed (False = as fast as possible)")
    strict: bool = Field(False, description="Refuse to start if any camera entry is invalid")
    ensure_topics: bool = Field(True, description="Create the Vigil topics at start if missing")
    buffer_frames: int = Field(256, ge=1, le=100_000, description="Frames held while Kafka is slow or down")
    max_frame_age_s: float = Field(10.0, gt=0, le=3600, description="Frames older than this are not sent")
    shutdown_timeout_s: float = Field(4.0, gt=0, le=60, description="Time to flush on SIGTERM")
    # producer, tuned for many small (~22 KB) frames per second that must stay in order per camera
    acks: Literal["all", "1", "0"] = Field("all", description="'all' is needed by idempotence")
    idempotence: bool = Field(True, description="No duplicates or reordering when the producer retries")
    linger_ms: int = Field(10, ge=0, le=1000, description="Wait this long to fill a batch")
    batch_size: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024, description="Bytes per partition batch")
    compression: Literal["none", "lz4", "gzip", "snappy", "zstd"] = Field("lz4", description="Batch compression")
    max_inflight_bytes: int = Field(16 * 1024 * 1024, ge=1024 * 1024, description="Bytes given to the producer, not yet acked")
    max_block_ms: int = Field(1000, ge=0, le=60_000, description="How long send() may block when Kafka is down")
    delivery_timeout_ms: int = Field(15_000, ge=1000, description="A record not acknowledged by then is dropped")
    producer_request_timeout_ms: int = Field(10_000, ge=1000, description="One produce request's timeout")
    bootstrap_timeout_ms: int = Field(3000, ge=100, description="Creating the producer gives up after this (retried)")

    def producer_kwargs(self) -> dict[str, Any]:
        """kafka-python KafkaProducer arguments for this workload."""
        return {
            "acks": self.acks if self.acks == "all" else int(self.acks),
            "enable_idempotence": self.idempotence and self.acks == "all",
            "linger_ms": self.linger_ms,
            "batch_size": self.batch_size,
            "compression_type": None if self.compression == "none" else self.compression,
            "max_block_ms": self.max_block_ms,
            "delivery_timeout_ms": self.delivery_timeout_ms,
            "request_timeout_ms": self.producer_request_timeout_ms,
            "max_in_flight_requests_per_connection": 5,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
        }


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


class IngestService:
    """Cameras -> Kafka. ``start()``, then ``stop()`` (or ``run()`` until SIGTERM).

    Args:
        settings: service settings (Kafka, topics, producer, buffer).
        cameras: validated cameras; rejected entries are reported as offline + dead letter.
        producer: a producer to use instead of building one (tests).
    """

    def __init__(self, settings: IngestSettings, cameras: CamerasConfig, producer: Any = None) -> None:
        self.settings = settings
        self.cameras = cameras
        self.stop_event = threading.Event()
        self.publisher = Publisher(
            producer if producer is not None else LazyProducer(settings), settings.topics,
            buffer_frames=settings.buffer_frames, max_frame_age_s=settings.max_frame_age_s,
            max_inflight_bytes=settings.max_inflight_bytes,
        )  # fmt: skip
        self.readers = [CameraReader(cam, self.publisher, self.stop_event, settings.realtime) for cam in cameras.cameras]
        self._http: Any = None

    def start(self) -> None:
        """Create topics (if asked), start the publisher and every camera, report rejected cameras."""
        if self.settings.ensure_topics:
            self._ensure_topics()
        self.publisher.start()
        for rejected in self.cameras.errors:
            self._report_rejected(rejected)
        for reader in self.readers:
            log.info("camera %s: starting (%s)", reader.cam.id, reader.cam.masked_url)
            reader.start()
        if self.settings.metrics_port:
            from vigil.shared.telemetry import start_http

            self._http = start_http(self.settings.metrics_port, ready=lambda: self.publisher.kafka_ok)

    def _ensure_topics(self) -> None:
        from vigil.shared.kafka import KafkaUnavailableError, ensure_vigil_topics

        try:
            ensure_vigil_topics(self.settings.kafka, self.settings.topics)
        except KafkaUnavailableError as exc:
            log.warning("could not check the topics (%s); publishing will wait for Kafka", exc)

    def _report_rejected(self, rejected: RejectedCamera) -> None:
        log.error("camera %s: rejected: %s", rejected.who, rejected.message)
        original = mask_url(yaml.safe_dump(rejected.entry, sort_keys=False)).encode() if rejected.entry is not None else b""
        self.publisher.publish_dead_letter(DeadLetter.for_record(
            source_topic=f"config:{self.settings.cameras_file.name}", partition=-1, offset=-1, service="ingest",
            error=f"invalid camera config: {rejected.message}", original=original, camera_id=rejected.who[:256],
        ))  # fmt: skip
        try:
            status = CameraStatus(camera_id=rejected.who, state="offline", reason=f"invalid config: {rejected.message}"[:2000])
        except ValueError:  # no usable id (e.g. "#3"): the dead letter is the record
            return
        self.publisher.publish_status(status)

    def stop(self) -> None:
        """Stop the cameras, send what is buffered, flush and close; returns within ``shutdown_timeout_s``."""
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        self.stop_event.set()
        for reader in self.readers:
            reader.thread.join(max(0.0, min(1.0, deadline - time.monotonic() - 1.0)))
        self.publisher.stop(max(0.5, deadline - time.monotonic()))
        if self._http is not None:
            self._http.shutdown()
        log.info("ingest stopped")

    def run(self) -> None:
        """Start, wait for SIGTERM / SIGINT (or every camera to end), then stop."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: self.stop_event.set())
        self.start()
        while not self.stop_event.wait(0.5):
            if self.readers and not any(r.thread.is_alive() for r in self.readers):
                log.info("every camera has ended")
                break
        self.stop()


def main(settings: IngestSettings) -> int:
    """Load the cameras, run the service until stopped; returns the exit code."""
    from vigil.shared.cameras import ConfigError, load_cameras
    from vigil.shared.logging import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    try:
        cameras = load_cameras(settings.cameras_file)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if cameras.errors and (settings.strict or not cameras.cameras):
        log.error("invalid cameras file %s:\n%s", settings.cameras_file, cameras.error_text())
        return 2
    IngestService(settings, cameras).run()
    return 0
