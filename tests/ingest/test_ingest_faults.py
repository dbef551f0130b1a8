"""Ingest under odd sources and hostile configuration (issue #15): resolution changes, pts jumps, secrets in
URLs, health and readiness. No servers needed."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from conftest import write_cameras
from prometheus_client import REGISTRY

from vigil.services.ingest.camera import CameraReader, _Session
from vigil.shared.cameras import load_cameras


class FakeFrame(np.ndarray):
    """A decoded frame as PyAV gives it, enough for the reader: pixels plus time / size / is_corrupt."""

    time: float
    is_corrupt = False

    @classmethod
    def make(cls, height: int, width: int, t: float) -> FakeFrame:
        frame = np.zeros((height, width), np.uint8).view(cls)
        frame.time = t
        return frame

    @property
    def height(self) -> int:  # noqa: D102
        return self.shape[0]

    @property
    def width(self) -> int:  # noqa: D102
        return self.shape[1]


class Sink:
    """Collects what a camera publishes."""

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.statuses: list[Any] = []
        self.letters: list[Any] = []

    def publish_frame(self, msg: Any) -> None:  # noqa: D102
        self.frames.append(msg)

    def publish_status(self, status: Any) -> None:  # noqa: D102
        self.statuses.append(status)

    def publish_dead_letter(self, letter: Any) -> None:  # noqa: D102
        self.letters.append(letter)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def file_camera(tmp_path: Path, cam_id: str) -> Any:
    clip = tmp_path / "clip.mkv"
    clip.write_bytes(b"x")
    (cam,) = load_cameras(write_cameras(tmp_path / "c.yaml", [{"id": cam_id, "url": str(clip), "fps": 10,
                                                              "width": 12, "height": 8}])).cameras  # fmt: skip
    return cam


def test_resolution_change_and_pts_jump_on_a_realtime_file_are_handled_and_counted(tmp_path: Path) -> None:
    cam = file_camera(tmp_path, "jumpy")
    sink = Sink()
    reader = CameraReader(cam, sink, threading.Event(), realtime=True)
    session = _Session(reader, type("Stream", (), {"average_rate": 10, "guessed_rate": None})())
    frames = [FakeFrame.make(240, 360, t) for t in (0.0, 0.1, 0.2)] + [FakeFrame.make(480, 640, t) for t in (0.3, 0.4)]
    frames += [FakeFrame.make(480, 640, t) for t in (3600.0, 3600.1)]  # the file's pts jump an hour ahead
    before = {e: _metric("vigil_ingest_stream_events_total", camera="jumpy", event=e) for e in ("resolution_change", "pts_jump")}
    done = threading.Event()

    def run() -> None:
        for frame in frames:
            session.frame(frame)
        done.set()

    started = time.monotonic()
    threading.Thread(target=run, daemon=True).start()
    finished = done.wait(5.0)
    reader.stop.set()  # unblocks a reader asleep in the jump, so a failing run ends
    assert finished, "the reader slept through a forward pts jump instead of re-anchoring its pacing"
    assert time.monotonic() - started < 2.0
    assert [m.pts for m in sink.frames] == [0.0, 0.1, 0.2, 0.3, 0.4, 3600.0, 3600.1]
    sessions = [m.session for m in sink.frames]
    assert sessions[:3] == [sessions[0]] * 3 and sessions[3:] == [sessions[0] + 1] * 4
    assert all(m.pixels().shape == (8, 12, 1) for m in sink.frames)
    for event in ("resolution_change", "pts_jump"):
        assert _metric("vigil_ingest_stream_events_total", camera="jumpy", event=event) == before[event] + 1


SECRET = "p/a?s#s@w0rd x"  # every character that breaks a URL


def test_credentials_with_url_characters_are_masked_whole_in_logs_errors_and_status(tmp_path: Path) -> None:
    from urllib.parse import quote

    from vigil.services.ingest.source import describe_error
    from vigil.shared.logging import mask_url

    escaped = quote(SECRET, safe="")
    for url in (f"rtsp://admin:{escaped}@10.0.0.5:554/live", f"rtsp://admin:{SECRET.replace(' ', '')}@10.0.0.5/live",
                f"http://10.0.0.5/snap?user=a&password={escaped}", f"http://10.0.0.5/mjpg?token={escaped}&x=1"):
        for text in (mask_url(f"cannot open {url}: refused"), describe_error(OSError(f"{url}: Connection refused"))):
            assert escaped not in text and "w0rd" not in text and "p/a" not in text and "s#s" not in text, text
            assert "10.0.0.5" in text, text


def test_ingest_is_ready_after_kafka_acknowledges_and_unhealthy_when_the_publisher_stops() -> None:
    from test_ingest_units import FlakyProducer

    from vigil.services.ingest.core import IngestService
    from vigil.services.ingest.settings import IngestSettings
    from vigil.shared.cameras import CamerasConfig
    from vigil.shared.schemas import CameraStatus

    producer = FlakyProducer()
    svc = IngestService(IngestSettings(heartbeat_timeout_s=1), CamerasConfig(), producer)
    svc.start()
    try:
        assert not svc.ready(), "not ready before Kafka took anything"
        producer.up.set()
        svc.publisher.publish_status(CameraStatus(camera_id="c", state="online"))
        deadline = time.monotonic() + 5
        while not svc.ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert svc.ready()
        svc.publisher._stop.set()  # the publisher thread ends while the service goes on: a stuck service
        svc.publisher._thread.join(2)
        svc.publisher._stop.clear()
        threading.Thread(target=svc.wait, daemon=True).start()
        time.sleep(1.6)
        assert not svc.heartbeat.alive() and not svc.ready()
    finally:
        svc.request_stop()
        svc.stop()
