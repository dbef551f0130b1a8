"""A minimal faust-streaming app used by the integration test: it consumes frame messages from
$TEST_TOPIC and appends "camera_id seq" lines to $TEST_OUT. Run: python faust_frames_app.py worker."""

from __future__ import annotations

import os
import sys

import faust

from vigil.shared.schemas import FrameMessage
from vigil.shared.settings import KafkaSettings


def build_app() -> faust.App:
    """Build the app from the environment (no side effects at import)."""
    kafka = KafkaSettings()
    app = faust.App(
        os.environ["TEST_GROUP"], broker=kafka.faust_broker(), value_serializer="raw", key_serializer="raw",
        web_enabled=False, datadir=os.environ["TEST_DATADIR"], topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
    )  # fmt: skip
    topic = app.topic(os.environ["TEST_TOPIC"], value_type=bytes, key_type=bytes, internal=False)
    out = open(os.environ["TEST_OUT"], "a", buffering=1)  # noqa: SIM115 - lives as long as the app

    @app.agent(topic)
    async def collect(stream):  # noqa: ANN001, ANN202
        async for value in stream:
            msg = FrameMessage.decode(value)
            out.write(f"{msg.camera_id} {msg.seq}\n")

    return app


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    build_app().main()
