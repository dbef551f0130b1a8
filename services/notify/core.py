"""Pure logic of ``vigil notify``: alert parsing, MQTT topics, webhook signatures and filters.

No I/O here; the transport (Redis consumer group, MQTT client, HTTP client) lives in ``transport.py``.

Webhook signature (Stripe/GitHub style): each POST carries

* ``X-Vigil-Timestamp``: Unix time in seconds when the request was signed;
* ``X-Vigil-Signature``: ``v1=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>``.

A receiver recomputes the HMAC over the raw body with its secret, compares in constant time
(:func:`verify_signature`) and rejects timestamps older than a few minutes (replays).

Example:
    >>> ts, sig = sign_body(b"secret", b'{"a":1}', now_s=1700000000)
    >>> verify_signature(b"secret", b'{"a":1}', ts, sig, now_s=1700000010)
    True
    >>> mqtt_topic_level("cam/1+#")
    'cam_1__'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import ValidationError

from vigil.shared.schemas import SCHEMA_VERSION, Alert

TIMESTAMP_HEADER = "X-Vigil-Timestamp"
SIGNATURE_HEADER = "X-Vigil-Signature"
SIGNATURE_SCHEME = "v1"
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


class BadAlertError(ValueError):
    """A stream record that is not a valid :class:`Alert` (costs that one record)."""


def parse_alert(fields: dict[bytes | str, bytes | str]) -> Alert:
    """Validate one ``vigil:alerts`` stream entry (field ``json``) into an :class:`Alert`."""
    raw = fields.get(b"json", fields.get("json"))
    if raw is None:
        raise BadAlertError("record has no 'json' field")
    try:
        alert = Alert.model_validate_json(raw)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'json'}: {e['msg']}" for e in exc.errors(include_input=False)[:3])
        raise BadAlertError(f"invalid alert ({exc.error_count()} error(s)): {where[:400]}") from None
    if alert.schema_version != SCHEMA_VERSION:
        raise BadAlertError(f"alert schema version {alert.schema_version} is not supported (this service reads {SCHEMA_VERSION})")
    return alert


def mqtt_topic_level(camera_id: str) -> str:
    """A camera id made safe for one MQTT topic level (no ``+``, ``#``, ``/`` or other specials)."""
    return _TOPIC_UNSAFE.sub("_", camera_id)[:200] or "_"


@dataclass(frozen=True)
class Topics:
    """MQTT topic names under a prefix, following Frigate's conventions."""

    prefix: str = "vigil"

    @property
    def alerts(self) -> str:
        """Every alert change, JSON."""
        return f"{self.prefix}/alerts"

    @property
    def available(self) -> str:
        """``online``/``offline`` (the client's will)."""
        return f"{self.prefix}/available"

    def camera_alert(self, camera_id: str) -> str:
        """One camera's alert changes."""
        return f"{self.prefix}/{mqtt_topic_level(camera_id)}/alert"

    def camera_status(self, camera_id: str) -> str:
        """One camera's retained ``online``/``offline`` status."""
        return f"{self.prefix}/{mqtt_topic_level(camera_id)}/status"

    def camera_state(self, camera_id: str) -> str:
        """One camera's retained scoring state (``warmup``, ``learning``, ``normal``, ``alert``, ``offline``)."""
        return f"{self.prefix}/{mqtt_topic_level(camera_id)}/state"


def sign_body(secret: bytes, body: bytes, now_s: int) -> tuple[str, str]:
    """Return the (timestamp, signature) header values for ``body``."""
    ts = str(int(now_s))
    mac = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return ts, f"{SIGNATURE_SCHEME}={mac}"


def verify_signature(secret: bytes, body: bytes, timestamp: str, signature: str, now_s: int,
                     tolerance_s: int = 300) -> bool:
    """Whether ``signature`` is valid for ``body`` at ``timestamp`` and the timestamp is recent."""
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > tolerance_s:
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"{SIGNATURE_SCHEME}={expected}", signature)


def matches(alert: Alert, cameras: Collection[str], events: Collection[str]) -> bool:
    """Whether a hook's filters (empty = all) accept ``alert``."""
    return (not cameras or alert.camera_id in cameras) and (not events or alert.event in events)


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff before retry ``attempt`` (1-based), capped."""
    return min(cap_s, base_s * 2 ** max(0, attempt - 1))


def camera_status(fields: dict[bytes | str, bytes | str], now_ns: int, stale_s: float) -> str:
    """``online`` when the camera hash (written by the scorer on each frame) was updated within ``stale_s``."""
    raw = fields.get(b"updated_ns", fields.get("updated_ns", b""))
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    if not text.isdigit():
        return "offline"
    return "online" if now_ns - int(text) <= stale_s * 1e9 else "offline"


SCORER_STATES = ("warmup", "learning", "normal", "alert")


def camera_state(fields: dict[bytes | str, bytes | str], online: bool) -> str:
    """The scorer's status of a camera (its hash field ``status``) when it is online, else ``offline``;
    anything else the hash holds reads ``unknown``.

    Example:
        >>> camera_state({b"status": b"alert"}, True), camera_state({b"status": b"alert"}, False)
        ('alert', 'offline')
        >>> camera_state({"status": "<script>"}, True)
        'unknown'
    """
    if not online:
        return "offline"
    raw = fields.get(b"status", fields.get("status", b""))
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return text if text in SCORER_STATES else "unknown"


# -- payloads ---------------------------------------------------------------------------------------------------
EVENT_TYPES = {"open": "new", "update": "update", "close": "end"}
"""Frigate's event types (``frigate/events``) for Vigil's alert changes."""


def entry_time_ns(entry_id: str) -> int | None:
    """When Redis added a stream entry (the milliseconds part of its id), in ns; None for a malformed id.

    Example:
        >>> entry_time_ns("1700000000123-0"), entry_time_ns("x")
        (1700000000123000000, None)
    """
    ms, _, _ = entry_id.partition("-")
    return int(ms) * 1_000_000 if ms.isdigit() else None


def links(base_url: str, alert_id: str, evidence: Mapping[str, str], scorer_snapshot: bool) -> dict[str, str]:
    """Where `vigil api` serves the alert and, when they are known to exist, its snapshot and clip.

    Args:
        base_url: The API's public base URL, or empty for paths relative to it.
        alert_id: The alert.
        evidence: The evidence hash (``vigil:evidence:<id>``) as text fields; empty when none was written yet.
        scorer_snapshot: Whether the alert carries the scorer's own snapshot (a heat map).

    Example:
        >>> links("https://v.example/", "cam:1:2", {"snapshot_bytes": "10"}, False)
        {'alert': 'https://v.example/v1/alerts/cam:1:2', 'snapshot': 'https://v.example/v1/alerts/cam:1:2/snapshot'}
    """
    root = f"{base_url.rstrip('/')}/v1/alerts/{quote(alert_id, safe=':')}"
    out = {"alert": root}
    if evidence.get("snapshot_bytes") or scorer_snapshot:
        out["snapshot"] = f"{root}/snapshot"
    if evidence.get("clip_bytes"):
        out["clip"] = f"{root}/clip"
    return out


def alert_payload(alert: Alert, entry_id: str, links: Mapping[str, str], evidence: Mapping[str, str]) -> bytes:
    """The JSON body of an MQTT message and of a webhook POST for one alert change.

    ``type`` follows Frigate (``new`` / ``update`` / ``end``); ``entry_id`` (the Redis stream entry) is the
    delivery's idempotency key: a redelivery after a restart carries the same one.

    Example:
        >>> a = Alert(alert_id="c:1:2", camera_id="c", event="open", start_seq=1, start_ns=2, peak_score=5,
        ...           score=5, threshold=3, peak_seq=1, time_ns=9)
        >>> body = json.loads(alert_payload(a, "1-0", {"alert": "/v1/alerts/c:1:2"}, {}))
        >>> body["type"], body["camera"], body["entry_id"], body["alert"]["peak_score"], body["evidence"]
        ('new', 'c', '1-0', 5.0, None)
    """
    status = evidence.get("status")
    return json.dumps({
        "type": EVENT_TYPES[alert.event], "event": alert.event, "id": alert.alert_id, "camera": alert.camera_id,
        "entry_id": entry_id, "alert": alert.model_dump(mode="json"), "links": dict(links),
        "evidence": None if not evidence else {"status": status or "", "clip_mime": evidence.get("clip_mime", "")},
    }, separators=(",", ":")).encode()  # fmt: skip


# -- webhooks -----------------------------------------------------------------------------------------------------
def redact_url(url: str) -> str:
    """Only the scheme and host of a URL (its path or query may hold a token): what logs and metrics may show.

    Example:
        >>> redact_url("https://user:pw@hooks.example.com:8443/T0K3N?key=abc")
        'https://hooks.example.com:8443'
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


Verdict = Literal["ok", "retry", "reject"]


def classify_status(status: int) -> Verdict:
    """What a webhook's HTTP status means: 2xx delivered; 408, 425, 429 and 5xx retried; the rest rejected
    (redirects are not followed: a signed body goes only where it was configured to).

    Example:
        >>> [classify_status(s) for s in (200, 204, 302, 400, 404, 408, 429, 500, 503)]
        ['ok', 'ok', 'reject', 'reject', 'reject', 'retry', 'retry', 'retry', 'retry']
    """
    if 200 <= status < 300:
        return "ok"
    if status in (408, 425, 429) or status >= 500:
        return "retry"
    return "reject"


# -- bookkeeping ----------------------------------------------------------------------------------------------------
@dataclass
class Pending:
    """An alert stream entry being delivered: deliveries not yet resolved, and how the resolved ones ended."""

    remaining: int
    outcomes: dict[str, int] = field(default_factory=dict)


class Ledger:
    """Which stream entries are in flight; an entry is acknowledged once each of its deliveries is resolved
    (delivered or dead-lettered). Not thread-safe: the service loop owns it.

    Example:
        >>> ledger = Ledger()
        >>> ledger.open("1-0", 2)
        >>> ledger.resolve("1-0", "delivered"), ledger.resolve("1-0", "dead")
        (False, True)
        >>> len(ledger), ledger.resolve("1-0", "delivered")
        (0, False)
    """

    def __init__(self) -> None:
        self.entries: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self.entries

    def open(self, entry_id: str, deliveries: int) -> None:
        """Track ``entry_id`` with ``deliveries`` (>= 1) to resolve (a redelivered entry starts over)."""
        if deliveries < 1:
            raise ValueError(f"an entry needs at least one delivery to track. Received: {deliveries}")
        self.entries[entry_id] = Pending(deliveries)

    def resolve(self, entry_id: str, outcome: str) -> bool:
        """One delivery of ``entry_id`` ended; True when it was the last (acknowledge the entry now)."""
        pending = self.entries.get(entry_id)
        if pending is None:  # a late result of an entry already resolved (or of a previous run)
            return False
        pending.outcomes[outcome] = pending.outcomes.get(outcome, 0) + 1
        pending.remaining -= 1
        if pending.remaining > 0:
            return False
        del self.entries[entry_id]
        return True


def dead_letter_fields(channel: str, target: str, reason: str, entry_id: str, payload: bytes | str,
                       max_bytes: int, **extra: Any) -> dict[str, str]:  # fmt: skip
    """The fields of a ``vigil:notify:dead`` entry: the payload cut to ``max_bytes`` (``truncated`` says so).

    Example:
        >>> f = dead_letter_fields("webhook", "ops", "HTTP 500 after 3 attempts", "1-0", b"x" * 10, 4, attempts=3)
        >>> f["payload"], f["truncated"], f["attempts"], f["channel"]
        ('xxxx', '1', '3', 'webhook')
    """
    raw = payload.encode(errors="replace") if isinstance(payload, str) else payload
    return {"channel": channel, "target": target, "reason": reason[:500], "entry_id": entry_id,
            "payload": raw[:max_bytes].decode(errors="replace"), "truncated": "1" if len(raw) > max_bytes else "0",
            **{k: str(v) for k, v in extra.items()}}  # fmt: skip
