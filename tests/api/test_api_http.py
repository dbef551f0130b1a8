"""`vigil api` over real HTTP: live alerts as server-sent events, and the `vigil api` command itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx
from conftest import OPERATOR, VIEWER, auth, free_port, score_into_redis


def test_server_sent_events_deliver_a_live_alert(api_settings, redis_settings) -> None:  # noqa: ANN001
    from vigil.services.api.transport import build_service

    svc = build_service(api_settings.model_copy(update={"port": 0}))
    svc.start()
    try:
        assert svc.wait_started()
        cam = f"api-live-{uuid.uuid4().hex[:8]}"
        seen: list[str] = []
        with httpx.stream("GET", f"http://127.0.0.1:{svc.port}/v1/events", headers=auth(VIEWER), timeout=20) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            assert next(lines) == ": connected"  # subscribed: what is published from now on arrives
            assert [next(lines), next(lines)] == ["", ": keep-alive"]  # a quiet stream (keep-alive 0.5 s in the tests)
            feeder = threading.Thread(target=score_into_redis, args=(redis_settings, {cam: [(200, 239)]}, 300))
            feeder.start()
            for line in lines:
                seen.append(line)
                if line.startswith("data:") and f'"camera_id":"{cam}"' in line and '"event":"close"' in line:
                    break
            feeder.join()
        assert "event: alert" in seen, seen[:20]
        opened = [s for s in seen if s.startswith("data:") and f'"camera_id":"{cam}"' in s]
        assert '"event":"open"' in opened[0]
    finally:
        svc.request_stop()
        svc.stop()


def test_vigil_api_command_serves_with_tokens_and_stops_on_sigterm(api_settings, tokens_file, tmp_path) -> None:  # noqa: ANN001
    port, metrics_port = free_port(), free_port()
    env = os.environ | {"VIGIL_API_PORT": str(port), "VIGIL_API_METRICS_PORT": str(metrics_port),
                        "VIGIL_API_TOKENS_FILE": str(tokens_file), "VIGIL_API_LOG_LEVEL": "INFO"}  # fmt: skip
    log = (tmp_path / "api.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "vigil.cli", "api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{metrics_port}/readyz", proc)
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/healthz").status_code == 200
        base = f"http://127.0.0.1:{port}"
        r = httpx.get(f"{base}/v1/cameras", headers=auth(VIEWER))
        assert r.status_code == 200 and isinstance(r.json(), list)
        assert httpx.get(f"{base}/v1/cameras").status_code == 401
        assert httpx.put(f"{base}/v1/alerts/x:1:2/label", json={"kind": "bike"}, headers=auth(VIEWER)).status_code == 403
        assert "vigil_api_requests_total" in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.seek(0)
    text = log.read()
    assert "vigil api stopped" in text and VIEWER not in text and OPERATOR not in text, text[-2000:]


def test_vigil_api_without_tokens_refuses_to_start(tmp_path) -> None:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if k != "VIGIL_API_TOKENS_FILE"} | {"VIGIL_API_PORT": str(free_port())}
    proc = subprocess.run([sys.executable, "-m", "vigil.cli", "api"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "VIGIL_API_TOKENS_FILE" in proc.stderr + proc.stdout


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "vigil api exited early"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout_s}s")
