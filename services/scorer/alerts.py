"""Alert consumers for operators: follow the stream, query history, label alerts (sync Redis client).

* :func:`tail` reads ``vigil:alerts`` through a consumer group: it first re-reads its own pending
  (delivered, unacknowledged) entries, then new ones, acknowledging each after it was handled, so a
  restarted ``vigil alerts tail`` resumes where it left off.
* :func:`history` lists entries since a time (stream ids are millisecond timestamps).
* :func:`label` stores an operator label in the ``vigil:alert-labels`` hash and appends it, with the alert's
  features, to the ``vigil:labels`` stream that the scorer's kind classifier learns from.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from vigil.shared.redis_keys import ALERT_LABELS, ALERTS_STREAM, LABELS_STREAM, alert_features_key
from vigil.shared.schemas import Alert, SchemaError

log = logging.getLogger(__name__)

KNOWN_KINDS = ("true_positive", "false_positive", "bike", "vehicle", "skater", "cart", "running", "fight", "fall", "other")
LABELS_MAXLEN = 10_000
"""Cap of the ``vigil:labels`` stream the scorer's kind classifier learns from (it keeps at most 5,000)."""
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(text: str, now: float | None = None) -> int:
    """Parse ``30m`` / ``2h`` / ``1d`` (ago) or an ISO time into epoch milliseconds.

    Example:
        >>> parse_since("90s", now=1000.0)
        910000
        >>> parse_since("1970-01-01T00:00:10+00:00")
        10000
    """
    now = time.time() if now is None else now
    if m := _DURATION.match(text.strip()):
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return int((now - seconds) * 1000)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"--since must be like 30m, 2h, 1d or an ISO time. Received: {text!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def decode_entry(fields: dict[Any, Any]) -> Alert | None:
    """The Alert of a stream entry, or None (logged) if it cannot be read."""
    raw = fields.get(b"json", fields.get("json"))
    try:
        return Alert.from_json(raw or b"")
    except SchemaError as exc:
        log.warning("unreadable alert entry: %s", exc)
        return None


def format_alert(a: Alert, labels: dict[str, str] | None = None) -> str:
    """One readable line for an alert change."""
    start = datetime.fromtimestamp(a.start_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
    dur = "" if a.end_ns is None else f" dur={(a.end_ns - a.start_ns) / 1e9:.1f}s"
    label = (labels or {}).get(a.alert_id)
    return (
        f"{start}Z {a.event:<6} {a.alert_id:<28} camera={a.camera_id} peak={a.peak_score:.4f} "
        f"thr={a.threshold:.4f}{dur}" + (f" snapshot={a.snapshot_key}" if a.snapshot_key else "")
        + (f" label={label}" if label else "")
    )  # fmt: skip


def history(client: Any, since_ms: int, camera: str | None = None, limit: int = 100) -> list[Alert]:
    """Alert changes since ``since_ms`` (oldest first), optionally of one camera."""
    out: list[Alert] = []
    start = f"{since_ms}-0"
    while len(out) < limit:
        entries = client.xrange(ALERTS_STREAM, min=start, max="+", count=500)
        if not entries:
            break
        for _entry_id, fields in entries:
            a = decode_entry(fields)
            if a is not None and (camera is None or a.camera_id == camera):
                out.append(a)
        last = entries[-1][0].decode() if isinstance(entries[-1][0], bytes) else entries[-1][0]
        start = "(" + last
    return out[:limit]


def ensure_group(client: Any, group: str, from_start: bool) -> None:
    """Create the consumer group (and the stream) if missing."""
    import redis

    try:
        client.xgroup_create(ALERTS_STREAM, group, id="0" if from_start else "$", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def tail(
    client: Any, group: str, consumer: str, handle: Callable[[Alert], None], camera: str | None = None,
    block_ms: int = 2000, stop: Callable[[], bool] = lambda: False,
) -> Iterator[int]:  # fmt: skip
    """Follow the stream with a consumer group, calling ``handle`` then acknowledging each entry.

    Yields the number of entries handled after every read (so callers and tests can stop).
    """
    cursor = "0"  # first our own pending entries, then new ones
    while not stop():
        resp = client.xreadgroup(group, consumer, {ALERTS_STREAM: cursor}, count=100, block=block_ms)
        entries = resp[0][1] if resp else []
        if cursor == "0" and not entries:
            cursor = ">"
            continue
        for entry_id, fields in entries:
            a = decode_entry(fields)
            if a is not None and (camera is None or a.camera_id == camera):
                handle(a)
            client.xack(ALERTS_STREAM, group, entry_id)
        yield len(entries)


def label(client: Any, alert_id: str, kind: str, by: str = "", note: str = "") -> dict[str, Any]:
    """Store an operator label for an alert; returns the stored record."""
    if not _KIND.match(kind):
        raise ValueError(f"kind must be a lower-case slug such as {', '.join(KNOWN_KINDS)}. Received: {kind!r}")
    record = {"kind": kind, "by": by, "note": note, "time_ns": time.time_ns()}
    client.hset(ALERT_LABELS, alert_id, json.dumps(record))
    features = client.get(alert_features_key(alert_id))  # the scorer's, for the kind classifier (or None)
    client.xadd(LABELS_STREAM, {"alert_id": alert_id, "kind": kind, "features": features or ""},
                maxlen=LABELS_MAXLEN, approximate=True)  # fmt: skip
    return record


def labels(client: Any) -> dict[str, str]:
    """alert_id -> label kind."""
    out = {}
    for k, v in client.hgetall(ALERT_LABELS).items():
        key = k.decode() if isinstance(k, bytes) else k
        try:
            out[key] = json.loads(v)["kind"]
        except (ValueError, KeyError, TypeError):
            continue
    return out
