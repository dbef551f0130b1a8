"""Reads (and the one write, labels) of `vigil api` in Redis, with a sync client from a thread pool.

Keys are those of :mod:`vigil.shared.redis_keys`; the alert entries are decoded and labels written by
the operators' functions in :mod:`vigil.services.scorer.alerts`, and an alert's changes are found through
the scorer's dedupe marks (:func:`vigil.services.scorer.sink.changes_key`: change -> stream id).
"""

from __future__ import annotations

from typing import Any

from vigil.services.api.core import (
    AlertChange,
    AlertDetail,
    AlertItem,
    AlertPage,
    AlertQuery,
    CameraView,
    Label,
    camera_view,
    is_latest,
    parse_label,
    snapshot_url,
)  # fmt: skip
from vigil.services.scorer import alerts
from vigil.services.scorer.sink import changes_key
from vigil.shared.redis_keys import ALERT_LABELS, ALERTS_STREAM, camera_hash, snapshot_key

BATCH = 500
"""Stream entries read per round trip."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AlertStore:
    """What the API reads from Redis.

    Args:
        client: A ``redis.Redis`` (sync) client; its connection pool is shared by the request threads.
        scan_limit: Stream entries one alert listing reads at most.
    """

    def __init__(self, client: Any, scan_limit: int = 20_000) -> None:
        self.client = client
        self.scan_limit = scan_limit

    def ping(self) -> bool:
        """Whether Redis answers."""
        import redis

        try:
            return bool(self.client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    # -- cameras ------------------------------------------------------------------------------------
    def cameras(self) -> list[CameraView]:
        """Every camera the scorer wrote a hash for, by id."""
        keys = sorted({_text(k) for k in self.client.scan_iter(match=camera_hash("*"), count=1000)})
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        views = []
        for key, h in zip(keys, pipe.execute(), strict=True):
            if h:
                views.append(camera_view(key.split(":", 2)[-1], {_text(k): _text(v) for k, v in h.items()}))
        return views

    def camera(self, camera_id: str) -> CameraView | None:
        """One camera, or None when the scorer has no hash for it."""
        h = self.client.hgetall(camera_hash(camera_id))
        return camera_view(camera_id, {_text(k): _text(v) for k, v in h.items()}) if h else None

    # -- alerts -------------------------------------------------------------------------------------
    def page(self, q: AlertQuery) -> AlertPage:
        """One page of alerts, newest first, each as its latest change (see :mod:`vigil.services.api.core`)."""
        items: list[AlertItem] = []
        seen: set[str] = set()
        top, scanned, cursor = q.range_max(), 0, None
        while len(items) < q.limit and scanned < self.scan_limit:
            entries = self.client.xrevrange(ALERTS_STREAM, max=top, min=q.range_min(), count=BATCH)
            if not entries:
                return self._finish(items, None, scanned)
            for entry_id, fields in self._latest(entries, q, seen):
                scanned, cursor = scanned + 1, _text(entry_id)
                if fields is not None and (a := alerts.decode_entry(fields)) is not None and q.event in (None, a.event):
                    items.append(AlertItem(stream_id=cursor, alert=a))
                    if len(items) == q.limit:
                        break
            top = "(" + cursor
            if len(entries) < BATCH and len(items) < q.limit:
                return self._finish(items, None, scanned)
        return self._finish(items, cursor, scanned)

    def _latest(self, entries: list, q: AlertQuery, seen: set[str]) -> list[tuple[Any, Any]]:
        """The entries as ``(id, fields or None)``: None when the entry is filtered out or not its alert's latest."""
        ids = [_text(f.get(b"alert_id", b"")) for _, f in entries]
        wanted = [i for (_, f), i in zip(entries, ids, strict=True)
                  if q.camera is None or _text(f.get(b"camera_id", b"")) == q.camera]  # fmt: skip
        pipe = self.client.pipeline(transaction=False)
        for alert_id in dict.fromkeys(wanted):
            pipe.hvals(changes_key(alert_id))
        changes = dict(zip(dict.fromkeys(wanted), pipe.execute(), strict=True))
        out = []
        for (entry_id, fields), alert_id in zip(entries, ids, strict=True):
            ok = alert_id in changes and alert_id not in seen
            ok = ok and is_latest(_text(entry_id), [_text(v) for v in changes[alert_id]], q.upper)
            if ok:
                seen.add(alert_id)
            out.append((entry_id, fields if ok else None))
        return out

    def _finish(self, items: list[AlertItem], cursor: str | None, scanned: int) -> AlertPage:
        """Add labels and snapshot URLs (two round trips for the page)."""
        ids = [it.alert.alert_id for it in items]
        labels = self.client.hmget(ALERT_LABELS, ids) if ids else []
        pipe = self.client.pipeline(transaction=False)
        for alert_id in ids:
            pipe.exists(snapshot_key(alert_id))
        present = pipe.execute() if ids else []
        out = [it.model_copy(update={"label": parse_label(raw), "snapshot_url": snapshot_url(it.alert.alert_id) if has else None})
               for it, raw, has in zip(items, labels, present, strict=True)]  # fmt: skip
        return AlertPage(items=out, next_cursor=cursor, scanned=scanned)

    def alert(self, alert_id: str) -> AlertDetail | None:
        """An alert with all its published changes, or None when none is known."""
        stream_ids = sorted({_text(v) for v in self.client.hvals(changes_key(alert_id))},
                            key=lambda s: tuple(map(int, s.split("-"))))  # fmt: skip
        pipe = self.client.pipeline(transaction=False)
        for sid in stream_ids:
            pipe.xrange(ALERTS_STREAM, min=sid, max=sid, count=1)
        changes = [AlertChange(stream_id=_text(e[0][0]), alert=a) for e in (pipe.execute() if stream_ids else [])
                   if e and (a := alerts.decode_entry(e[0][1])) is not None]  # fmt: skip
        if not changes:
            return None
        has_snapshot = bool(self.client.exists(snapshot_key(alert_id)))
        return AlertDetail(alert_id=alert_id, camera_id=changes[-1].alert.camera_id, changes=changes,
                           label=self.label(alert_id), snapshot_url=snapshot_url(alert_id) if has_snapshot else None)  # fmt: skip

    def known(self, alert_id: str) -> bool:
        """Whether the scorer published any change of this alert (its dedupe marks exist)."""
        return bool(self.client.exists(changes_key(alert_id)))

    def snapshot(self, alert_id: str) -> bytes | None:
        """The alert's JPEG snapshot, or None once it expired."""
        return self.client.get(snapshot_key(alert_id))

    def label(self, alert_id: str) -> Label | None:
        """The alert's label, or None."""
        return parse_label(self.client.hget(ALERT_LABELS, alert_id))

    def set_label(self, alert_id: str, kind: str, by: str, note: str) -> Label:
        """Store a label through ``vigil alerts label``'s function (which validates the kind)."""
        return Label.model_validate(alerts.label(self.client, alert_id, kind, by, note))
