"""Prometheus metrics and a health endpoint for each service.

:func:`start_http` serves ``/metrics`` (Prometheus text format), ``/healthz`` (liveness) and
``/readyz`` (readiness, from a callable the service supplies) on one port in a daemon thread.
Metric objects are created by each service module through :func:`counter` / :func:`gauge` /
:func:`histogram`, which reuse an existing collector of the same name (tests import twice).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _get_or_create(cls: type, name: str, doc: str, labels: Sequence[str], **kw: Any) -> Any:
    existing = REGISTRY._names_to_collectors.get(name)  # noqa: SLF001 - prometheus has no public lookup
    if existing is not None:
        return existing
    return cls(name, doc, list(labels), **kw)


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    """A Counter (``_total`` is appended by prometheus_client)."""
    return _get_or_create(Counter, name, doc, labels)


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    """A Gauge."""
    return _get_or_create(Gauge, name, doc, labels)


def histogram(name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
    """A Histogram with latency buckets by default (seconds)."""
    return _get_or_create(Histogram, name, doc, labels, buckets=buckets)


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry = REGISTRY
    ready: Callable[[], bool] = staticmethod(lambda: True)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path.startswith("/metrics"):
            self._reply(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif self.path.startswith("/healthz"):
            self._reply(200, b"ok\n", "text/plain")
        elif self.path.startswith("/readyz"):
            ok = bool(self.ready())
            self._reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain")
        else:
            self._reply(404, b"not found\n", "text/plain")

    def _reply(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:  # silence per-request logs
        return


def start_http(port: int, ready: Callable[[], bool] | None = None, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz on ``port`` in a daemon thread; returns the server."""
    handler = type("Handler", (_Handler,), {"ready": staticmethod(ready or (lambda: True))})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
