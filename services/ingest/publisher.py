"""The one Kafka producer of the process and the bounded, drop-oldest buffer in front of it.

Camera threads never block on Kafka: they put messages into :class:`DropOldestBuffer`, which, when full,
drops its oldest frame (counted). A single publisher thread moves messages into kafka-python's producer.
kafka-python 3 has no bound on its own record buffer, so the publisher keeps one: at most
``max_inflight_bytes`` of records may be handed to the producer and not yet acknowledged or failed. While
Kafka is unreachable that budget fills up, frames wait in the buffer (which drops its oldest), and records
that wait in the producer longer than ``delivery_timeout_ms`` expire (counted as ``kafka`` drops). Memory
is therefore bounded by ``max_inflight_bytes`` plus ``buffer_frames`` messages, and sending resumes by
itself when Kafka returns. Status and dead-letter records go through a separate small buffer that is sent first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vigil.services.ingest import metrics
from vigil.shared.schemas import CameraStatus, DeadLetter, FrameMessage
from vigil.shared.settings import TopicSettings

log = logging.getLogger(__name__)


@dataclass
class Outgoing:
    """One record waiting to be sent."""

    topic: str
    key: bytes | None
    value: bytes
    camera_id: str
    capture_ns: int = 0  # frames only; 0 for status / dead letters
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def is_frame(self) -> bool:
        """True for frame records (which may be dropped); False for status and dead letters."""
        return self.capture_ns > 0


class DropOldestBuffer:
    """A bounded FIFO that drops its oldest item when full and reports each drop to ``on_drop``."""

    def __init__(self, maxlen: int, on_drop: Callable[[Outgoing], None] | None = None) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1. Received: maxlen={maxlen}")
        self.maxlen = maxlen
        self._items: deque[Outgoing] = deque()
        self._cond = threading.Condition()
        self._on_drop = on_drop or (lambda _item: None)

    def put(self, item: Outgoing) -> None:
        """Append; if the buffer is full, the oldest item is dropped first."""
        with self._cond:
            dropped = self._items.popleft() if len(self._items) >= self.maxlen else None
            self._items.append(item)
            self._cond.notify()
        if dropped is not None:
            self._on_drop(dropped)

    def put_front(self, item: Outgoing) -> None:
        """Return an item that could not be sent to the front (it is the oldest); drops it if full."""
        with self._cond:
            if len(self._items) >= self.maxlen:
                dropped: Outgoing | None = item
            else:
                self._items.appendleft(item)
                dropped = None
        if dropped is not None:
            self._on_drop(dropped)

    def get(self, timeout: float) -> Outgoing | None:
        """The oldest item, waiting up to ``timeout`` seconds; None if still empty."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def get_nowait(self) -> Outgoing | None:
        """The oldest item or None."""
        with self._cond:
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class Publisher:
    """Sends frames, status records and dead letters through one kafka-python producer.

    Args:
        producer: a KafkaProducer (or anything with ``send`` returning a future, ``flush`` and ``close``).
        topics: topic names.
        buffer_frames: capacity of the frame buffer.
        max_frame_age_s: frames older than this when their turn comes are dropped as ``stale``.
        max_inflight_bytes: bytes handed to the producer and not yet acknowledged, at most.
    """

    def __init__(
        self, producer: Any, topics: TopicSettings, buffer_frames: int = 256, max_frame_age_s: float = 10.0,
        max_inflight_bytes: int = 16 * 1024 * 1024,
    ) -> None:  # fmt: skip
        self.producer = producer
        self.topics = topics
        self.max_frame_age_s = max_frame_age_s
        self.max_inflight_bytes = max_inflight_bytes
        self.inflight_bytes = 0
        self._inflight = threading.Condition()
        self.frames = DropOldestBuffer(buffer_frames, on_drop=lambda o: self._dropped(o, "buffer_full"))
        self.control = DropOldestBuffer(1024, on_drop=lambda o: log.warning("camera %s: status record dropped", o.camera_id))
        self.kafka_ok = True
        self.sent = 0
        self.on_ack: Callable[[Outgoing], None] | None = None  # called after each acknowledged record
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-publisher", daemon=True)
        self._last_error_log = 0.0
        self.stall_s = 20.0  # in-flight records with no callback this long: the producer is wedged
        self._generation = 0
        self._last_callback = time.monotonic()
        self._reset_needed = False
        self._last_loop = time.monotonic()

    def loop_age(self) -> float:
        """Seconds since the publisher thread last went round its loop (inf once the thread has died)."""
        if self._thread.ident is not None and not self._thread.is_alive() and not self._stop.is_set():
            return float("inf")
        return time.monotonic() - self._last_loop

    # -- API for camera threads ------------------------------------------------------------------
    def publish_frame(self, msg: FrameMessage) -> None:
        """Queue a frame (never blocks; may drop the oldest queued frame)."""
        self.frames.put(Outgoing(self.topics.frames, msg.camera_id.encode(), msg.encode(), msg.camera_id, msg.capture_ns or 1))
        metrics.BUFFERED.set(len(self.frames))

    def publish_status(self, status: CameraStatus) -> None:
        """Queue a camera status record (sent before frames)."""
        metrics.CAMERA_STATE.labels(status.camera_id).set(metrics.STATE_VALUES[status.state])
        self.control.put(Outgoing(self.topics.camera_status, status.camera_id.encode(), status.encode(), status.camera_id))

    def publish_dead_letter(self, letter: DeadLetter) -> None:
        """Queue a dead letter (sent before frames) and log it."""
        log.warning("camera %s: dead letter: %s", letter.camera_id, letter.error)
        key = letter.camera_id.encode() if letter.camera_id else None
        self.control.put(Outgoing(self.topics.dlq, key, letter.encode(), letter.camera_id or ""))

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the publisher thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 3.0) -> None:
        """Send what is buffered (up to ``timeout_s``), flush the producer and close it."""
        self._stop.set()
        self._thread.join(timeout_s)
        remaining = max(0.5, timeout_s - 0.5)
        try:
            self.producer.flush(timeout=remaining)
        except Exception as exc:  # noqa: BLE001 - any client error at shutdown is only logged
            log.warning("flush at shutdown did not complete: %s", exc)
        self.producer.close(timeout=0.5)

    # -- the loop ---------------------------------------------------------------------------------
    def _run(self) -> None:
        from kafka.errors import KafkaError, KafkaTimeoutError

        while True:
            self._last_loop = time.monotonic()
            self._maybe_reset_producer()
            item = self.control.get_nowait() or self.frames.get(timeout=0.1)
            if item is None:
                if self._stop.is_set() and not len(self.control) and not len(self.frames):
                    return
                continue
            metrics.BUFFERED.set(len(self.frames))
            if item.is_frame and time.monotonic() - item.enqueued > self.max_frame_age_s:
                self._dropped(item, "stale")
                continue
            if not self._reserve(len(item.value)):
                (self.frames if item.is_frame else self.control).put_front(item)
                if self._stop.is_set() and self._give_up_at_stop():
                    return
                continue
            try:
                future = self.producer.send(item.topic, key=item.key, value=item.value)
            except KafkaTimeoutError as exc:
                self._release(len(item.value))
                self._requeue(item, exc)
                if self._stop.wait(0.2) and self._give_up_at_stop():
                    return
                continue
            except KafkaError as exc:  # e.g. record too large: never retried
                self._release(len(item.value))
                self._dropped(item, "kafka")
                log.error("camera %s: record rejected by the producer: %s", item.camera_id, exc)
                continue
            if not item.is_frame:
                log.debug("camera %s: %s record handed to the producer", item.camera_id, item.topic)
            future.add_callback(self._on_sent, item, self._generation)
            future.add_errback(self._on_failed, item, self._generation)

    def _maybe_reset_producer(self) -> None:
        """Replace a producer whose batches expired, or that stopped answering, with a new one."""
        stalled = self.inflight_bytes > 0 and time.monotonic() - self._last_callback > self.stall_s
        if not (self._reset_needed or stalled) or not hasattr(self.producer, "reset"):
            return
        log.warning("Kafka producer %s; replacing it (records it still held are lost and show as sequence gaps)",
                    "stalled" if stalled else "expired records")  # fmt: skip
        with self._inflight:
            self._generation += 1
            self.inflight_bytes = 0
            self._inflight.notify_all()
        self.producer.reset()
        self._reset_needed = False
        self._last_callback = time.monotonic()

    def _reserve(self, size: int) -> bool:
        """Take ``size`` bytes of the in-flight budget, waiting up to 0.1 s; False if none came free."""
        with self._inflight:
            if self.inflight_bytes and self.inflight_bytes + size > self.max_inflight_bytes:
                self._inflight.wait(0.1)
                if self.inflight_bytes and self.inflight_bytes + size > self.max_inflight_bytes:
                    return False
            self.inflight_bytes += size
            return True

    def _release(self, size: int, generation: int | None = None) -> None:
        with self._inflight:
            if generation is None or generation == self._generation:  # a replaced producer's bytes are gone
                self.inflight_bytes -= size
            self._inflight.notify_all()

    def _give_up_at_stop(self) -> bool:
        """While stopping, give up on unsendable records (they are counted as dropped)."""
        while (item := self.control.get_nowait() or self.frames.get_nowait()) is not None:
            if item.is_frame:
                self._dropped(item, "kafka")
        return True

    def _requeue(self, item: Outgoing, exc: Exception) -> None:
        (self.frames if item.is_frame else self.control).put_front(item)
        self._set_kafka(False, exc)

    def _on_sent(self, item: Outgoing, generation: int, _meta: Any) -> None:
        self._last_callback = time.monotonic()
        self._release(len(item.value), generation)
        self.sent += 1
        self._set_kafka(True)
        if self.on_ack is not None:
            self.on_ack(item)
        if item.is_frame:
            metrics.FRAMES_PUBLISHED.labels(item.camera_id).inc()
            metrics.PUBLISH_SECONDS.labels(item.camera_id).observe(max(0.0, (time.time_ns() - item.capture_ns) / 1e9))

    def _on_failed(self, item: Outgoing, generation: int, exc: Exception) -> None:
        from kafka.errors import KafkaTimeoutError

        self._last_callback = time.monotonic()
        self._release(len(item.value), generation)
        if isinstance(exc, KafkaTimeoutError) and generation == self._generation:
            self._reset_needed = True
        self._set_kafka(False, exc)
        if item.is_frame:
            self._dropped(item, "kafka")
        else:
            log.error("camera %s: status / dead-letter record lost: %s", item.camera_id, exc)

    def _dropped(self, item: Outgoing, reason: str) -> None:
        if item.is_frame:
            metrics.FRAMES_DROPPED.labels(item.camera_id, reason).inc()

    def _set_kafka(self, ok: bool, exc: Exception | None = None) -> None:
        if ok != self.kafka_ok:
            if ok:
                log.info("Kafka is reachable again; publishing resumed")
            else:
                log.warning("Kafka unavailable (%s); buffering up to %d frames, dropping the oldest", exc, self.frames.maxlen)
            self.kafka_ok = ok
            metrics.KAFKA_UP.set(1 if ok else 0)
        elif not ok and time.monotonic() - self._last_error_log > 30:
            log.warning("Kafka still unavailable (%s)", exc)
        if not ok:
            self._last_error_log = time.monotonic()
