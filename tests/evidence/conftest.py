"""Fixtures of the evidence tests: real Ped2 frames, settings on the test's own topics / stream / groups, and a
`vigil evidence` service run in a thread against the real Kafka and Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FPS = 10
S = 1_000_000_000


@pytest.fixture(scope="session")
def ped2_frames() -> np.ndarray:
    """The first 80 frames of the shipped mini set's Test001 as ingest publishes them: (80, 120, 180, 1) gray."""
    from vigil.model.data import read_video

    path = REPO / "data" / "ped2-mini" / "test" / "Test001.mkv"
    if not path.exists():
        pytest.fail(f"the shipped mini set is missing: {path} (see docs/data.md)")
    return read_video(path, 120, 180, 1)[:80]


@pytest.fixture
def evidence_settings(topic_settings, unique_name):  # noqa: ANN001, ANN201
    """EvidenceSettings on this test's own topics, alert stream, Kafka group and Redis group; short windows."""
    from vigil.services.evidence.settings import EvidenceSettings

    return EvidenceSettings(
        topics=topic_settings, group_id=unique_name("evidence"), alerts_stream=unique_name("alerts"),
        alerts_group=unique_name("evidence-group"), alerts_from_start=True, before_s=1.0, after_s=1.0,
        preliminary_after_s=0.2, final_grace_s=1.0, retention_s=3600, poll_ms=50, latest_frame_every_s=0.3,
        latest_frame_ttl_s=30,
    )  # fmt: skip


@dataclass
class Feed:
    """Publishes real frames (and scores with an error map) of one camera, with capture times in the recent past."""

    kafka: Any
    topics: Any
    camera: str
    t0_ns: int = field(default_factory=lambda: time.time_ns() - 8 * S)
    producer: Any = None

    def capture_ns(self, seq: int) -> int:
        """Capture time of frame ``seq`` (10 fps from ``t0_ns``)."""
        return self.t0_ns + seq * S // FPS

    def frames(self, images: np.ndarray, first: int = 0) -> None:
        """Publish ``images`` as frames ``first``.. (gray8)."""
        from vigil.shared.schemas import FrameMessage

        for i, image in enumerate(images):
            seq = first + i
            msg = FrameMessage.from_pixels(self.camera, seq=seq, pts=seq / FPS, capture_ns=self.capture_ns(seq), image=image)
            self._send(self.topics.frames, msg.encode())

    def score(self, seq: int, heat: np.ndarray) -> None:
        """Publish the score of frame ``seq`` with ``heat`` as its error map."""
        from vigil.shared.schemas import ErrorFeatures, ScoreMessage

        payload, scale = ScoreMessage.quantize_heatmap(heat)
        msg = ScoreMessage(camera_id=self.camera, seq=seq, capture_ns=self.capture_ns(seq), processed_ns=time.time_ns(),
                           model_id="m", model_version="1", warmup=False, latency_ms=1.0,
                           features=ErrorFeatures(mse=0.01, psnr=30.0, patch_max=0.1), heatmap_height=heat.shape[0],
                           heatmap_width=heat.shape[1], heatmap_scale=scale, payload=payload)  # fmt: skip
        self._send(self.topics.scores, msg.encode())

    def _send(self, topic: str, value: bytes) -> None:
        if self.producer is None:
            from vigil.shared.kafka import make_producer

            self.producer = make_producer(self.kafka)
        self.producer.send(topic, key=self.camera.encode(), value=value)

    def flush(self) -> None:
        """Wait until Kafka has every record."""
        if self.producer is not None:
            self.producer.flush(10)

    def close(self) -> None:
        """Close the producer."""
        if self.producer is not None:
            self.producer.close(5)


@pytest.fixture
def feed(kafka_settings, evidence_settings, unique_name) -> Iterator[Callable[[], Feed]]:  # noqa: ANN001
    """``feed()`` -> a :class:`Feed` of a camera of this test's own (closed after the test)."""
    made: list[Feed] = []

    def _make() -> Feed:
        made.append(Feed(kafka_settings, evidence_settings.topics, unique_name("cam")))
        return made[-1]

    yield _make
    for f in made:
        f.close()


class Running:
    """A `vigil evidence` service built by its own ``build_service`` and run in a thread, like `vigil evidence`."""

    def __init__(self, settings: Any) -> None:
        from vigil.services.evidence.transport import build_service

        self.service = build_service(settings)
        self.service.start()
        self.thread = threading.Thread(target=self.service.wait, name="test-evidence", daemon=True)
        self.thread.start()

    def wait_assigned(self, timeout_s: float = 30.0) -> None:
        """Wait until the service is ready: partitions assigned and the ring refilled from ``ring_age_s`` ago."""
        wait_for(self.service.ready, timeout_s, "the evidence feed got no partitions, or its ring did not refill")

    def stop(self, flush: bool = True) -> None:
        """End the loop; ``flush``: as on SIGTERM (pending evidence written), else as a crash (nothing written)."""
        self.service.request_stop()
        self.thread.join(30)
        if flush:
            self.service.stop()
        else:
            self.service.feed.consumer.close(autocommit=False)


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``condition`` every 0.1 s until it is truthy (returned); fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s:g}s: {what}")


@pytest.fixture
def run_evidence() -> Iterator[Callable[[Any], Running]]:
    """``run_evidence(settings)`` -> a :class:`Running` service, stopped (flushed) after the test if still running."""
    started: list[Running] = []

    def _run(settings: Any) -> Running:
        started.append(Running(settings))
        return started[-1]

    yield _run
    for r in started:
        if r.thread.is_alive():
            r.stop()
