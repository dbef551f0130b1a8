"""Fixtures for the ingest tests: short Ped2 clips, a real RTSP server, the service, a frames consumer."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RTSP_SCRIPT = REPO / "infra" / "local" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
GST_PACKAGES = "gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad} python3-gi"


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.fail("ffmpeg is not installed. Install it with: sudo apt-get install -y ffmpeg", pytrace=False)
    return exe


@pytest.fixture(scope="session")
def clips(ped2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Short lossless Ped2 clips cut by stream copy (bit-exact frames): name -> path.

    ``a30``: Train015 frames 0-29 (3 s), ``b30``: Train016 frames 0-29, ``a60``: Train015 frames 0-59.
    """
    out = tmp_path_factory.mktemp("clips")
    spec = {"a30": ("Train015", 30), "b30": ("Train016", 30), "a60": ("Train015", 60)}
    result = {}
    for name, (clip, frames) in spec.items():
        dst = out / f"{name}.mkv"
        src = ped2_dir / "train" / f"{clip}.mkv"
        cmd = [_ffmpeg(), "-v", "error", "-y", "-i", str(src), "-c", "copy", "-frames:v", str(frames), str(dst)]
        subprocess.run(cmd, check=True)
        result[name] = dst
    return result


@dataclass
class RtspServer:
    """A running infra/local/rtsp_server.py process."""

    files: list[Path]
    loop: bool = False
    port: int = 0
    proc: subprocess.Popen | None = None
    urls: list[str] = field(default_factory=list)

    def start(self, timeout_s: float = 20.0) -> RtspServer:
        """Start (or restart on the same port) and wait for the READY line."""
        if not Path(SYSTEM_PYTHON).exists():
            pytest.fail(f"{SYSTEM_PYTHON} is missing; install: sudo apt-get install -y {GST_PACKAGES}", pytrace=False)
        cmd = [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--port", str(self.port), *(["--loop"] if self.loop else []), *map(str, self.files)]
        deadline = time.monotonic() + timeout_s
        while True:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out = self.proc.stdout.readline() if self.proc.stdout else ""
            if out.startswith("READY"):
                break
            self.proc.wait(5)
            err = self.proc.stderr.read() if self.proc.stderr else ""
            if not out.startswith("ERROR cannot listen") or time.monotonic() > deadline:
                pytest.fail(
                    f"the RTSP server did not start (exit {self.proc.returncode}): {out}{err[-2000:]}\n"
                    f"Needs: sudo apt-get install -y {GST_PACKAGES}",
                    pytrace=False,
                )
            time.sleep(0.5)  # the port of a server we just stopped may not be free yet
        fields = out.split()
        self.port = int(fields[1].split("=")[1])
        self.urls = fields[2:]
        return self

    def stop(self) -> None:
        """Terminate the server (as an outage would)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def rtsp_server() -> Iterator[Callable[..., RtspServer]]:
    """Start RTSP servers for this test: rtsp_server([file, ...], loop=False) -> RtspServer (stopped after)."""
    servers: list[RtspServer] = []

    def _start(files: list[Path], loop: bool = False) -> RtspServer:
        server = RtspServer(files=list(files), loop=loop).start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


def write_cameras(path: Path, cameras: list[dict[str, Any]], defaults: dict[str, Any] | None = None) -> Path:
    """Write a cameras YAML file."""
    import yaml

    path.write_text(yaml.safe_dump({"defaults": defaults or {}, "cameras": cameras}, sort_keys=False))
    return path


@pytest.fixture
def ingest_settings(kafka_settings, topic_settings):  # noqa: ANN001, ANN201
    """IngestSettings on this test's own topics (topics already created)."""
    from vigil.services.ingest.settings import IngestSettings

    return IngestSettings(kafka=kafka_settings, topics=topic_settings, ensure_topics=False, realtime=False)


@contextlib.contextmanager
def running_service(settings: Any, cameras: Any) -> Iterator[Any]:
    """An IngestService started in this process and stopped afterwards."""
    from vigil.services.ingest.core import IngestService

    service = IngestService(settings, cameras)
    service.start()
    try:
        yield service
    finally:
        service.stop()


class TopicReader:
    """Reads a topic from the beginning with its own consumer group and decodes the records."""

    def __init__(self, kafka_settings: Any, topic: str) -> None:
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(
            topic, group_id=f"test.ingest.{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest",
            enable_auto_commit=False, **kafka_settings.kafka_python_kwargs(),
        )  # fmt: skip
        self.records: list[Any] = []

    def poll(self, seconds: float = 0.5) -> list[Any]:
        """Poll once; returns the new raw records (also kept in ``records``)."""
        batch = self.consumer.poll(timeout_ms=int(seconds * 1000))
        new = [r for part in batch.values() for r in part]
        self.records.extend(new)
        return new

    def until(self, predicate: Callable[[list[Any]], bool], timeout_s: float) -> bool:
        """Poll until ``predicate(records)`` holds or the time is up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll(0.3)
            if predicate(self.records):
                return True
        return predicate(self.records)

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()


@pytest.fixture
def topic_reader(kafka_settings) -> Iterator[Callable[[str], TopicReader]]:  # noqa: ANN001
    """topic_reader(topic) -> TopicReader, closed after the test."""
    readers: list[TopicReader] = []

    def _make(topic: str) -> TopicReader:
        reader = TopicReader(kafka_settings, topic)
        readers.append(reader)
        return reader

    yield _make
    for reader in readers:
        reader.close()


def decode_frames(records: list[Any], camera_id: str | None = None) -> list[Any]:
    """FrameMessages from raw records, optionally for one camera, in offset order per partition."""
    from vigil.shared.schemas import FrameMessage

    msgs = [FrameMessage.decode(r.value) for r in sorted(records, key=lambda r: (r.partition, r.offset))]
    return [m for m in msgs if camera_id is None or m.camera_id == camera_id]


def decode_status(records: list[Any], camera_id: str | None = None) -> list[Any]:
    """CameraStatus records, in offset order per partition."""
    from vigil.shared.schemas import CameraStatus

    msgs = [CameraStatus.decode(r.value) for r in sorted(records, key=lambda r: (r.partition, r.offset))]
    return [m for m in msgs if camera_id is None or m.camera_id == camera_id]


def reference_frames(path: Path, width: int = 180, height: int = 120) -> list[Any]:
    """The clip's frames decoded by PyAV to gray and resized with INTER_AREA, computed independently."""
    import av
    import cv2

    with av.open(str(path)) as container:
        return [
            cv2.resize(f.to_ndarray(format="gray"), (width, height), interpolation=cv2.INTER_AREA)
            for f in container.decode(video=0)
        ]


@pytest.fixture
def python() -> str:
    """The venv's Python, for subprocess tests."""
    return sys.executable
