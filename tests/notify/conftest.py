"""Fixtures of the notify tests: the real Redis and Mosquitto of infra/local/stack.sh, a local webhook receiver
(http.server in a thread), an MQTT subscriber, and `vigil notify` built by its own build_service in a thread."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

START = "run infra/local/stack.sh up"
SECRET = "test-secret-0123456789abcdef"


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``predicate`` every 20 ms until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    pytest.fail(f"{what} (after {timeout_s:g}s)")


def alert_json(camera: str, seq: int = 1, event: str = "open", **kw: Any) -> str:
    """A valid Alert as JSON text."""
    from vigil.shared.schemas import Alert

    fields = {"alert_id": Alert.make_id(camera, seq, 1_700_000_000_000_000_000 + seq), "camera_id": camera,
              "event": event, "start_seq": seq, "start_ns": 1_700_000_000_000_000_000 + seq, "peak_score": 6.0,
              "score": 6.0, "threshold": 3.0, "peak_seq": seq, "trigger_capture_ns": time.time_ns()}  # fmt: skip
    return Alert(**(fields | kw)).to_json()


# -- servers -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mqtt_broker() -> dict[str, Any]:
    """Host, port, user and password of the local Mosquitto; fails with the start command when it is down."""
    import socket

    host, port = os.environ.get("VIGIL_NOTIFY_MQTT_HOST", "127.0.0.1"), int(os.environ.get("VIGIL_NOTIFY_MQTT_PORT", "1884"))
    pw_file = os.environ.get("VIGIL_NOTIFY_MQTT_PASSWORD_FILE", "")
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"Mosquitto is not running at {host}:{port} ({exc}): {START}", pytrace=False)
    if not pw_file or not Path(pw_file).is_file():
        pytest.fail(f"no MQTT password file (VIGIL_NOTIFY_MQTT_PASSWORD_FILE={pw_file!r}): {START}", pytrace=False)
    return {"host": host, "port": port, "username": os.environ.get("VIGIL_NOTIFY_MQTT_USERNAME", "vigil"),
            "password_file": Path(pw_file)}  # fmt: skip


@pytest.fixture(scope="session")
def redis_up():  # noqa: ANN201
    """RedisSettings of the local Redis; fails with the start command when it is down."""
    import redis

    from vigil.shared.settings import RedisSettings

    settings = RedisSettings()
    try:
        settings.client().ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        pytest.fail(f"Redis is not running at {settings.url} ({exc}): {START}", pytrace=False)
    return settings


@pytest.fixture
def rclient(redis_up) -> Iterator[Any]:  # noqa: ANN001
    """A Redis client."""
    client = redis_up.client()
    yield client
    client.close()


# -- webhook receiver ----------------------------------------------------------------------------------------------
@dataclass
class Hit:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    t_ns: int


@dataclass
class Receiver:
    """A local HTTP server: per path, a script of statuses (the last one repeats) and a delay before answering."""

    port: int = 0
    scripts: dict[str, list[int]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        """The URL of ``path`` on this receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str) -> int:
        """The status for the next request to ``path``."""
        with self.lock:
            script = self.scripts.get(path, [200])
            return script.pop(0) if len(script) > 1 else script[0]

    def at(self, path: str) -> list[Hit]:
        """The requests to ``path`` so far."""
        with self.lock:
            return [h for h in self.hits if h.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port (its server thread ends after the test)."""
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            path = self.path.split("?")[0]
            with rec.lock:
                rec.hits.append(Hit(path, dict(self.headers.items()), body, time.time_ns()))
            time.sleep(rec.delays.get(path, 0.0))
            self.send_response(rec.answer(path))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


# -- MQTT subscriber -------------------------------------------------------------------------------------------------
@dataclass
class Message:
    """One MQTT message received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    t_ns: int


class Subscriber:
    """A paho client subscribed (QoS 1) to some topics, collecting what arrives."""

    def __init__(self, broker: dict[str, Any], topics: list[str]) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(broker["username"], broker["password_file"].read_text().strip())
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        self.client.connect(broker["host"], broker["port"])
        self.client.loop_start()
        wait_for(self.subscribed.is_set, 10, f"could not subscribe to {topics}")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append(Message(msg.topic, msg.payload, msg.qos, bool(msg.retain), time.time_ns()))

    def on(self, topic: str) -> list[Message]:
        """Messages received on ``topic``."""
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe(mqtt_broker) -> Iterator[Callable[[list[str]], Subscriber]]:  # noqa: ANN001
    """``subscribe([topics])`` -> a connected :class:`Subscriber` (closed after the test)."""
    made: list[Subscriber] = []

    def _make(topics: list[str]) -> Subscriber:
        made.append(Subscriber(mqtt_broker, topics))
        return made[-1]

    yield _make
    for sub in made:
        sub.close()


# -- the service -------------------------------------------------------------------------------------------------------
@pytest.fixture
def notify_settings(mqtt_broker, redis_up, unique_name, tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    """``notify_settings(webhooks=[...], **overrides)`` -> NotifySettings on this test's own stream, group, dead
    letters and topic prefix, with short retry delays; ``webhooks`` entries are written to a YAML file."""
    import yaml

    from vigil.services.notify.settings import NotifySettings

    monkeypatch.setenv("TEST_NOTIFY_SECRET", SECRET)

    def _make(webhooks: list[dict[str, Any]] | None = None, **overrides: Any) -> NotifySettings:
        hooks_file = None
        if webhooks:
            hooks_file = tmp_path / f"webhooks-{len(list(tmp_path.iterdir()))}.yaml"
            hooks_file.write_text(yaml.safe_dump({"webhooks": [{"secret_env": "TEST_NOTIFY_SECRET"} | h for h in webhooks]}))
        base = {"alerts_stream": unique_name("alerts"), "alerts_group": unique_name("notify"),
                "alerts_from_start": True, "dead_letters": unique_name("dead"),
                "topic_prefix": unique_name("vigil").replace(".", "-"), "mqtt_client_id": unique_name("notify"),
                "mqtt_host": mqtt_broker["host"], "mqtt_port": mqtt_broker["port"],
                "mqtt_username": mqtt_broker["username"], "mqtt_password_file": mqtt_broker["password_file"],
                "webhooks_file": hooks_file, "webhook_backoff_s": 0.05, "webhook_backoff_max_s": 0.2,
                "webhook_timeout_s": 5.0, "block_ms": 50, "status_every_s": 0.2, "flush_timeout_s": 3.0,
                "redis": redis_up}  # fmt: skip
        return NotifySettings(**(base | overrides))

    return _make


class Running:
    """`vigil notify` built by its own build_service, started, and run in a thread (like `vigil notify`)."""

    def __init__(self, settings: Any) -> None:
        from vigil.services.notify.transport import build_service

        self.settings = settings
        self.service = build_service(settings)
        self.service.start()
        self.thread = threading.Thread(target=self.service.wait, name="test-notify", daemon=True)
        self.thread.start()
        self.stopped = False

    def stop(self) -> None:
        """SIGTERM's path: request_stop, the loop ends, stop() flushes."""
        if self.stopped:
            return
        self.stopped = True
        self.service.request_stop()
        self.thread.join(10)
        self.service.stop()


@pytest.fixture
def run_notify(rclient, mqtt_broker) -> Iterator[Callable[[Any], Running]]:  # noqa: ANN001
    """``run_notify(settings)`` -> a :class:`Running` service; stopped, and its Redis keys and retained topics
    cleared, after the test."""
    made: list[Running] = []

    def _make(settings: Any) -> Running:
        made.append(Running(settings))
        return made[-1]

    yield _make
    for running in made:
        running.stop()
    for running in made:
        rclient.delete(running.settings.alerts_stream, running.settings.dead_letters)
        _clear_retained(running.settings.topic_prefix, mqtt_broker)


def _clear_retained(prefix: str, broker: dict[str, Any]) -> None:
    """Remove this test's retained messages from the broker (an empty retained payload deletes one)."""
    import paho.mqtt.client as mqtt

    topics: set[str] = set()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(broker["username"], broker["password_file"].read_text().strip())
    client.on_message = lambda _c, _u, msg: topics.add(msg.topic) if msg.retain and msg.payload else None
    client.connect(broker["host"], broker["port"])
    client.subscribe(f"{prefix}/#", qos=1)
    client.loop_start()
    time.sleep(0.3)
    for topic in topics:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(2)
    client.disconnect()
    client.loop_stop()


def metric(name: str, **labels: str) -> float:
    """The current value of a Prometheus sample (0 when absent)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def payload(message: Message | Hit) -> dict[str, Any]:
    """A message's JSON payload."""
    return json.loads(message.body if isinstance(message, Hit) or hasattr(message, "body") else message.payload)
