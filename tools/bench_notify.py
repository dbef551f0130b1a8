"""`vigil bench notify`: delivery latency of `vigil notify`, from the alert's XADD to its receipt over MQTT and by a
webhook, p50 / p99 / max over a few hundred alerts.

Needs the local Redis and Mosquitto (``infra/local/stack.sh up``; the MQTT settings come from
``.state/local.env`` or the environment). `vigil notify` runs as its own process (``python -m vigil.cli notify``)
on a stream, consumer group, dead-letter stream and topic prefix of its own; this process writes the alerts at
a steady rate, subscribes to ``<prefix>/alerts`` (QoS 1) and receives the webhook on a local HTTP server (which
also checks every signature). Nothing is written to docs/: the figures are printed.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Receipts:
    """Receipt times (ns) by entry id, per channel, and the webhook signatures that did not verify."""

    mqtt: dict[str, int] = field(default_factory=dict)
    webhook: dict[str, int] = field(default_factory=dict)
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _receiver(receipts: Receipts, secret: bytes) -> ThreadingHTTPServer:
    from vigil.services.notify.core import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            now = time.time_ns()
            ok = verify_signature(secret, body, self.headers.get(TIMESTAMP_HEADER, ""),
                                  self.headers.get(SIGNATURE_HEADER, ""), int(now / 1e9))  # fmt: skip
            with receipts.lock:
                receipts.webhook.setdefault(json.loads(body)["entry_id"], now)
                receipts.bad_signatures += 0 if ok else 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def _subscriber(env: dict[str, str], prefix: str, receipts: Receipts, online: threading.Event) -> Any:
    import paho.mqtt.client as mqtt

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        now = time.time_ns()
        if msg.topic == f"{prefix}/available":
            if msg.payload == b"online":
                online.set()
            return
        with receipts.lock:
            receipts.mqtt.setdefault(json.loads(msg.payload)["entry_id"], now)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(env["VIGIL_NOTIFY_MQTT_USERNAME"], Path(env["VIGIL_NOTIFY_MQTT_PASSWORD_FILE"]).read_text().strip())
    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe([(f"{prefix}/alerts", 1), (f"{prefix}/available", 1)])
    client.connect(env["VIGIL_NOTIFY_MQTT_HOST"], int(env["VIGIL_NOTIFY_MQTT_PORT"]))
    client.loop_start()
    return client


def _local_env() -> dict[str, str]:
    """The environment, completed from ``.state/local.env`` (written by infra/local/stack.sh) where it sets nothing."""
    import shlex

    state = Path(os.environ.get("VIGIL_STATE_DIR", ".state")) / "local.env"
    if state.is_file():
        for line in state.read_text().splitlines():
            parts = shlex.split(line)
            if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
                key, value = parts[1].split("=", 1)
                os.environ.setdefault(key, value)  # this process's Redis client reads them too
    env = dict(os.environ)
    missing = [k for k in ("VIGIL_NOTIFY_MQTT_HOST", "VIGIL_NOTIFY_MQTT_PORT", "VIGIL_NOTIFY_MQTT_USERNAME",
                           "VIGIL_NOTIFY_MQTT_PASSWORD_FILE") if k not in env]  # fmt: skip
    if missing:
        raise SystemExit(f"no MQTT settings ({', '.join(missing)}): run infra/local/stack.sh up")
    return env


def _alert(camera: str, seq: int) -> str:
    from vigil.shared.schemas import Alert

    start_ns = time.time_ns()
    return Alert(alert_id=Alert.make_id(camera, seq, start_ns), camera_id=camera, event="open", start_seq=seq,
                 start_ns=start_ns, peak_score=6.0, score=6.0, threshold=3.0, peak_seq=seq,
                 trigger_capture_ns=start_ns).to_json()  # fmt: skip


def _percentiles(values_ms: list[float]) -> str:
    if not values_ms:
        return "no receipts"
    q = statistics.quantiles(values_ms, n=100, method="inclusive")
    return f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(values_ms):.1f} ms"


def run_bench(alerts: int = 200, rate: float = 50.0, cameras: int = 10, timeout_s: float = 30.0) -> str:
    """Start `vigil notify` in its own process, write ``alerts`` alerts at ``rate`` per second, and report latency."""
    from vigil.shared.settings import RedisSettings

    env, token = _local_env(), secrets.token_hex(5)
    prefix, secret = f"bench-{token}", secrets.token_hex(16)
    stream, dead = f"bench:alerts:{token}", f"bench:dead:{token}"
    receipts, online = Receipts(), threading.Event()
    server = _receiver(receipts, secret.encode())
    sub = _subscriber(env, prefix, receipts, online)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-notify-") as tmp:
        hooks = Path(tmp) / "webhooks.json"
        hooks.write_text(json.dumps({"webhooks": [{"name": "bench", "url": f"http://127.0.0.1:{server.server_port}/h",
                                                   "secret_env": "BENCH_HOOK_SECRET"}]}))  # fmt: skip
        env |= {"BENCH_HOOK_SECRET": secret, "VIGIL_NOTIFY_ALERTS_STREAM": stream, "VIGIL_NOTIFY_DEAD_LETTERS": dead,
                "VIGIL_NOTIFY_ALERTS_GROUP": f"bench-{token}", "VIGIL_NOTIFY_TOPIC_PREFIX": prefix,
                "VIGIL_NOTIFY_MQTT_CLIENT_ID": f"bench-{token}", "VIGIL_NOTIFY_WEBHOOKS_FILE": str(hooks),
                "VIGIL_NOTIFY_STATUS_EVERY_S": "3600", "VIGIL_NOTIFY_ALERTS_FROM_START": "true", "VIGIL_NOTIFY_LOG_LEVEL": "WARNING"}  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-m", "vigil.cli", "notify"], env=env)  # noqa: S603 - our own CLI
        client = RedisSettings().client()
        try:
            sent = _drive(client, stream, receipts, online, alerts, rate, cameras, timeout_s)
        finally:
            proc.terminate()
            proc.wait(30)
            client.delete(stream, dead)
            _clear(sub, prefix)
            server.shutdown()
    return _report(sent, receipts, alerts, rate, cameras)


def _drive(client: Any, stream: str, receipts: Receipts, online: threading.Event, alerts: int, rate: float,
           cameras: int, timeout_s: float) -> dict[str, int]:  # fmt: skip
    """Wait for the service, XADD the alerts at ``rate``, wait for every receipt; returns XADD times by entry id."""
    if not online.wait(60):
        raise SystemExit("vigil notify did not come online within 60 s")
    sent: dict[str, int] = {}
    t0 = time.monotonic()
    for i in range(alerts):
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        t = time.time_ns()
        sent[client.xadd(stream, {"json": _alert(f"bench-cam-{i % cameras}", i + 1)}).decode()] = t
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (len(receipts.mqtt) < alerts or len(receipts.webhook) < alerts):
        time.sleep(0.05)
    return sent


def _clear(sub: Any, prefix: str) -> None:
    """Delete the retained messages the service left under ``prefix`` (availability, camera status), disconnect."""
    retained: set[str] = set()
    sub.on_message = lambda _c, _u, msg: retained.add(msg.topic) if msg.retain and msg.payload else None
    sub.subscribe(f"{prefix}/#", qos=1)
    time.sleep(1.0)
    for topic in retained:
        sub.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    sub.disconnect()
    sub.loop_stop()


def _report(sent: dict[str, int], receipts: Receipts, alerts: int, rate: float, cameras: int) -> str:
    lines = [f"vigil notify delivery latency, XADD -> receipt: {alerts} alerts at {rate:g}/s over {cameras} cameras "
             "(one Redis, one Mosquitto, one webhook receiver, all on loopback)"]  # fmt: skip
    for name, got in (("MQTT (QoS 1, vigil/alerts)", receipts.mqtt), ("webhook (signed POST, 200)", receipts.webhook)):
        ms = [(got[e] - t) / 1e6 for e, t in sent.items() if e in got]
        lines.append(f"  {name}: {len(ms)}/{alerts} received; {_percentiles(ms)}")
    lines.append(f"  webhook signatures that did not verify: {receipts.bad_signatures}; load average (1 min) "
                 f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    """``python -m vigil.tools.bench_notify [alerts] [rate]``."""
    args = [float(a) for a in sys.argv[1:3]]
    print(run_bench(int(args[0]) if args else 200, args[1] if len(args) > 1 else 50.0))  # noqa: T201


if __name__ == "__main__":
    main()
