"""The MQTT side of `vigil notify` (paho-mqtt 2, MQTT 5), following Frigate's conventions.

* ``<prefix>/available``: ``online`` (retained) once connected; the client's last will sets it ``offline``
  (retained) when the service dies, and a clean stop publishes ``offline`` too.
* ``<prefix>/alerts`` and ``<prefix>/<camera>/alert``: each alert change (QoS 1, not retained).
* ``<prefix>/<camera>/status`` (``online`` / ``offline``) and ``<prefix>/<camera>/state`` (the scorer's
  ``warmup`` / ``learning`` / ``normal`` / ``alert``, or ``offline``): retained.

paho's network thread runs the socket; it calls :meth:`MqttPublisher._on_publish` while holding paho's own
message lock, so the callback only puts ``(mid, reason, time)`` on a queue and the service loop matches it to
the message in :meth:`MqttPublisher.poll` (no lock of ours is ever taken inside paho's). A message without a
PUBACK after ``mqtt_deadline_s`` is reported as ``no_puback`` (paho still sends it if the broker comes back).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from vigil.services.notify import metrics
from vigil.services.notify.core import Topics
from vigil.services.notify.delivery import Delivery, Result
from vigil.services.notify.settings import NotifySettings

log = logging.getLogger(__name__)


class MqttLoginError(Exception):
    """The broker refused the connection (bad user or password, not authorised); the text holds no secret."""


@dataclass(frozen=True)
class Sent:
    """A tracked message awaiting its PUBACK."""

    delivery: Delivery
    topic: str
    deadline: float


class MqttPublisher:
    """Publishes alert changes and retained status through one paho client; results go to the loop's queue.

    Args:
        settings: The service settings (broker, credentials, QoS, deadlines).
        topics: Topic names.
    """

    def __init__(self, settings: NotifySettings, topics: Topics) -> None:
        self.settings = settings
        self.topics = topics
        self.client: Any = None
        self.connected = threading.Event()
        self.refused: str | None = None
        self.resync = threading.Event()
        """Set on each (re)connection: the loop republishes every camera's retained status."""
        self._acks: queue.SimpleQueue[tuple[int, bool, str, int]] = queue.SimpleQueue()
        self._sent: dict[int, Sent] = {}
        self._closing = False

    # -- connection ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the client (will, credentials, TLS), start its network thread and wait for the first connection.

        Raises:
            MqttLoginError: the broker refused the login (an unreachable broker only logs: paho keeps trying).
        """
        self.client = self._make_client()
        s = self.settings
        self.client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive_s)
        self.client.loop_start()
        deadline = time.monotonic() + s.mqtt_connect_timeout_s
        while time.monotonic() < deadline and not self.connected.is_set() and self.refused is None:
            time.sleep(0.02)
        if self.refused is not None:
            self.close(0)
            raise MqttLoginError(f"the MQTT broker at {s.mqtt_host}:{s.mqtt_port} refused the connection: {self.refused}"
                                 " (check VIGIL_NOTIFY_MQTT_USERNAME and the password file)")  # fmt: skip
        if not self.connected.is_set():
            log.warning("MQTT broker at %s:%d not reachable within %.0fs; retrying in the background (messages wait, "
                        "up to %d, then are dead-lettered)", s.mqtt_host, s.mqtt_port, s.mqtt_connect_timeout_s,
                        s.mqtt_max_queued)  # fmt: skip

    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt

        s = self.settings
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=s.mqtt_client_id, protocol=mqtt.MQTTv5)
        if s.mqtt_username:
            client.username_pw_set(s.mqtt_username, s.mqtt_secret())
        if s.mqtt_tls:
            client.tls_set(ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
        client.will_set(self.topics.available, "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 30)
        client.max_queued_messages_set(s.mqtt_max_queued)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            log.error("MQTT broker refused the connection: %s", reason)
            return
        self.refused = None
        self.connected.set()
        metrics.MQTT_CONNECTED.set(1)
        client.publish(self.topics.available, "online", qos=1, retain=True)
        self.resync.set()
        log.info("MQTT connected to %s:%d", self.settings.mqtt_host, self.settings.mqtt_port)

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if self.connected.is_set() and not self._closing:
            log.warning("MQTT disconnected (%s); reconnecting", reason)
        self.connected.clear()
        metrics.MQTT_CONNECTED.set(0)

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, reason: Any, _props: Any = None) -> None:
        """paho's thread, inside paho's lock: only queue the acknowledgement."""
        self._acks.put((mid, bool(getattr(reason, "is_failure", False)), str(reason), time.time_ns()))

    # -- publishing ------------------------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes | str, delivery: Delivery | None, retain: bool = False) -> Result | None:
        """Publish one message; a tracked one (``delivery`` given) is reported by :meth:`poll`.

        Returns:
            A failed :class:`Result` when the client refused the message at once (its queue is full), else None.
        """
        import paho.mqtt.client as mqtt

        qos = self.settings.mqtt_qos if delivery is not None else 1
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            if delivery is None:
                return None
            return Result("mqtt", "mqtt", delivery, "queue_full", mqtt.error_string(info.rc), topic=topic)
        if delivery is not None:
            self._sent[info.mid] = Sent(delivery, topic, time.monotonic() + self.settings.mqtt_deadline_s)
        return None

    def poll(self) -> list[Result]:
        """Results of the tracked messages acknowledged since the last call, and of those past their deadline."""
        out: list[Result] = []
        while True:
            try:
                mid, failed, reason, t_ns = self._acks.get_nowait()
            except queue.Empty:
                break
            sent = self._sent.pop(mid, None)
            if sent is not None:  # else an untracked (status) message, or one already past its deadline
                out.append(Result("mqtt", "mqtt", sent.delivery, "rejected" if failed else "",
                                  f"PUBACK {reason}" if failed else "", done_ns=t_ns, topic=sent.topic))  # fmt: skip
        now = time.monotonic()
        for mid in [m for m, sent in self._sent.items() if sent.deadline <= now]:
            sent = self._sent.pop(mid)
            out.append(Result("mqtt", "mqtt", sent.delivery, "no_puback",
                              f"no PUBACK within {self.settings.mqtt_deadline_s:g}s", topic=sent.topic))  # fmt: skip
        return out

    @property
    def waiting(self) -> int:
        """Tracked messages awaiting their PUBACK."""
        return len(self._sent)

    def close(self, timeout_s: float) -> None:
        """Publish ``offline`` on the availability topic, wait up to ``timeout_s`` for it, and disconnect."""
        if self.client is None:
            return
        self._closing = True
        try:
            if self.connected.is_set():
                info = self.client.publish(self.topics.available, "offline", qos=1, retain=True)
                info.wait_for_publish(timeout=max(0.1, timeout_s))
        except (RuntimeError, ValueError) as exc:
            log.warning("MQTT: could not publish offline (%s)", type(exc).__name__)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            self.connected.clear()
