"""Webhook delivery of `vigil notify`: one bounded queue and a few threads per webhook, signed POSTs, retries.

Each webhook has its own queue (``queue_size``) and ``concurrency`` threads, so a slow or dead receiver only
fills its own queue: MQTT and the other webhooks never wait for it. A full queue drops the new delivery, which
becomes a ``queue_full`` dead letter (counted). Each POST is signed afresh (:func:`~.core.sign_body`) and sent
with the standard library's ``http.client`` with a timeout; redirects are not followed. 2xx is delivered;
408, 425, 429, 5xx and network errors are retried after :func:`~.core.backoff_s` with jitter (50-100 % of the
delay) up to ``max_attempts``, then dead-lettered (``exhausted``); other statuses are ``rejected`` at once.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from vigil.services.notify import metrics
from vigil.services.notify.core import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    backoff_s,
    classify_status,
    sign_body,
)
from vigil.services.notify.delivery import Delivery, Result
from vigil.services.notify.hooks import Webhook

log = logging.getLogger(__name__)
USER_AGENT = "vigil-notify/1"


def post(hook: Webhook, delivery: Delivery, now_s: float) -> int:
    """POST ``delivery``'s body to ``hook`` once, signed; returns the HTTP status.

    Raises:
        OSError: connection refused, timeout, TLS failure.
        http.client.HTTPException: a malformed response.
    """
    parts = urlsplit(hook.url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname or "", parts.port, timeout=hook.timeout_s)
    ts, signature = sign_body(hook.secret, delivery.body, int(now_s))
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, TIMESTAMP_HEADER: ts,
               SIGNATURE_HEADER: signature, "X-Vigil-Delivery": delivery.entry_id, "X-Vigil-Event": delivery.event}  # fmt: skip
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=delivery.body, headers=headers)
        response = conn.getresponse()
        response.read(64 << 10)  # a bounded read: the body is not used
        return response.status
    finally:
        conn.close()


class WebhookTarget:
    """One webhook's queue and threads; each finished delivery is handed to ``report``.

    Args:
        hook: The webhook.
        report: Called (from a delivery thread) with each :class:`Result`; must be thread-safe.
        abort: Set at the end of the shutdown flush: retries stop waiting and report ``abandoned``.
        sender: The POST function (tests pass the real one; kept as a seam for the replay command).
    """

    def __init__(self, hook: Webhook, report: Callable[[Result], None], abort: threading.Event,
                 sender: Callable[[Webhook, Delivery, float], int] = post) -> None:  # fmt: skip
        self.hook = hook
        self.report = report
        self.abort = abort
        self.sender = sender
        self.queue: queue.Queue[Delivery | None] = queue.Queue(maxsize=hook.queue_size)
        self.threads = [threading.Thread(target=self._run, name=f"notify-hook-{hook.name}-{i}", daemon=True)
                        for i in range(hook.concurrency)]  # fmt: skip

    def start(self) -> None:
        """Start the delivery threads."""
        for thread in self.threads:
            thread.start()

    def submit(self, delivery: Delivery) -> bool:
        """Queue a delivery; False (counted as dropped) when the queue is full."""
        try:
            self.queue.put_nowait(delivery)
        except queue.Full:
            metrics.DROPPED.labels("webhook", self.hook.name).inc()
            return False
        metrics.QUEUED.labels("webhook", self.hook.name).set(self.queue.qsize())
        return True

    def idle(self) -> bool:
        """Whether nothing is queued or being delivered."""
        return self.queue.unfinished_tasks == 0

    def close(self) -> None:
        """Ask the threads to end once the queue is empty (sentinels), without waiting."""
        for _ in self.threads:
            with contextlib.suppress(queue.Full):  # a full queue: the threads end on abort instead
                self.queue.put_nowait(None)

    def _run(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                if self.abort.is_set():
                    return
                continue
            try:
                if item is None:
                    return
                if self.abort.is_set():  # the shutdown flush is over: not even a first attempt (stays pending)
                    continue
                self.report(self.deliver(item))
            except Exception as exc:  # noqa: BLE001 - the top of a delivery thread: report, go on with the next one
                # the exception's text may quote the URL (a token): its type only, the traceback at DEBUG
                log.error("webhook %s: delivery of entry %s failed unexpectedly (%s)", self.hook.name, item.entry_id,
                          type(exc).__name__)  # fmt: skip
                log.debug("webhook %s: traceback", self.hook.name, exc_info=True)
                self.report(Result("webhook", self.hook.name, item, "rejected", f"unexpected {type(exc).__name__}"))
            finally:
                self.queue.task_done()
                metrics.QUEUED.labels("webhook", self.hook.name).set(self.queue.qsize())

    def deliver(self, delivery: Delivery) -> Result:
        """POST with retries; the result says delivered, rejected, exhausted or abandoned (shutdown)."""
        hook, attempt, detail = self.hook, 0, ""
        while True:
            attempt += 1
            verdict, detail = self._attempt(delivery)
            if verdict == "ok":
                return Result("webhook", hook.name, delivery, "", attempts=attempt)
            metrics.FAILED.labels("webhook", hook.name).inc()
            if verdict == "reject":
                return Result("webhook", hook.name, delivery, "rejected", detail, attempt)
            if attempt >= hook.max_attempts:
                return Result("webhook", hook.name, delivery, "exhausted", f"{detail} after {attempt} attempts", attempt)
            delay = backoff_s(attempt, hook.backoff_s, hook.backoff_max_s) * (0.5 + random.random() / 2)  # noqa: S311
            log.info("webhook %s (%s): entry %s attempt %d failed (%s); retrying in %.2fs", hook.name, hook.host,
                     delivery.entry_id, attempt, detail, delay)  # fmt: skip
            if self.abort.wait(delay):
                return Result("webhook", hook.name, delivery, "abandoned", f"{detail}; shutdown", attempt)
            metrics.RETRIED.labels("webhook", hook.name).inc()

    def _attempt(self, delivery: Delivery) -> tuple[str, str]:
        try:
            status = self.sender(self.hook, delivery, time.time())
        except (OSError, http.client.HTTPException) as exc:  # the message of some may name the host: type only
            return "retry", type(exc).__name__
        return classify_status(status), f"HTTP {status}"
