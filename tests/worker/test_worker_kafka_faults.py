"""`vigil worker` against the real Kafka under faults (issue #15): a frame that breaks the model, stale and
future frames, two ingests of one camera, and the health endpoints. One worker subprocess, ~30 s."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from worker_fake_predictor import FakePredictor
from worker_harness import TopicReader, WorkerEnv, start_worker, wait_for

from vigil.shared.kafka import make_producer
from vigil.shared.schemas import CameraStatus, DeadLetter, FrameMessage, ScoreMessage

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def send(producer, topic: str, cam: str, seq: int, img: np.ndarray, *, capture_ns: int | None = None,
         session: int = 1) -> None:  # noqa: ANN001
    msg = FrameMessage.from_pixels(cam, seq=seq, pts=seq / 10, capture_ns=capture_ns or time.time_ns(), image=img,
                                   session=session)  # fmt: skip
    producer.send(topic, key=cam.encode(), value=msg.encode())


def test_worker_isolates_faults_and_reports_what_it_skips(kafka_settings, topic_settings, unique_name,
                                                          tmp_path: Path) -> None:  # noqa: ANN001
    model_dir = FakePredictor.write(tmp_path / "model", height=8, width=12, version="1")
    port = free_port()
    env = WorkerEnv(topic_settings, unique_name("worker"), model_dir, predictor="worker_fake_predictor:PoisonedPredictor",
                    extra={"VIGIL_WORKER_STALENESS_S": "5", "VIGIL_WORKER_REPORT_INTERVAL_S": "1",
                           "VIGIL_WORKER_METRICS_PORT": str(port), "VIGIL_WORKER_MAX_BATCH": "64",
                           "VIGIL_WORKER_MAX_WAIT_S": "0.5"})  # fmt: skip
    producer = make_producer(kafka_settings)
    readers = {name: TopicReader(kafka_settings, getattr(topic_settings, name)) for name in ("scores", "dlq", "camera_status")}
    worker = start_worker(env, tmp_path, "w1")
    img, white = np.zeros((8, 12, 1), np.uint8), np.full((8, 12, 1), 255, np.uint8)
    f = topic_settings.frames
    try:
        wait_for(lambda: http_get(port, "/readyz")[0] == 200, 60, "/readyz 200 (assigned)", [worker])
        assert http_get(port, "/healthz") == (200, "ok\n")
        for seq in range(3):
            send(producer, f, "cam-a", seq, img)
        send(producer, f, "cam-bad", 0, white)  # breaks the model: costs this frame only
        old = time.time_ns() - 60 * 10**9
        for seq in range(5):
            send(producer, f, "cam-stale", seq, img, capture_ns=old)
        send(producer, f, "cam-future", 0, img, capture_ns=time.time_ns() + 3 * 86_400 * 10**9)
        for seq in range(6):  # two ingests publish cam-two: sessions alternate
            send(producer, f, "cam-two", 100 + seq, img, session=2000 if seq % 2 else 1000)
        producer.flush()

        def dlq_errors() -> list[str]:
            return [DeadLetter.decode(r.value).error for r in readers["dlq"].poll()]

        wait_for(lambda: any("skipped: 5 frames of camera cam-stale" in e for e in dlq_errors()), 40,
                 "the skipped-frames dead letter", [worker])  # fmt: skip
        wait_for(lambda: readers["camera_status"].poll(), 20, "a camera status about two ingests", [worker])
        wait_for(lambda: len(readers["scores"].poll()) >= 3 + 4, 20, "scores", [worker])
        metrics = http_get(port, "/metrics")[1]
    finally:
        worker.stop()
        producer.close()
        for reader in readers.values():
            reader.close()
    errors = [DeadLetter.decode(r.value).error for r in readers["dlq"].records]
    assert any("model step failed on this frame" in e for e in errors), errors
    assert any("ahead of this worker's clock" in e for e in errors), errors
    scores = [ScoreMessage.decode(r.value) for r in readers["scores"].records]
    assert sorted(s.seq for s in scores if s.camera_id == "cam-a") == [0, 1, 2]
    assert [s.session for s in scores if s.camera_id == "cam-two"] == [1000, 2000, 2000, 2000]
    (status,) = [CameraStatus.decode(r.value) for r in readers["camera_status"].records]
    assert status.camera_id == "cam-two" and "two ingest processes" in status.reason and status.session == 2000
    assert 'vigil_worker_frames_skipped_total{camera="cam-stale",reason="stale"} 5.0' in metrics
    assert 'vigil_worker_frames_refused_total{reason="future"} 1.0' in metrics
