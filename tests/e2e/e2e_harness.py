"""End-to-end harness (classes; the fixtures are in conftest.py): real RTSP server, Kafka, Redis, and every service as its own process.

The e2e tests run on a private Kafka + Redis (own state directory, free ports), started once per
session, so that fault tests may restart the broker or Redis without disturbing anything else.
Each test gets its own topics and consumer groups, and flushes the private Redis first.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from vigil.tools.demo import DEMO_SCORER_ENV
from vigil.tools.launcher import LocalStack, Proc, free_port, start_rtsp_server, vigil_argv

FPS = 10.0
# Short clips: the scorer learns each camera's normal level for 100 frames (production: 3000).
# The fault scenario runs at 5 fps and restarts the scorer ~25 s in, so 100 (not the demo's 200) frames.
FAST_SCORER = DEMO_SCORER_ENV | {"VIGIL_SCORER_SCORING__GRACE_FRAMES": "100"}


@dataclass
class Pipeline:
    """The processes of one e2e test and the readers of its topics."""

    stack: LocalStack
    workdir: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    procs: dict[str, Proc] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def topics(self) -> dict[str, str]:
        """This test's topic names."""
        return {k: f"e2e.{k}.{self.token}" for k in ("frames", "scores", "camera_status", "dlq")}

    def env(self) -> dict[str, str]:
        """Environment for every service of this pipeline."""
        t = self.topics
        return dict(os.environ) | self.stack.env() | {
            "VIGIL_TOPICS_FRAMES": t["frames"], "VIGIL_TOPICS_SCORES": t["scores"],
            "VIGIL_TOPICS_CAMERA_STATUS": t["camera_status"], "VIGIL_TOPICS_DLQ": t["dlq"],
            "VIGIL_TOPICS_PARTITIONS": "4",
            "VIGIL_WORKER_APP_ID": f"e2e-worker-{self.token}", "VIGIL_WORKER_OFFSET_RESET": "earliest",
            "VIGIL_WORKER_DATADIR": str(self.workdir / "worker-data"), "VIGIL_WORKER_SESSION_TIMEOUT_S": "6",
            "VIGIL_WORKER_HEARTBEAT_S": "1",
            "VIGIL_SCORER_APP_ID": f"e2e-scorer-{self.token}", "VIGIL_SCORER_DATADIR": str(self.workdir / "scorer-data"),
            "PYTHONUNBUFFERED": "1",
        } | FAST_SCORER | self.extra_env  # fmt: skip

    # --- processes --------------------------------------------------------------------------------
    def start(self, name: str, *args: str, ready_timeout: float = 180.0, port: int = 0, **env: str) -> Proc:
        """Start `vigil <service> ...` as ``name`` (metrics on ``port``) and wait until its /readyz answers."""
        port = port or free_port()
        self.ports[name] = port
        service = args[0]
        e = self.env() | {f"VIGIL_{service.upper()}_METRICS_PORT": str(port)} | env
        proc = Proc(name, vigil_argv(*args), self.workdir / "logs" / f"{name}.log", e).start()
        self.procs[name] = proc
        from vigil.tools.demo import wait_ready

        wait_ready(proc, port, ready_timeout)
        return proc

    def start_rtsp(self, name: str, mounts: dict[str, Path], port: int = 0, loop: bool = False) -> dict[str, str]:
        """Start an RTSP server serving ``mounts`` (endlessly with ``loop``); returns mount -> URL."""
        proc, urls = start_rtsp_server(mounts, self.workdir / "logs" / name, port=port, loop=loop)
        self.procs[name] = proc
        return urls

    def cameras_file(self, cameras: dict[str, str], **defaults: object) -> Path:
        """Write a cameras YAML for ingest."""
        cfg = {"defaults": {"fps": FPS, "width": 180, "height": 120, "channels": 1, **defaults},
               "cameras": [{"id": cid, "url": url} for cid, url in cameras.items()]}  # fmt: skip
        path = self.workdir / f"cameras-{len(self.procs)}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def stop_all(self) -> None:
        """Stop every process (ingest first, servers last)."""
        order = sorted(self.procs, key=lambda n: (not n.startswith("ingest"), n.startswith("rtsp")))
        for name in order:
            self.procs[name].stop()

    def logs(self) -> str:
        """The tails of all logs, for failure messages."""
        return "\n".join(f"--- {n} ---\n{p.tail(1500)}" for n, p in self.procs.items())

    # --- readers ----------------------------------------------------------------------------------
    def read_topic(self, topic_key: str, timeout_s: float = 30.0) -> list:
        """Every record of one of this test's topics up to its end right now (kafka-python records)."""
        from kafka import KafkaConsumer, TopicPartition

        from vigil.shared.settings import KafkaSettings

        kafka = KafkaSettings(bootstrap_servers=self.stack.env()["VIGIL_KAFKA_BOOTSTRAP_SERVERS"])
        topic = self.topics[topic_key]
        consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **kafka.kafka_python_kwargs())
        try:
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            ends = consumer.end_offsets(parts)
            records: list = []
            deadline = time.monotonic() + timeout_s
            while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                    records.extend(r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)])
            return records
        finally:
            consumer.close()

    def scores(self) -> dict[str, list]:
        """Score messages per camera, in topic order."""
        from vigil.shared.schemas import SchemaError, ScoreMessage

        out: dict[str, list] = defaultdict(list)
        for r in self.read_topic("scores"):
            try:
                s = ScoreMessage.decode(r.value)
            except SchemaError:  # bad records a test injected on purpose
                continue
            out[s.camera_id].append(s)
        return out

    def redis(self):  # noqa: ANN201
        """A client on the private Redis."""
        from vigil.shared.settings import RedisSettings

        e = self.stack.env()
        return RedisSettings(url=e["VIGIL_REDIS_URL"], password_file=Path(e["VIGIL_REDIS_PASSWORD_FILE"])).client()

    def alerts(self) -> list:
        """Every alert change in the vigil:alerts stream."""
        from vigil.shared.schemas import Alert

        return [Alert.from_json(fields[b"json"]) for _, fields in self.redis().xrange("vigil:alerts")]

    def wait_for(self, what: str, predicate, timeout_s: float, every_s: float = 1.0):  # noqa: ANN001, ANN201
        """Poll ``predicate`` until it returns something truthy; fail with the logs otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            for name, proc in self.procs.items():
                if not proc.alive and not name.startswith("killed"):
                    pytest.fail(f"{name} died while waiting for {what}:\n{self.logs()}")
            time.sleep(every_s)
        pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}\n{self.logs()}")


def ped2_labels(ped2_dir: Path) -> dict[str, list[int]]:
    """Frame labels per Ped2 test clip."""
    return json.loads((ped2_dir / "labels_frame_ped2.json").read_text())


def concat_clips(parts: list[Path], out: Path) -> None:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p.resolve()}'\n" for p in parts))
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg could not join {', '.join(p.name for p in parts)}: {done.stderr[-1000:]}")
