"""Live alert changes and evidence for `GET /v1/events` (server-sent events).

One :class:`AlertHub` per process holds one Redis ``PSUBSCRIBE vigil:alerts:*`` (each alert change: an
``alert`` event) and ``SUBSCRIBE vigil:evidence-ready`` (an alert id whose snapshot and clip were just
written: an ``evidence`` event, ``{"alert_id": ...}``; a message that is no alert id is dropped and
counted), and fans every message out to the connected clients, each through its own bounded queue: a slow client loses its oldest
changes (counted in ``vigil_api_sse_dropped_total``), never the others' and never the server's memory.
The subscription starts with the first client, lasts until shutdown, and is re-established with backoff
when Redis drops it.

Example:
    >>> sse_message("alert", '{"a": 1}', "7")
    'id: 7\\nevent: alert\\ndata: {"a": 1}\\n\\n'
    >>> SSE_KEEPALIVE
    ': keep-alive\\n\\n'
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from vigil.services.api import metrics
from vigil.services.api.core import ALERT_ID
from vigil.shared.redis_keys import EVIDENCE_READY_CHANNEL, alerts_channel

log = logging.getLogger(__name__)

SSE_KEEPALIVE = ": keep-alive\n\n"
SSE_CONNECTED = ": connected\n\n"
Event = tuple[str, str]
"""``(event name, data)`` of one server-sent event."""


def sse_message(event: str, data: str, event_id: str | None = None) -> str:
    """One server-sent event (``data`` is one line of JSON)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


class AlertHub:
    """Fans the alert pub/sub channels out to bounded per-client queues.

    Args:
        client_factory: Builds a ``redis.asyncio.Redis`` client (called in the event loop).
        queue_size: Changes buffered per client; the oldest is dropped when full.
        max_clients: Clients at once; :meth:`subscribe` raises ``OverflowError`` beyond.
    """

    def __init__(self, client_factory: Callable[[], Any], queue_size: int = 256, max_clients: int = 100) -> None:
        self.client_factory = client_factory
        self.queue_size = queue_size
        self.max_clients = max_clients
        self._queues: set[asyncio.Queue[Event]] = set()
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._seq = 0

    @property
    def clients(self) -> int:
        """Connected clients."""
        return len(self._queues)

    async def add(self, timeout_s: float = 5.0) -> asyncio.Queue[Event]:
        """A new client's queue of alert JSON, once the Redis subscription is up.

        Raises:
            OverflowError: ``max_clients`` clients are connected already.
            TimeoutError: Redis did not confirm the subscription within ``timeout_s``.
        """
        if len(self._queues) >= self.max_clients:
            raise OverflowError(f"{self.max_clients} clients already follow /v1/events; try again later")
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()  # of this event loop
            self._task = asyncio.get_running_loop().create_task(self._run(), name="vigil-api-alert-hub")
        await asyncio.wait_for(self._ready.wait(), timeout_s)
        queue: asyncio.Queue[Event] = asyncio.Queue(self.queue_size)
        self._queues.add(queue)
        metrics.SSE_CLIENTS.set(len(self._queues))
        return queue

    def remove(self, queue: asyncio.Queue[Event]) -> None:
        """Forget a client (idempotent)."""
        self._queues.discard(queue)
        metrics.SSE_CLIENTS.set(len(self._queues))

    def publish(self, data: str, event: str = "alert") -> None:
        """Hand one event to every client (drop-oldest when a client's queue is full)."""
        for queue in list(self._queues):
            if queue.full():
                queue.get_nowait()
                metrics.SSE_DROPPED.inc()
            queue.put_nowait((event, data))

    def dispatch(self, msg: dict[str, Any]) -> None:
        """Route one pub/sub message: an alert change as is, an evidence id once checked."""
        data = msg["data"]
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        if msg.get("type") == "pmessage":
            self.publish(text)
        elif msg.get("type") == "message":
            if ALERT_ID.match(text) is None:
                metrics.DROPPED.labels("evidence_message").inc()
                log.warning("ignored an evidence-ready message that is no alert id (%d bytes)", len(text))
                return
            self.publish(json.dumps({"alert_id": text}), "evidence")

    async def _run(self) -> None:
        """Hold the subscription from the first client until :meth:`close`; reconnect with backoff."""
        delay = 0.5
        while True:
            try:
                await self._listen()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop of the hub: log and reconnect
                self._ready.clear()
                log.warning("alert subscription lost (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)

    async def _listen(self) -> None:
        client = self.client_factory()
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(alerts_channel("*"))
            await pubsub.subscribe(EVIDENCE_READY_CHANNEL)
            self._ready.set()
            while True:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is not None:
                    self.dispatch(msg)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
                await client.aclose()

    async def close(self) -> None:
        """Stop the subscription (at shutdown)."""
        self._queues.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
