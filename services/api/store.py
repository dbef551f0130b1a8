"""Reads (and the one write, labels) of `vigil api` in Redis, with a sync client from a thread pool.

Keys are those of :mod:`vigil.shared.redis_keys`; the alert entries are decoded and labels written by
the operators' functions in :mod:`vigil.services.scorer.alerts`, and an alert's changes are found through
the scorer's dedupe marks (:func:`vigil.services.scorer.sink.changes_key`: change -> stream id).
"""

from __future__ import annotations

import time
from typing import Any

from vigil.services.api import metrics
from vigil.services.api.core import (
    AlertChange,
    AlertDetail,
    AlertItem,
    AlertPage,
    AlertQuery,
    CameraView,
    Evidence,
    Label,
    TimelinePoint,
    camera_view,
    clip_url,
    evidence_view,
    is_latest,
    parse_label,
    range_indexes,
    snapshot_url,
    timeline_point,
)  # fmt: skip
from vigil.services.scorer import alerts
from vigil.services.scorer.sink import changes_key
from vigil.shared.redis_keys import (
    ALERT_LABELS,
    ALERTS_STREAM,
    camera_hash,
    evidence_clip_key,
    evidence_key,
    evidence_snapshot_key,
    latest_frame_key,
    snapshot_key,
    timeline_key,
)  # fmt: skip

BATCH = 500
"""Stream entries read per XREVRANGE (inside the filter script), and matching entries returned per call at most."""
SCRIPT_SCAN = 2_000
"""Stream entries one call of the filter script scans at most (a few ms of Redis time: it never blocks Redis long)."""
FILTER_LUA = """
local top, low, want, budget = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local camera, event, chunk = ARGV[5], ARGV[6], tonumber(ARGV[7])
local out, scanned, last, done, seen = {}, 0, '', 0, {}
while #out < 2 * want and scanned < budget do
  local n = math.min(chunk, budget - scanned)
  local entries = redis.call('XREVRANGE', KEYS[1], top, low, 'COUNT', n)
  local used = 0
  for _, e in ipairs(entries) do
    scanned, last, used = scanned + 1, e[1], used + 1
    local f, cam, ev, aid = e[2], nil, nil, ''
    for i = 1, #f, 2 do
      local k = f[i]
      if k == 'camera_id' then cam = f[i + 1] elseif k == 'event' then ev = f[i + 1] elseif k == 'alert_id' then aid = f[i + 1] end
    end
    if (camera == '' or cam == camera) and not seen[aid] then
      seen[aid] = true  -- a newer change of this alert came first: the older ones are not its latest
      if event == '' or ev == event then
        out[#out + 1] = e[1]
        out[#out + 1] = aid
        if #out >= 2 * want then break end
      end
    end
  end
  if #entries < n and used == #entries then done = 1 break end
  if #out >= 2 * want then break end
  top = '(' .. last
end
return {last, scanned, done, out}
"""
"""Read-only: walk ``vigil:alerts`` newest first from ``top`` down to ``low`` and return the entries whose
``camera_id`` and ``event`` match (empty = any) and whose alert has no newer change earlier in this walk (such an
entry cannot be its alert's latest change; the change marks decide the rest, in Python), until ``want`` match or
``budget`` entries were scanned:
``{last id scanned, scanned, range exhausted (0/1), {entry id, alert id, entry id, alert id, ...}}``."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AlertStore:
    """What the API reads from Redis.

    Args:
        client: A ``redis.Redis`` (sync) client; its connection pool is shared by the request threads.
        scan_limit: Stream entries one alert listing reads at most.
        cameras_cache_s: How long the list of camera ids is reused (0: found again on every call).
    """

    def __init__(self, client: Any, scan_limit: int = 20_000, cameras_cache_s: float = 0.0) -> None:
        self.client = client
        self.scan_limit = scan_limit
        self.cameras_cache_s = cameras_cache_s
        self._camera_cache: tuple[float, list[str]] | None = None
        self._filter = client.register_script(FILTER_LUA)  # EVALSHA, loaded again after a Redis restart

    def ping(self) -> bool:
        """Whether Redis answers."""
        import redis

        try:
            return bool(self.client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    # -- cameras ------------------------------------------------------------------------------------
    def cameras(self) -> list[CameraView]:
        """Every camera the scorer wrote a hash for, by id (the ids are found by a SCAN at most every
        ``cameras_cache_s``; each camera's record is read fresh)."""
        keys = self._camera_keys()
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        views = []
        for key, h in zip(keys, pipe.execute() if keys else [], strict=True):
            if h:
                views.append(camera_view(key.split(":", 2)[-1], {_text(k): _text(v) for k, v in h.items()}))
        return views

    def _camera_keys(self) -> list[str]:
        """The camera hashes' keys: a SCAN of the whole keyspace (it grows with the alerts' evidence), so cached."""
        now = time.monotonic()
        if self._camera_cache is None or now - self._camera_cache[0] >= self.cameras_cache_s:
            keys = sorted({_text(k) for k in self.client.scan_iter(match=camera_hash("*"), count=5000)})
            self._camera_cache = (now, keys)
        return self._camera_cache[1]

    def camera(self, camera_id: str) -> CameraView | None:
        """One camera, or None when the scorer has no hash for it."""
        h = self.client.hgetall(camera_hash(camera_id))
        return camera_view(camera_id, {_text(k): _text(v) for k, v in h.items()}) if h else None

    # -- alerts -------------------------------------------------------------------------------------
    def page(self, q: AlertQuery) -> AlertPage:
        """One page of alerts, newest first, each as its latest change (see :mod:`vigil.services.api.core`).

        The stream is walked newest first by :data:`FILTER_LUA`, which returns only the ids of the entries of the
        query's camera and event (a filter that matches little costs Redis a scan, not this process a parse of
        every entry); an entry that is its alert's latest change is then read whole. The cursor is the last
        entry looked at: the last item of a full page, else the last entry scanned.
        """
        items: list[AlertItem] = []
        seen: set[str] = set()
        top, scanned, cursor = q.range_max(), 0, None
        while len(items) < q.limit and scanned < self.scan_limit:
            want = min(BATCH, q.limit - len(items) + 16)  # the script returns about one entry per alert
            last, n, done, found = self._scan(q, top, want, min(SCRIPT_SCAN, self.scan_limit - scanned))
            scanned, cursor = scanned + n, last or cursor
            for entry_id, fields in self._entries(self._latest(found, q, seen)):
                if (a := alerts.decode_entry(fields)) is not None and q.event in (None, a.event):
                    items.append(AlertItem(stream_id=entry_id, alert=a))
                    if len(items) == q.limit:
                        cursor = entry_id
                        break
            if done and len(items) < q.limit or cursor is None:
                return self._finish(items, None, scanned)
            top = "(" + cursor
        return self._finish(items, cursor, scanned)

    def _scan(self, q: AlertQuery, top: str, want: int, budget: int) -> tuple[str | None, int, bool, list[tuple[str, str]]]:
        """Up to ``want`` entries of the query's camera and event below ``top``, scanning at most ``budget``:
        ``(last entry scanned, entries scanned, whether the range is exhausted, [(entry id, alert id)])``."""
        last, n, done, flat = self._filter(keys=[ALERTS_STREAM], args=[top, q.range_min(), want, budget, q.camera or "",
                                                                       q.event or "", BATCH])  # fmt: skip
        flat = [_text(v) for v in flat or []]
        return (_text(last) or None), int(n), bool(done), list(zip(flat[::2], flat[1::2], strict=True))

    def _latest(self, found: list[tuple[str, str]], q: AlertQuery, seen: set[str]) -> list[str]:
        """The ids of the entries that are their alert's latest change (at or before the query's ``until``) and
        whose alert is not on the page yet, in stream order (one round trip: the alerts' change marks)."""
        alert_ids = list(dict.fromkeys(aid for _, aid in found))
        pipe = self.client.pipeline(transaction=False)
        for alert_id in alert_ids:
            pipe.hvals(changes_key(alert_id))
        changes = dict(zip(alert_ids, pipe.execute() if alert_ids else [], strict=True))
        out = []
        for entry_id, alert_id in found:
            if alert_id not in seen and is_latest(entry_id, [_text(v) for v in changes[alert_id]], q.upper):
                seen.add(alert_id)
                out.append(entry_id)
        return out

    def _entries(self, entry_ids: list[str]) -> list[tuple[str, Any]]:
        """The stream entries ``(id, fields)`` of these ids, in order (one round trip; a trimmed one is left out)."""
        pipe = self.client.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.xrange(ALERTS_STREAM, min=entry_id, max=entry_id, count=1)
        return [(entry_id, e[0][1]) for entry_id, e in zip(entry_ids, pipe.execute() if entry_ids else [], strict=True) if e]

    def _finish(self, items: list[AlertItem], cursor: str | None, scanned: int) -> AlertPage:
        """Add labels and evidence URLs (two round trips for the page)."""
        ids = [it.alert.alert_id for it in items]
        labels = self.client.hmget(ALERT_LABELS, ids) if ids else []
        found = self._evidence_links(ids)
        out = [it.model_copy(update={"label": parse_label(raw)} | links) for it, raw, links in zip(items, labels, found, strict=True)]
        return AlertPage(items=out, next_cursor=cursor, scanned=scanned)

    def _evidence_links(self, ids: list[str]) -> list[dict[str, str | None]]:
        """Per alert: ``snapshot_url``, ``snapshot_kind``, ``clip_url`` and ``evidence_status`` (None where absent),
        in one round trip."""
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for alert_id in ids:
            for key in (evidence_snapshot_key(alert_id), snapshot_key(alert_id), evidence_clip_key(alert_id)):
                pipe.exists(key)
            pipe.hget(evidence_key(alert_id), "status")
        res = pipe.execute()
        out = []
        for i, alert_id in enumerate(ids):
            frame, heat, clip, status = res[4 * i : 4 * i + 4]
            kind = "frame" if frame else "heatmap" if heat else None
            out.append({"snapshot_url": snapshot_url(alert_id) if kind else None, "snapshot_kind": kind,
                        "clip_url": clip_url(alert_id) if clip else None,
                        "evidence_status": _text(status) if status is not None else None})  # fmt: skip
        return out

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
        return AlertDetail(alert_id=alert_id, camera_id=changes[-1].alert.camera_id, changes=changes,
                           label=self.label(alert_id), **self._evidence_links([alert_id])[0])  # fmt: skip

    def known(self, alert_id: str) -> bool:
        """Whether the scorer published any change of this alert (its dedupe marks exist)."""
        return bool(self.client.exists(changes_key(alert_id)))

    def snapshot(self, alert_id: str, kind: str = "best") -> tuple[bytes, str] | None:
        """The alert's JPEG and which it is (``frame``: the evidence service's real frame, ``heatmap``: the
        scorer's), or None when neither exists. ``kind`` is ``best`` (the frame, else the heat map), ``frame``
        or ``heatmap``."""
        order = {"best": ("frame", "heatmap"), "frame": ("frame",), "heatmap": ("heatmap",)}[kind]
        keys = {"frame": evidence_snapshot_key(alert_id), "heatmap": snapshot_key(alert_id)}
        values = self.client.mget([keys[k] for k in order])
        return next(((v, k) for k, v in zip(order, values, strict=True) if v), None)

    def evidence(self, alert_id: str) -> Evidence | None:
        """The alert's evidence record, or None when the evidence service wrote nothing (or it expired)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(evidence_key(alert_id))
        pipe.exists(snapshot_key(alert_id), evidence_snapshot_key(alert_id))
        pipe.exists(evidence_clip_key(alert_id))
        h, snaps, clip = pipe.execute()
        if not h and not clip:
            return None
        return evidence_view(alert_id, {_text(k): _text(v) for k, v in h.items()}, bool(snaps), bool(clip))

    def clip(self, alert_id: str, rng: tuple[int | None, int | None] | None) -> tuple[bytes, int, str, str] | None:
        """The clip's bytes (all, or the range's), its full length, its declared type and a version tag, read
        atomically (the evidence service may replace a preliminary clip by the final one meanwhile); None when
        there is no clip. A range beyond the end returns no bytes."""
        first, last = (0, -1) if rng is None else range_indexes(rng)
        pipe = self.client.pipeline(transaction=True)
        pipe.strlen(evidence_clip_key(alert_id))
        pipe.getrange(evidence_clip_key(alert_id), first, last)
        pipe.hmget(evidence_key(alert_id), ["clip_mime", "created_ns", "status"])
        length, body, (mime, created, status) = pipe.execute()
        if not length:
            return None
        if rng is not None and rng[0] is not None and rng[0] >= length:
            body = b""
        version = f"{_text(created or b'0')}-{_text(status or b'')}-{length}"
        return body, int(length), _text(mime or b""), version

    # -- cameras' live views --------------------------------------------------------------------------
    def latest_frame(self, camera_id: str) -> bytes | None:
        """The camera's latest JPEG (written every few seconds with a short TTL), or None."""
        return self.client.get(latest_frame_key(camera_id))

    def timeline(self, camera_id: str, since_ns: int | None, limit: int) -> list[TimelinePoint]:
        """The camera's latest ``limit`` timeline points at or after ``since_ns``, oldest first; bad entries are
        skipped (counted in ``vigil_api_dropped_total{reason="timeline"}``)."""
        low = "-" if since_ns is None else str(max(0, since_ns // 1_000_000 - 5_000))  # stream ids ~ write time (ms)
        entries = self.client.xrevrange(timeline_key(camera_id), max="+", min=low, count=limit)
        points = []
        for _, fields in reversed(entries):
            p = timeline_point({_text(k): _text(v) for k, v in fields.items()})
            if p is None:
                metrics.DROPPED.labels("timeline").inc()
            elif since_ns is None or p.t_ns >= since_ns:
                points.append(p)
        return sorted(points, key=lambda p: p.t_ns)  # capture order (a replayed camera may write out of order)

    def label(self, alert_id: str) -> Label | None:
        """The alert's label, or None."""
        return parse_label(self.client.hget(ALERT_LABELS, alert_id))

    def set_label(self, alert_id: str, kind: str, by: str, note: str) -> Label:
        """Store a label through ``vigil alerts label``'s function (which validates the kind)."""
        return Label.model_validate(alerts.label(self.client, alert_id, kind, by, note))
