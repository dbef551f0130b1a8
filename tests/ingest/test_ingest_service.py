"""The service as a process (CLI, SIGTERM), file sources with audio, and Kafka going away and coming back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import decode_frames, decode_status, running_service, write_cameras
from prometheus_client import REGISTRY

from vigil.shared.cameras import load_cameras

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def av_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of 320x240 H.264 at 25 fps with an AAC audio track stored FIRST (stream 0 is audio)."""
    out = tmp_path_factory.mktemp("av") / "av.mkv"
    cmd = [
        "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=4",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-map", "1:a", "-map", "0:v",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return out


def test_cli_realtime_file_with_audio_and_sigterm(tmp_path, av_clip, kafka_settings, topic_settings, topic_reader) -> None:
    cams = write_cameras(tmp_path / "cameras.yaml", [{"id": "replay", "url": str(av_clip), "loop": True, "fps": 10}])
    env = os.environ | {
        "VIGIL_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "VIGIL_TOPICS_FRAMES": topic_settings.frames, "VIGIL_TOPICS_CAMERA_STATUS": topic_settings.camera_status,
        "VIGIL_TOPICS_DLQ": topic_settings.dlq, "VIGIL_TOPICS_SCORES": topic_settings.scores,
        "VIGIL_TOPICS_PARTITIONS": "4",
    }  # fmt: skip
    vigil = Path(os.sys.executable).parent / "vigil"
    proc = subprocess.Popen([str(vigil), "ingest", "--cameras", str(cams), "--realtime"], env=env,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    frames = topic_reader(topic_settings.frames)
    try:
        assert frames.until(lambda r: len(r) >= 45, timeout_s=25), "the CLI published too few frames"
    finally:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err[-3000:]
    assert time.monotonic() - started < 6, "SIGTERM took too long"
    msgs = decode_frames(frames.records)
    first = [m for m in msgs if m.session == msgs[0].session]
    assert len(first) == 40  # 4 s at 25 fps sampled to 10 fps (by pts), then the loop starts a new session
    assert msgs[-1].session > msgs[0].session
    assert [m.seq for m in msgs] == list(range(msgs[0].seq, msgs[0].seq + len(msgs)))
    # real time: wall-clock spacing follows the presentation time
    wall = (first[-1].capture_ns - first[0].capture_ns) / 1e9
    assert wall == pytest.approx(first[-1].pts - first[0].pts, abs=0.3)
    assert (first[0].width, first[0].height) == (180, 120)
    status = topic_reader(topic_settings.camera_status)
    status.until(lambda r: any(s.state == "offline" for s in decode_status(r)), timeout_s=5)
    assert [s.state for s in decode_status(status.records)][-1] == "offline", err[-3000:]
    assert "Traceback" not in err


class _Forwarder:
    """A TCP port forwarder that can be switched on later: Kafka 'comes back'."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server: socket.socket | None = None

    def start(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            b.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_kafka_down_bounded_buffer_then_resumes(tmp_path, clips, kafka_settings, ingest_settings, topic_reader) -> None:
    host, _, port = kafka_settings.servers[0].rpartition(":")
    forwarder = _Forwarder((host, int(port)))
    down = kafka_settings.model_copy(update={"bootstrap_servers": f"127.0.0.1:{forwarder.port}"})
    settings = ingest_settings.model_copy(update={"kafka": down, "buffer_frames": 40,
                                                  "producer": ingest_settings.producer.model_copy(update={"bootstrap_timeout_ms": 1000})})
    cams = write_cameras(tmp_path / "cameras.yaml", [{"id": "kdown", "url": str(clips["a60"]), "loop": True}])
    frames = topic_reader(settings.topics.frames)

    def dropped() -> float:
        return REGISTRY.get_sample_value("vigil_ingest_frames_dropped_total", {"camera": "kdown", "reason": "buffer_full"}) or 0

    before = dropped()
    try:
        with running_service(settings, load_cameras(cams)) as service:
            time.sleep(2.5)  # Kafka unreachable: frames (as fast as the file decodes) pile into a 40-frame buffer
            reader = service.readers[0]
            assert reader.seq - reader.first_seq > 100, "the camera should keep reading while Kafka is down"
            assert len(service.publisher.frames) <= 40
            assert dropped() - before >= reader.seq - reader.first_seq - 40 - 5
            forwarder.start()  # Kafka is back
            assert frames.until(lambda r: len(r) >= 100, timeout_s=20), "publishing did not resume"
            assert service.publisher.kafka_ok
    finally:
        forwarder.close()
    msgs = decode_frames(frames.records)
    assert [m.seq for m in msgs] == sorted(m.seq for m in msgs)  # still in order, with a gap for the drops
    assert msgs[0].seq - reader.first_seq > 40
