"""`vigil notify replay`: re-send dead letters of ``vigil:notify:dead`` to where they failed to go.

A webhook dead letter goes to the webhook of the same name in the current webhooks file (signed with its current
secret, one attempt); an MQTT one is published again to its topic (QoS 1, waiting for the PUBACK). Each one
delivered is deleted from the dead letters; the others stay. Malformed input (channel ``input``) and payloads cut
at ``dead_max_bytes`` cannot be replayed and are left for a person to read.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from vigil.services.notify.delivery import Delivery
from vigil.services.notify.hooks import Webhook, WebhookDefaults, load_webhooks
from vigil.services.notify.settings import NotifySettings

log = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    """What a replay did: entry ids of the dead letters re-sent, failed again, and skipped (with why)."""

    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    planned: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the terminal."""
        planned = f"{len(self.planned)} would be re-sent (dry run), " if self.planned else ""
        return f"{planned}{len(self.sent)} re-sent and deleted, {len(self.failed)} failed again, {len(self.skipped)} skipped"


def _text(fields: dict[Any, Any], key: str) -> str:
    raw = fields.get(key.encode(), fields.get(key, b""))
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def replay_dead_letters(settings: NotifySettings, target: str, count: int, dry_run: bool) -> ReplayReport:
    """Re-send up to ``count`` dead letters (oldest first), only those of ``target`` when given."""
    client = settings.redis.client()
    hooks = {h.name: h for h in load_webhooks(settings.webhooks_file, WebhookDefaults(timeout_s=settings.webhook_timeout_s))}
    report, mqtt = ReplayReport(), None
    try:
        for dead_id, fields in client.xrange(settings.dead_letters, count=count):
            letter_id = dead_id.decode() if isinstance(dead_id, bytes) else str(dead_id)
            channel, name = _text(fields, "channel"), _text(fields, "target")
            if target and name != target:
                continue
            why = _unreplayable(fields, channel, name, hooks)
            if why:
                report.skipped[letter_id] = why
                continue
            if dry_run:
                report.planned.append(letter_id)
                continue
            if channel == "mqtt" and mqtt is None:
                mqtt = _mqtt_client(settings)
            ok = _send_mqtt(mqtt, fields) if channel == "mqtt" else _send_webhook(hooks[name], fields)
            (report.sent if ok else report.failed).append(letter_id)
            if ok:
                client.xdel(settings.dead_letters, letter_id)
    finally:
        if mqtt is not None:
            mqtt.disconnect()
            mqtt.loop_stop()
        client.close()
    return report


def _unreplayable(fields: dict[Any, Any], channel: str, name: str, hooks: dict[str, Webhook]) -> str:
    if channel not in ("mqtt", "webhook"):
        return f"channel {channel or '?'}: malformed input, nothing to re-send"
    if _text(fields, "truncated") == "1":
        return "the payload was cut when it was dead-lettered"
    if channel == "webhook" and name not in hooks:
        return f"no webhook named {name!r} in the webhooks file"
    if channel == "mqtt" and not _text(fields, "topic"):
        return "no topic recorded"
    return ""


def _send_webhook(hook: Webhook, fields: dict[Any, Any]) -> bool:
    from vigil.services.notify.webhook import WebhookTarget

    once = Webhook(**{**hook.__dict__, "max_attempts": 1})
    target = WebhookTarget(once, lambda _r: None, threading.Event())
    delivery = Delivery(_text(fields, "entry_id"), _text(fields, "alert_id"), _text(fields, "camera_id"),
                        _text(fields, "event"), _text(fields, "payload").encode())  # fmt: skip
    result = target.deliver(delivery)
    if not result.ok:
        log.warning("webhook %s (%s): entry %s failed again: %s", hook.name, hook.host, delivery.entry_id, result.detail)
    return result.ok


def _mqtt_client(settings: NotifySettings) -> Any:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{settings.mqtt_client_id}-replay",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    if settings.mqtt_username:
        client.username_pw_set(settings.mqtt_username, settings.mqtt_secret())
    if settings.mqtt_tls:
        client.tls_set(ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None)
    client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=settings.mqtt_keepalive_s)
    client.loop_start()
    return client


def _send_mqtt(client: Any, fields: dict[Any, Any], timeout_s: float = 10.0) -> bool:
    info = client.publish(_text(fields, "topic"), _text(fields, "payload").encode(), qos=1)
    deadline = time.monotonic() + timeout_s
    while not info.is_published() and time.monotonic() < deadline:
        time.sleep(0.02)
    return info.is_published()
