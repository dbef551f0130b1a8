"""The metrics / health HTTP server (issue #15): bind address, heartbeat-driven /healthz, readiness, slow
clients and connection bounds."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest

from vigil.shared.runner import FaustService
from vigil.shared.settings import ServiceSettings
from vigil.shared.telemetry import BoundedHTTPServer, Heartbeat, start_http


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served():  # noqa: ANN201
    servers: list[BoundedHTTPServer] = []

    def _serve(**kw: object) -> int:
        port = free_port()
        servers.append(start_http(port, **kw))
        return port

    yield _serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_default_bind_address_is_loopback_and_configurable(served) -> None:  # noqa: ANN001
    assert ServiceSettings().metrics_host == "127.0.0.1"
    assert ServiceSettings(metrics_host="0.0.0.0").metrics_host == "0.0.0.0"
    port = served()
    assert get(port, "/metrics")[0] == 200


def test_healthz_fails_when_the_loop_stops_beating_or_a_batch_is_stuck(served) -> None:  # noqa: ANN001
    hb = Heartbeat(timeout_s=1.0)
    ready = {"ok": False}
    port = served(heartbeat=hb, ready=lambda: ready["ok"])
    assert get(port, "/healthz") == (200, "ok\n")
    assert get(port, "/readyz")[0] == 503
    ready["ok"] = True
    assert get(port, "/readyz")[0] == 200
    hb.last_beat -= 5
    code, body = get(port, "/healthz")
    assert code == 503 and "no heartbeat for" in body and "stuck" in body
    assert get(port, "/readyz")[0] == 503, "a stuck service is not ready either"
    hb.beat()
    with hb.working():
        hb.busy_since -= 5
        code, body = get(port, "/healthz")
        assert code == 503 and "one batch has run for" in body
    assert get(port, "/healthz")[0] == 200


def test_slow_clients_time_out_and_connections_are_bounded(served) -> None:  # noqa: ANN001
    port = served()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(BoundedHTTPServer.max_connections + 4)]
    try:
        time.sleep(0.2)
        started = time.monotonic()
        deadline = started + 15
        while time.monotonic() < deadline:  # the silent clients time out (5 s), then requests are served again
            try:
                if get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        assert time.monotonic() - started < 10, "silent clients held the server"
    finally:
        for s in idle:
            s.close()


def test_faust_service_is_ready_only_after_assignment_and_while_alive() -> None:
    svc = FaustService()
    assert not svc.ready()
    svc.assigned = True
    assert svc.ready()
    svc.heartbeat.last_beat -= svc.heartbeat.timeout_s + 1
    assert not svc.alive() and not svc.ready()
