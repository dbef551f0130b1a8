"""The Redis / MQTT / HTTP side of `vigil notify`, and :func:`build_service`.

One loop thread (:meth:`NotifyService.wait`) does, each turn:

1. settles finished deliveries (:meth:`NotifyService.settle`): MQTT PUBACKs matched by
   :class:`~.mqtt.MqttPublisher`, webhook results reported by the :class:`~.webhook.WebhookTarget` threads. A
   failed one becomes a dead letter in ``vigil:notify:dead`` (``XADD MAXLEN ~``); a stream entry whose
   deliveries are all resolved is acknowledged (``XACK``), so an entry is acknowledged only after delivery or
   dead letter: at least once;
2. reads the alert stream in its own consumer group: first this consumer's own pending entries (a restart
   resumes), then new ones. At start and every ``min(60 s, claim_idle_s / 2)`` it resets the idle time of its own
   entries in flight (``XCLAIM ... JUSTID``) and claims entries idle for ``claim_idle_s`` (``XAUTOCLAIM``): those
   of a dead replica, or its own that a failed turn read but did not dispatch. It reads nothing while
   ``max_inflight`` entries are in flight (the stream holds the rest);
3. validates each entry (:func:`~.core.parse_alert`; a malformed one is dead-lettered and acknowledged),
   looks up its evidence, builds the payload and hands it to MQTT (two topics) and to each matching webhook's
   own bounded queue, without waiting for any of them;
4. every ``status_every_s`` (and on each MQTT reconnection) publishes the cameras' retained status.

The scorer never waits for any of this: it only appends to the stream.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from typing import Any

from vigil.services.notify import core, metrics
from vigil.services.notify.delivery import Delivery, Result
from vigil.services.notify.hooks import WebhookDefaults, WebhookError, load_webhooks
from vigil.services.notify.mqtt import MqttLoginError, MqttPublisher
from vigil.services.notify.settings import NotifySettings
from vigil.services.notify.webhook import WebhookTarget
from vigil.shared.redis_keys import camera_hash, evidence_key
from vigil.shared.runner import StartupError
from vigil.shared.schemas import Alert
from vigil.shared.telemetry import Heartbeat

log = logging.getLogger(__name__)
CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CLAIM_EVERY_S = 60.0


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class AlertStream:
    """The Redis side: the alert stream's consumer group, evidence look-ups, dead letters, camera hashes."""

    def __init__(self, client: Any, settings: NotifySettings) -> None:
        self.client = client
        self.settings = settings

    def ensure_group(self) -> None:
        """Create the consumer group (and the stream) when missing."""
        import redis

        s = self.settings
        try:
            self.client.xgroup_create(s.alerts_stream, s.alerts_group, id="0" if s.alerts_from_start else "$",
                                      mkstream=True)  # fmt: skip
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, cursor: str, block_ms: int | None) -> list[tuple[str, dict[Any, Any]]]:
        """Up to ``alerts_batch`` entries after ``cursor`` (``0``: own pending ones; ``>``: new ones)."""
        s = self.settings
        resp = self.client.xreadgroup(s.alerts_group, s.consumer_name, {s.alerts_stream: cursor}, count=s.alerts_batch,
                                      block=block_ms)  # fmt: skip
        entries = resp[0][1] if resp else []
        return [(_text(entry_id), fields or {}) for entry_id, fields in entries]

    def claim(self, limit: int) -> list[tuple[str, dict[Any, Any]]]:
        """Entries other consumers read but left unacknowledged for ``claim_idle_s`` (XAUTOCLAIM), up to ``limit``."""
        s = self.settings
        start, out = "0-0", []
        while len(out) < limit:
            resp = self.client.xautoclaim(s.alerts_stream, s.alerts_group, s.consumer_name,
                                          min_idle_time=int(s.claim_idle_s * 1000), start_id=start,
                                          count=min(s.alerts_batch, limit - len(out)))  # fmt: skip
            start = _text(resp[0])
            out += [(_text(entry_id), fields or {}) for entry_id, fields in resp[1] if entry_id is not None]
            if start == "0-0":
                break
        return out

    def touch(self, entry_ids: list[str]) -> None:
        """Reset the idle time of entries still being delivered (XCLAIM to this consumer, JUSTID), so that no other
        replica claims them while a slow webhook is retried."""
        s = self.settings
        for i in range(0, len(entry_ids), 1000):
            self.client.xclaim(s.alerts_stream, s.alerts_group, s.consumer_name, 0, entry_ids[i : i + 1000], justid=True)

    def ack(self, entry_ids: list[str]) -> None:
        """Acknowledge entries."""
        if entry_ids:
            self.client.xack(self.settings.alerts_stream, self.settings.alerts_group, *entry_ids)

    def evidence(self, alert_ids: list[str]) -> list[dict[str, str]]:
        """Each alert's evidence hash as text (empty when none was written yet)."""
        pipe = self.client.pipeline(transaction=False)
        for alert_id in alert_ids:
            pipe.hgetall(evidence_key(alert_id))
        return [{_text(k): _text(v) for k, v in (h or {}).items()} for h in pipe.execute()]

    def dead_letter(self, letters: list[dict[str, str]]) -> None:
        """Append dead letters to the capped dead-letter stream."""
        if not letters:
            return
        pipe = self.client.pipeline(transaction=False)
        for fields in letters:
            pipe.xadd(self.settings.dead_letters, fields, maxlen=self.settings.dead_maxlen, approximate=True)
        pipe.execute()

    def cameras(self) -> list[tuple[str, dict[Any, Any]]]:
        """The camera hashes (valid ids only, at most ``max_cameras``; the others are counted)."""
        ids: list[str] = []
        for key in self.client.scan_iter(match=camera_hash("*"), count=1000):
            cam = _text(key).split(":", 2)[-1]
            if not CAMERA_ID.match(cam) or len(ids) >= self.settings.max_cameras:
                metrics.CAMERAS_SKIPPED.inc()
                continue
            ids.append(cam)
        pipe = self.client.pipeline(transaction=False)
        for cam in ids:
            pipe.hgetall(camera_hash(cam))
        return [(cam, h) for cam, h in zip(ids, pipe.execute(), strict=True) if h]


class NotifyService:
    """`vigil notify` as a :class:`~vigil.shared.runner.Service` (one loop thread plus the delivery threads).

    Args:
        settings: The service settings.
        stream: The Redis side.
        mqtt: The MQTT publisher, or None when MQTT is off.
        targets: One :class:`WebhookTarget` per webhook (reporting to :attr:`results`).
        abort: Set at the end of the shutdown flush (the targets' retries stop waiting).
    """

    def __init__(self, settings: NotifySettings, stream: AlertStream, mqtt: MqttPublisher | None,
                 targets: list[WebhookTarget], results: queue.SimpleQueue[Result], abort: threading.Event) -> None:  # fmt: skip
        self.settings = settings
        self.stream = stream
        self.mqtt = mqtt
        self.targets = targets
        self.results = results
        self.abort = abort
        self.topics = core.Topics(settings.topic_prefix)
        self.ledger = core.Ledger()
        self.heartbeat = Heartbeat(settings.heartbeat_timeout_s)
        self._stop = threading.Event()
        self._cursor = "0"
        self._unsettled: list[Result] = []
        self._status: dict[str, tuple[str, str]] = {}
        self._status_at = 0.0
        self._claim_at = 0.0
        self._started = False

    # -- Service -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the group and start the webhook threads."""
        self.stream.ensure_group()
        for target in self.targets:
            target.start()
        self._started = True
        s = self.settings
        log.info("notify: alerts from %s (group %s/%s) to %s and %d webhook(s): %s", s.alerts_stream, s.alerts_group,
                 s.consumer_name, f"MQTT {s.mqtt_host}:{s.mqtt_port}" if self.mqtt else "no MQTT", len(self.targets),
                 ", ".join(f"{t.hook.name} ({t.hook.host})" for t in self.targets) or "-")  # fmt: skip

    def wait(self) -> int:
        """Run the loop until a stop is asked; returns 0."""
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the top of the service loop: log, pause, go on
                metrics.LOOP_FAILURES.inc()
                log.exception("notify loop turn failed; retrying in %.1fs", self.settings.retry_s)
                self._stop.wait(self.settings.retry_s)
        return 0

    def request_stop(self) -> None:
        """Ask the loop to end (safe from a signal handler)."""
        self._stop.set()

    def ready(self) -> bool:
        """Ready while the loop beats and, with MQTT on, the broker is connected."""
        return self._started and self.heartbeat.alive() and (self.mqtt is None or self.mqtt.connected.is_set())

    # -- the loop ----------------------------------------------------------------------------------------------
    def step(self) -> None:
        """One turn: settle finished deliveries, claim / read / dispatch entries, publish camera status."""
        self.heartbeat.beat()
        self.settle()
        now = time.monotonic()
        if now >= self._claim_at:
            self._claim_at = now + min(CLAIM_EVERY_S, self.settings.claim_idle_s / 2)
            self.stream.touch(list(self.ledger.entries))
            self.take(self.stream.claim(max(0, self.settings.max_inflight - len(self.ledger))), claimed=True)
        if len(self.ledger) < self.settings.max_inflight:
            entries = self.stream.read(self._cursor, self.settings.block_ms if self._cursor == ">" else None)
            if self._cursor != ">":
                self._cursor = entries[-1][0] if entries else ">"
            self.take(entries)
        else:  # back-pressure: the entries wait in the stream
            self._stop.wait(0.05)
        if self.mqtt is not None and (self.mqtt.resync.is_set() or now >= self._status_at):
            self.publish_status(force=self.mqtt.resync.is_set())
        metrics.INFLIGHT.set(len(self.ledger))
        if self.mqtt is not None:
            metrics.QUEUED.labels("mqtt", "mqtt").set(self.mqtt.waiting)

    def take(self, entries: list[tuple[str, dict[Any, Any]]], claimed: bool = False) -> None:
        """Validate entries, dead-letter the malformed ones, dispatch the others (an entry in flight is skipped)."""
        if claimed and entries:
            metrics.ENTRIES.labels("claimed").inc(len(entries))
            log.info("notify: claimed %d entries idle for %.0fs or more (a dead replica's, or read by a failed turn)",
                     len(entries), self.settings.claim_idle_s)  # fmt: skip
        good: list[tuple[str, Alert]] = []
        bad: list[tuple[str, dict[Any, Any], str]] = []
        for entry_id, fields in entries:
            if entry_id in self.ledger:
                continue
            try:
                good.append((entry_id, core.parse_alert(fields)))
            except core.BadAlertError as exc:
                bad.append((entry_id, fields, str(exc) if fields else "entry no longer in the stream (trimmed)"))
        if bad:
            self.reject(bad)
        if good:
            found = self.stream.evidence([a.alert_id for _, a in good])
            for (entry_id, alert), evidence in zip(good, found, strict=True):
                self.dispatch(entry_id, alert, evidence)

    def reject(self, bad: list[tuple[str, dict[Any, Any], str]]) -> None:
        """Dead-letter malformed entries (channel ``input``), then acknowledge them."""
        letters = []
        for entry_id, fields, reason in bad:
            raw = fields.get(b"json", fields.get("json", b""))
            log.warning("notify: alert entry %s is malformed, dead-lettered: %s", entry_id, reason)
            letters.append(core.dead_letter_fields("input", "", reason, entry_id, raw if isinstance(raw, bytes | str)
                                                   else b"", self.settings.dead_max_bytes, time_ns=time.time_ns()))  # fmt: skip
            metrics.ENTRIES.labels("malformed").inc()
            metrics.DEAD.labels("input", "", "malformed").inc()
        self.stream.dead_letter(letters)
        self.stream.ack([entry_id for entry_id, _, _ in bad])

    def dispatch(self, entry_id: str, alert: Alert, evidence: dict[str, str]) -> None:
        """Hand one alert change to MQTT and the matching webhooks; acknowledge at once when nothing matches (or
        when the scorer suppressed it: it stays in the record and the console, counted here)."""
        if alert.suppressed and not self.settings.notify_suppressed:
            metrics.ENTRIES.labels("suppressed").inc()
            self.stream.ack([entry_id])
            return
        metrics.ENTRIES.labels("ok").inc()
        body = core.alert_payload(alert, entry_id, core.links(self.settings.public_url, alert.alert_id, evidence,
                                                              alert.snapshot_key is not None), evidence)  # fmt: skip
        d = Delivery(entry_id, alert.alert_id, alert.camera_id, alert.event, body, core.entry_time_ns(entry_id),
                     alert.trigger_capture_ns)  # fmt: skip
        hooks = [t for t in self.targets if core.matches(alert, t.hook.cameras, t.hook.events)]
        count = (2 if self.mqtt is not None else 0) + len(hooks)
        if not count:
            self.stream.ack([entry_id])
            return
        self.ledger.open(entry_id, count)
        if self.mqtt is not None:
            for topic in (self.topics.alerts, self.topics.camera_alert(alert.camera_id)):
                if (refused := self.mqtt.publish(topic, body, d)) is not None:
                    self.results.put(refused)
        for target in hooks:
            if not target.submit(d):
                self.results.put(Result("webhook", target.hook.name, d, "queue_full",
                                        f"queue of {target.hook.queue_size} full", attempts=0))  # fmt: skip

    # -- results -----------------------------------------------------------------------------------------------
    def settle(self) -> None:
        """Count finished deliveries, dead-letter the failed ones, acknowledge the entries all of whose deliveries
        are resolved. On a Redis failure the results are kept and settled again next turn."""
        batch, self._unsettled = self._unsettled, []
        batch += self.mqtt.poll() if self.mqtt is not None else []
        while True:
            try:
                batch.append(self.results.get_nowait())
            except queue.Empty:
                break
        final = [r for r in batch if r.reason != "abandoned"]
        try:
            self.stream.dead_letter([self._letter(r) for r in final if not r.ok])
        except Exception:
            self._unsettled = batch
            raise
        self._count(final)
        done = [r.delivery.entry_id for r in final if self.ledger.resolve(r.delivery.entry_id, r.reason or "delivered")]
        self.stream.ack(done)  # an ack lost to a Redis failure is redelivered after a restart (at least once)

    def _letter(self, r: Result) -> dict[str, str]:
        d = r.delivery
        return core.dead_letter_fields(r.channel, r.target, f"{r.reason}: {r.detail}", d.entry_id, d.body,
                                       self.settings.dead_max_bytes, alert_id=d.alert_id, camera_id=d.camera_id,
                                       event=d.event, attempts=r.attempts, topic=r.topic, time_ns=r.done_ns)  # fmt: skip

    def _count(self, results: list[Result]) -> None:
        for r in results:
            if r.ok:
                metrics.DELIVERED.labels(r.channel, r.target).inc()
                if r.delivery.entry_ns is not None:
                    metrics.LATENCY.labels(r.channel).observe(max(0.0, (r.done_ns - r.delivery.entry_ns) / 1e9))
                if r.delivery.capture_ns is not None:
                    metrics.END_TO_END.labels(r.channel).observe(max(0.0, (r.done_ns - r.delivery.capture_ns) / 1e9))
                continue
            if r.channel == "mqtt":
                metrics.FAILED.labels(r.channel, r.target).inc()
            metrics.DEAD.labels(r.channel, r.target, r.reason).inc()
            log.warning("notify: %s %s: entry %s (alert %s, camera %s) dead-lettered: %s: %s", r.channel, r.target,
                        r.delivery.entry_id, r.delivery.alert_id, r.delivery.camera_id, r.reason, r.detail)  # fmt: skip

    # -- camera status -------------------------------------------------------------------------------------------
    def publish_status(self, force: bool) -> None:
        """Publish (retained) each camera's status and state that changed, or all of them when ``force``."""
        assert self.mqtt is not None  # noqa: S101 - only called with MQTT on
        self.mqtt.resync.clear()
        self._status_at = time.monotonic() + self.settings.status_every_s
        now, seen = time.time_ns(), set()
        for cam, fields in self.stream.cameras():
            online = core.camera_status(fields, now, self.settings.camera_stale_s) == "online"
            seen.add(cam)
            self._set_status(cam, ("online" if online else "offline", core.camera_state(fields, online)), force)
        for cam in [c for c in self._status if c not in seen]:  # its hash expired: offline, then forgotten
            self._set_status(cam, ("offline", "offline"), force)
            del self._status[cam]

    def _set_status(self, cam: str, pair: tuple[str, str], force: bool) -> None:
        if not force and self._status.get(cam) == pair:
            return
        assert self.mqtt is not None  # noqa: S101
        self.mqtt.publish(self.topics.camera_status(cam), pair[0], None, retain=True)
        self.mqtt.publish(self.topics.camera_state(cam), pair[1], None, retain=True)
        self._status[cam] = pair
        metrics.STATUS.inc(2)

    # -- shutdown ------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Flush: wait up to ``flush_timeout_s`` for deliveries in flight, settle them, then close everything.
        What is not finished by then stays pending in the group and is delivered again after a restart."""
        deadline = time.monotonic() + self.settings.flush_timeout_s
        for target in self.targets:
            target.close()
        try:
            while time.monotonic() < deadline and self.ledger:
                self.settle()
                time.sleep(0.02)
        finally:
            self.abort.set()
            for thread in [t for target in self.targets for t in target.threads if t.is_alive()]:
                thread.join(timeout=max(0.05, deadline + 1.0 - time.monotonic()))
            self._final_settle()
            if self.mqtt is not None:
                self.mqtt.close(max(0.5, deadline - time.monotonic()))
            self.stream.client.close()

    def _final_settle(self) -> None:
        try:
            self.settle()
        except Exception as exc:  # noqa: BLE001 - shutdown: report and go on closing
            log.error("notify: settling at shutdown failed (%s)", type(exc).__name__)
        if self.ledger:
            log.warning("notify: %d alert entries not fully delivered at shutdown stay pending in group %s; they are "
                        "delivered again after a restart", len(self.ledger), self.settings.alerts_group)  # fmt: skip


def build_service(settings: NotifySettings) -> NotifyService:
    """Wire the clients: check Redis, read the webhooks file and secrets, connect to the MQTT broker."""
    import redis

    client = settings.redis.client()
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StartupError(f"Redis at {settings.redis.url} does not answer ({type(exc).__name__}); start it "
                           "(infra/local/stack.sh up here) or set VIGIL_REDIS_URL") from exc  # fmt: skip
    defaults = WebhookDefaults(settings.webhook_timeout_s, settings.webhook_max_attempts, settings.webhook_backoff_s,
                               settings.webhook_backoff_max_s, settings.webhook_queue_size, settings.webhook_concurrency)  # fmt: skip
    try:
        hooks = load_webhooks(settings.webhooks_file, defaults)
    except WebhookError as exc:
        raise StartupError(str(exc)) from None
    if not hooks and not settings.mqtt_enabled:
        log.warning("notify: nothing to deliver to (MQTT off, no webhooks file): alert entries are acknowledged "
                    "without delivery; set VIGIL_NOTIFY_MQTT_ENABLED=true or VIGIL_NOTIFY_WEBHOOKS_FILE")  # fmt: skip
    results: queue.SimpleQueue[Result] = queue.SimpleQueue()
    abort = threading.Event()
    targets = [WebhookTarget(hook, results.put, abort) for hook in hooks]
    return NotifyService(settings, AlertStream(client, settings), _connect_mqtt(settings), targets, results, abort)


def _connect_mqtt(settings: NotifySettings) -> MqttPublisher | None:
    if not settings.mqtt_enabled:
        return None
    publisher = MqttPublisher(settings, core.Topics(settings.topic_prefix))
    try:
        publisher.start()
    except (MqttLoginError, ValueError) as exc:  # ValueError: the password file is unreadable
        raise StartupError(str(exc)) from None
    return publisher
