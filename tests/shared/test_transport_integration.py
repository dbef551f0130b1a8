"""Real Kafka and Redis: 1,000 frames for 4 cameras through kafka-python -> aiokafka and -> faust;
Redis stream + pub/sub with AUTH. Each test has its own topics and consumer group."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from vigil.shared.kafka import make_producer
from vigil.shared.schemas import Alert, FrameMessage

pytestmark = pytest.mark.integration

CAMERAS, PER_CAMERA = 4, 250


def _produce_frames(kafka_settings, topic: str) -> None:  # noqa: ANN001
    producer = make_producer(kafka_settings)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (30, 45, 1), dtype=np.uint8)
    for seq in range(PER_CAMERA):
        for c in range(CAMERAS):
            msg = FrameMessage.from_pixels(f"cam-{c}", seq=seq, pts=seq / 10, capture_ns=time.time_ns(), image=img)
            producer.send(topic, key=msg.camera_id.encode(), value=msg.encode())
    producer.flush(timeout=30)
    producer.close()


def _check_complete_in_order(seen: dict[str, list[int]]) -> None:
    assert sorted(seen) == [f"cam-{c}" for c in range(CAMERAS)]
    for cam, seqs in seen.items():
        assert seqs == list(range(PER_CAMERA)), f"{cam}: out of order or incomplete ({len(seqs)} frames)"


def test_kafka_python_to_aiokafka(kafka_settings, make_topics) -> None:  # noqa: ANN001
    from aiokafka import AIOKafkaConsumer

    topic = make_topics(frames=4)["frames"]
    _produce_frames(kafka_settings, topic)

    async def consume() -> dict[str, list[int]]:
        seen: dict[str, list[int]] = defaultdict(list)
        consumer = AIOKafkaConsumer(topic, group_id=f"test-aiokafka-{uuid.uuid4().hex[:8]}",
                                    auto_offset_reset="earliest", **kafka_settings.aiokafka_kwargs())  # fmt: skip
        await consumer.start()
        try:
            deadline = time.monotonic() + 60
            while sum(map(len, seen.values())) < CAMERAS * PER_CAMERA and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for r in records:
                        msg = FrameMessage.decode(r.value)
                        assert r.key == msg.camera_id.encode()
                        seen[msg.camera_id].append(msg.seq)
        finally:
            await consumer.stop()
        return seen

    _check_complete_in_order(asyncio.run(consume()))


def test_kafka_python_to_faust_agent(kafka_settings, make_topics, tmp_path: Path) -> None:  # noqa: ANN001
    topic = make_topics(frames=4)["frames"]
    out = tmp_path / "seen.txt"
    env = os.environ | {
        "TEST_TOPIC": topic, "TEST_OUT": str(out), "TEST_GROUP": f"test-faust-{uuid.uuid4().hex[:8]}",
        "TEST_DATADIR": str(tmp_path / "faust-data"),
    }  # fmt: skip
    app = Path(__file__).with_name("faust_frames_app.py")
    log = open(tmp_path / "faust.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, str(app)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _produce_frames(kafka_settings, topic)
        deadline = time.monotonic() + 120
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = out.read_text().splitlines() if out.exists() else []
            if len(lines) >= CAMERAS * PER_CAMERA or proc.poll() is not None:
                break
            time.sleep(0.5)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert len(lines) == CAMERAS * PER_CAMERA, (
        f"faust agent saw {len(lines)} frames; its log:\n{(tmp_path / 'faust.log').read_text()[-3000:]}"
    )
    seen: dict[str, list[int]] = defaultdict(list)
    for line in lines:
        cam, seq = line.split()
        seen[cam].append(int(seq))
    _check_complete_in_order(seen)


def test_redis_stream_and_pubsub_with_auth(redis_settings, unique_name) -> None:  # noqa: ANN001
    import redis

    client = redis_settings.client()
    stream, channel = unique_name("alerts").replace(".", ":"), unique_name("chan").replace(".", ":")
    alert = Alert(alert_id="cam-1:5", camera_id="cam-1", event="open", start_seq=5, start_ns=1,
                  peak_score=0.8, score=0.8, threshold=0.5, peak_seq=5)  # fmt: skip
    pubsub = client.pubsub()
    pubsub.psubscribe(channel + ":*")
    assert pubsub.get_message(timeout=2)["type"] == "psubscribe"
    try:
        for i in range(30):
            client.xadd(stream, {"json": alert.model_copy(update={"peak_seq": 5 + i}).to_json()}, maxlen=10,
                        approximate=False)  # fmt: skip
        client.publish(channel + ":cam-1", alert.to_json())
        got = pubsub.get_message(timeout=5)
        assert got is not None and got["channel"] == (channel + ":cam-1").encode()
        assert Alert.from_json(got["data"]) == alert
        entries = client.xrange(stream)
        assert len(entries) == 10
        assert Alert.from_json(entries[-1][1][b"json"]).peak_seq == 34
    finally:
        client.delete(stream)
        pubsub.close()
    # the server requires AUTH: a client without the password is refused
    anonymous = redis.Redis.from_url(redis_settings.url, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
