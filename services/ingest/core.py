"""The core of the ingest service: one reader thread per camera and the bounded publisher.

Process model: one process reads many cameras, one thread each, with one shared Kafka producer.
PyAV (FFmpeg), swscale and OpenCV release the GIL while they work, so the threads spread over the
cores; a 360x240 camera at 10 fps costs about 1% of a core. Beyond what one process can decode, run
one process per camera group (several cameras files), e.g. one ingest pod per group.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import yaml

from vigil.services.ingest.camera import CameraReader
from vigil.services.ingest.publisher import Publisher
from vigil.services.ingest.settings import IngestSettings
from vigil.shared.cameras import CamerasConfig, RejectedCamera
from vigil.shared.logging import mask_url
from vigil.shared.schemas import CameraStatus, DeadLetter
from vigil.shared.telemetry import Heartbeat

log = logging.getLogger(__name__)


class IngestService:
    """Cameras -> Kafka: one reader thread per camera and one bounded publisher.

    Driven by :func:`vigil.shared.runner.run_service` (``start``, ``wait``, ``stop``) or directly by tests
    and benchmarks (``start``, then ``stop``).

    Args:
        settings: service settings (topics, buffer, shutdown time).
        cameras: validated cameras; rejected entries are reported as offline + dead letter.
        producer: the Kafka producer (``send`` / ``flush`` / ``close`` / ``reset``); the lazily connecting
            kafka-python one of :mod:`vigil.services.ingest.transport` when None.
    """

    def __init__(self, settings: IngestSettings, cameras: CamerasConfig, producer: Any = None) -> None:
        self.settings = settings
        self.cameras = cameras
        self.stop_event = threading.Event()
        if producer is None:
            from vigil.services.ingest.transport import LazyProducer

            producer = LazyProducer(settings)
        self.publisher = Publisher(
            producer, settings.topics, buffer_frames=settings.buffer_frames,
            max_frame_age_s=settings.max_frame_age_s, max_inflight_bytes=settings.max_inflight_bytes,
        )  # fmt: skip
        self.readers = [CameraReader(cam, self.publisher, self.stop_event, settings.realtime) for cam in cameras.cameras]
        self.heartbeat = Heartbeat(settings.heartbeat_timeout_s)

    def start(self) -> None:
        """Start the publisher and every camera, and report the rejected cameras."""
        self.publisher.start()
        for rejected in self.cameras.errors:
            self._report_rejected(rejected)
        for reader in self.readers:
            log.info("camera %s: starting (%s)", reader.cam.id, reader.cam.masked_url)
            reader.start()

    def ready(self) -> bool:
        """Ready once Kafka acknowledged a record (connected) while sends succeed and the loops are alive."""
        return self.publisher.sent > 0 and self.publisher.kafka_ok and self.heartbeat.alive()

    def wait(self) -> int:
        """Block until a stop is requested or every camera has ended; returns 0.

        Beats :attr:`heartbeat` (``/healthz``) every half second while the publisher thread also loops: a
        stuck publisher stops the beat, so the orchestrator restarts the process.
        """
        while not self.stop_event.wait(0.5):
            if self.publisher.loop_age() < self.heartbeat.timeout_s:
                self.heartbeat.beat()
            if self.readers and not any(r.thread.is_alive() for r in self.readers):
                log.info("every camera has ended")
                break
        return 0

    def request_stop(self) -> None:
        """Ask the cameras and :meth:`wait` to stop (safe in a signal handler)."""
        self.stop_event.set()

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
        log.info("ingest stopped")
