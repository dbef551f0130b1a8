"""Prometheus metrics and a health endpoint for each service.

:func:`start_http` serves ``/metrics`` (Prometheus text format), ``/healthz`` (liveness: the service loop's
:class:`Heartbeat` is recent) and ``/readyz`` (readiness, from a callable the service supplies) on one address
and port (loopback unless ``metrics_host`` says otherwise) in a daemon thread, with a socket timeout per
request and a bound on concurrent connections.
Metric objects are created by each service module through :func:`counter` / :func:`gauge` /
:func:`histogram`, which reuse an existing collector of the same name (tests import twice).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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


class Heartbeat:
    """Liveness of a service loop: the loop calls :meth:`beat`; long work runs inside :meth:`working`.

    The loop is alive while its last beat is recent and no piece of work has run for too long. Thread-safe
    (one float per field; a stale read only delays a verdict by one beat).

    Example:
        >>> hb = Heartbeat(timeout_s=5.0)
        >>> hb.alive(now=hb.last_beat + 1), hb.alive(now=hb.last_beat + 6)
        (True, False)
    """

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self.last_beat = time.monotonic()
        self.busy_since: float | None = None

    def beat(self) -> None:
        """The loop made progress."""
        self.last_beat = time.monotonic()

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Mark a piece of work (a batch): alive fails when it runs longer than ``timeout_s``."""
        self.busy_since = time.monotonic()
        try:
            yield
        finally:
            self.busy_since = None
            self.beat()

    def problem(self, now: float | None = None) -> str | None:
        """Why the loop is not alive, or None when it is."""
        now = time.monotonic() if now is None else now
        if now - self.last_beat > self.timeout_s:
            return f"no heartbeat for {now - self.last_beat:.0f}s (limit {self.timeout_s:g}s): the service loop is stuck"
        busy = self.busy_since
        if busy is not None and now - busy > self.timeout_s:
            return f"one batch has run for {now - busy:.0f}s (limit {self.timeout_s:g}s): the service loop is stuck"
        return None

    def alive(self, now: float | None = None) -> bool:
        """True while the loop beats and no work is stuck."""
        return self.problem(now) is None


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry = REGISTRY
    ready: Callable[[], bool] = staticmethod(lambda: True)
    problem: Callable[[], str | None] = staticmethod(lambda: None)
    timeout = 5.0  # seconds a client may take to send its request (socket timeout): a slow client cannot hold a thread

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path.startswith("/metrics"):
            self._reply(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif self.path.startswith("/healthz"):
            problem = self.problem()
            self._reply(503 if problem else 200, f"{problem or 'ok'}\n".encode(), "text/plain")
        elif self.path.startswith("/readyz"):
            ok = self.problem() is None and bool(self.ready())
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


class BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most ``max_connections`` clients at once (others are closed)."""

    daemon_threads = True
    request_queue_size = 16
    max_connections = 8

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve in a thread when a slot is free, else close the connection at once."""
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection and free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def start_http(
    port: int, ready: Callable[[], bool] | None = None, host: str = "127.0.0.1",
    heartbeat: Heartbeat | None = None,
) -> BoundedHTTPServer:  # fmt: skip
    """Serve /metrics, /healthz and /readyz on ``host:port`` in a daemon thread; returns the server.

    ``/healthz`` fails (503, with the reason) when ``heartbeat`` says the loop is stuck; ``/readyz`` needs
    both a live loop and ``ready()``.
    """
    problem = heartbeat.problem if heartbeat is not None else (lambda: None)
    handler = type("Handler", (_Handler,), {"ready": staticmethod(ready or (lambda: True)),
                                            "problem": staticmethod(problem)})  # fmt: skip
    server = BoundedHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
