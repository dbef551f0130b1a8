"""Foundation commands: `vigil topics` (create Vigil's topics) and `vigil smoke` (publish and read frames).

`vigil smoke` is the end-to-end check of the transport layer: it publishes synthetic frame messages
for a few cameras through Kafka with kafka-python, reads them back, and checks per-camera order and
completeness, then writes and reads an alert through Redis (stream + pub/sub, with AUTH).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict

import typer

log = logging.getLogger(__name__)


def _frames(cameras: int, per_camera: int, height: int, width: int):  # noqa: ANN202
    import numpy as np

    from vigil.shared.schemas import FrameMessage

    rng = np.random.default_rng(0)
    for seq in range(per_camera):
        for c in range(cameras):
            img = rng.integers(0, 256, (height, width, 1), dtype=np.uint8)
            yield FrameMessage.from_pixels(f"smoke-cam-{c}", seq=seq, pts=seq / 10, capture_ns=time.time_ns(), image=img)


def smoke(
    cameras: int = typer.Option(4, min=1, max=64, help="Number of simulated cameras"),
    frames: int = typer.Option(250, min=1, max=100_000, help="Frames per camera"),
    timeout: float = typer.Option(60.0, help="Seconds to wait for all frames to come back"),
) -> None:
    """Publish frames for N cameras through Kafka, read them back, and round-trip an alert through Redis."""
    from vigil.shared.logging import configure_logging

    configure_logging()
    ok = _kafka_round_trip(cameras, frames, timeout)
    redis_ok = _check_redis()
    if not (ok and redis_ok):
        raise typer.Exit(1)


def _kafka_round_trip(cameras: int, frames: int, timeout: float) -> bool:
    """Publish ``frames`` frames per camera to a new topic and read them back in order."""
    from kafka import KafkaConsumer

    from vigil.shared.kafka import ensure_topics, make_producer
    from vigil.shared.schemas import FrameMessage
    from vigil.shared.settings import KafkaSettings

    kafka = KafkaSettings()
    topic = f"vigil.smoke.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, {topic: 4})
    producer = make_producer(kafka)
    t0 = time.perf_counter()
    total = 0
    for msg in _frames(cameras, frames, 120, 180):
        producer.send(topic, key=msg.camera_id.encode(), value=msg.encode())
        total += 1
    producer.flush()
    typer.echo(f"published {total} frames for {cameras} cameras to {topic} in {time.perf_counter() - t0:.2f}s")
    consumer = KafkaConsumer(topic, group_id=f"smoke-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest",
                             consumer_timeout_ms=int(timeout * 1000), **kafka.kafka_python_kwargs())  # fmt: skip
    seen: dict[str, list[int]] = defaultdict(list)
    for record in consumer:
        msg = FrameMessage.decode(record.value)
        seen[msg.camera_id].append(msg.seq)
        if sum(map(len, seen.values())) >= total:
            break
    consumer.close()
    ok = len(seen) == cameras and all(v == list(range(frames)) for v in seen.values())
    typer.echo(f"read back {sum(map(len, seen.values()))}/{total} frames; per-camera order and completeness: "
               f"{'OK' if ok else 'FAILED'}")  # fmt: skip
    return ok


def _check_redis() -> bool:
    """The Redis round trip, with what to do when Redis refuses or is down."""
    import redis

    from vigil.shared.settings import RedisSettings

    settings = RedisSettings()
    try:
        redis_ok = _redis_round_trip(settings)
    except redis.AuthenticationError as exc:
        raise typer.BadParameter(
            f"Redis at {settings.url} refused the connection ({exc}). Set VIGIL_REDIS_PASSWORD or "
            "VIGIL_REDIS_PASSWORD_FILE; for the local stack run: source .state/local.env",
            param_hint="redis",
        ) from exc
    except redis.ConnectionError as exc:
        raise typer.BadParameter(f"Redis at {settings.url} is not reachable ({exc}); start it with: make up") from exc
    typer.echo(f"redis stream + pub/sub round trip with AUTH: {'OK' if redis_ok else 'FAILED'}")
    return redis_ok


def _redis_round_trip(settings) -> bool:  # noqa: ANN001
    client = settings.client()
    stream = f"vigil:smoke:{uuid.uuid4().hex[:8]}"
    pubsub = client.pubsub()
    pubsub.subscribe(stream)
    pubsub.get_message(timeout=2)
    entry = client.xadd(stream, {"json": '{"smoke": true}'}, maxlen=100, approximate=True)
    client.publish(stream, "hello")
    got = pubsub.get_message(timeout=5)
    back = client.xrange(stream)
    client.delete(stream)
    pubsub.close()
    return bool(back and back[0][0] == entry and got and got["data"] == b"hello")


