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
from typing import Any

import yaml

from vigil.services.ingest.camera import CameraReader
from vigil.services.ingest.publisher import Publisher
from vigil.services.ingest.settings import IngestSettings
from vigil.services.ingest.transport import LazyProducer
from vigil.shared.cameras import CamerasConfig, RejectedCamera
from vigil.shared.logging import mask_url
from vigil.shared.schemas import CameraStatus, DeadLetter

log = logging.getLogger(__name__)


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
