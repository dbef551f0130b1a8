"""Redis outputs of the scorer (see ../shared/DESIGN.md, "Alerts in Redis").

Per alert change, one Lua script runs atomically in Redis:

1. ``HEXISTS vigil:alert-changes:<alert_id> <kind>:<n>`` -- the dedupe mark; if it exists the change was
   already published (a replay after a restart) and nothing else happens;
2. ``XADD vigil:alerts MAXLEN ~ N * alert_id .. camera_id .. event .. json <Alert JSON>``;
3. ``HSET`` the dedupe mark (only now: Redis does not roll a script back, so a write refused at step 2
   -- OOM, READONLY, WRONGTYPE -- leaves no mark, and the change is sent again later);
4. ``PUBLISH vigil:alerts:<camera_id> <Alert JSON>``.

A change Redis refuses (a ``ResponseError``) stays at the head of its camera's outbox, with the ones
after it, and is retried with backoff; it is counted (``vigil_scorer_redis_rejected``) and logged, never
dropped. Only a full outbox drops changes (the oldest first), and that is counted too.

Snapshots (``SET vigil:snapshot:<alert_id> <jpeg> EX ttl``) and the camera hashes (``HSET
vigil:camera:<camera_id>``) are plain overwrites, idempotent by nature. All writes of one batch go in
one pipeline. When Redis is unreachable the changes stay in the cameras' outboxes and the next attempt
waits (exponential backoff); camera hashes of that period are skipped (they are latest-value only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vigil.services.scorer import metrics
from vigil.services.scorer.state import ScorerState
from vigil.shared.redis_keys import ALERTS_STREAM, alerts_channel, camera_hash, timeline_key

log = logging.getLogger(__name__)

CHANGES_PREFIX = "vigil:alert-changes:"
"""Hash per alert: change id (``open:0``, ``update:3``, ``close:0``) -> stream entry id."""

_PUBLISH_LUA = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return false end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
  'alert_id', ARGV[4], 'camera_id', ARGV[5], 'event', ARGV[6], 'json', ARGV[7])
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[3], ARGV[7])
return id
"""



def changes_key(alert_id: str) -> str:
    """Hash of the published changes of one alert (the dedupe marks)."""
    return f"{CHANGES_PREFIX}{alert_id}"


@dataclass(frozen=True)
class SinkOptions:
    """Caps, TTLs and retry delays of the Redis sink."""

    stream_maxlen: int = 100_000
    dedupe_ttl_s: int = 30 * 86_400
    snapshot_ttl_s: int = 7 * 86_400
    retry_min_s: float = 0.5
    retry_max_s: float = 10.0
    camera_ttl_s: int = 7 * 86_400
    timeline_maxlen: int = 43_200


class RedisSink:
    """Writes outboxes and camera hashes to Redis in one pipeline, with backoff when Redis is down.

    Args:
        client: A ``redis.asyncio.Redis`` client.
        options: Caps, TTLs and retry delays.
        clock: Monotonic clock (tests pass a fake one).
    """

    def __init__(self, client: Any, options: SinkOptions | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.options = options or SinkOptions()
        self.clock = clock
        self._lock = asyncio.Lock()
        self._delay = 0.0
        self._next_try = 0.0
        self.healthy = True

    @property
    def waiting(self) -> bool:
        """True while a failed write's backoff has not elapsed."""
        return self.clock() < self._next_try

    async def write(self, states: Iterable[ScorerState], hashes: Mapping[str, Mapping[str, Any]],
                    points: Mapping[str, list[tuple[int, float, float]]] | None = None) -> bool:
        """Publish every pending change of ``states``, set ``hashes`` and append timeline ``points``; False when
        Redis is unavailable."""
        import redis

        async with self._lock:
            if self.waiting:
                return False
            pipe, sent = self._build(states, hashes)
            self._timeline(pipe, points or {})
            if not sent and not hashes and not points:
                return True
            try:
                results = await pipe.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._failed(exc)
                return False
            if any(isinstance(r, redis.ConnectionError | redis.TimeoutError) for r in results):
                self._failed(next(r for r in results if isinstance(r, Exception)))
                return False
            return self._confirm(sent, results)

    def _build(self, states: Iterable[ScorerState], hashes: Mapping[str, Mapping[str, Any]]) -> tuple[Any, list]:
        o = self.options
        pipe = self.client.pipeline(transaction=False)
        sent: list[tuple[ScorerState, int, list[int]]] = []
        n_cmd = 0
        for st in states:
            if not st.outbox:
                continue
            idx = []
            for p in st.outbox:
                if p.snapshot_jpeg is not None and p.snapshot_key is not None:
                    pipe.set(p.snapshot_key, p.snapshot_jpeg, ex=o.snapshot_ttl_s)
                    n_cmd += 1
                a = p.alert
                pipe.eval(
                    _PUBLISH_LUA, 3, changes_key(a.alert_id), ALERTS_STREAM, alerts_channel(a.camera_id),
                    p.dedupe, o.dedupe_ttl_s, o.stream_maxlen, a.alert_id, a.camera_id, a.event, a.to_json(),
                )  # EVAL, not EVALSHA: survives a Redis restart's empty script cache; alerts are rare
                idx.append(n_cmd)
                n_cmd += 1
            sent.append((st, len(st.outbox), idx))
        for cam, fields in hashes.items():
            pipe.hset(camera_hash(cam), mapping=dict(fields))
            pipe.expire(camera_hash(cam), o.camera_ttl_s)  # a camera (or a forged id) that stops sending expires
        return pipe, sent

    def _timeline(self, pipe: Any, points: Mapping[str, list[tuple[int, float, float]]]) -> None:
        """Append timeline points after the alert commands (so the alerts' result indexes do not move)."""
        o = self.options
        for cam, pts in points.items():
            key = timeline_key(cam)
            for t_ns, score, thr in pts:
                pipe.xadd(key, {"t_ns": t_ns, "score": f"{score:.4f}", "threshold": f"{thr:.4f}"},
                          maxlen=o.timeline_maxlen, approximate=True)
            pipe.expire(key, o.camera_ttl_s)

    def _confirm(self, sent: list[tuple[ScorerState, int, list[int]]], results: list[Any]) -> bool:
        """Drop what Redis took from the outboxes; False (and a backoff) when it refused a change."""
        rejected = None
        for st, n, idx in sent:
            done = 0
            for i, p in zip(idx, list(st.outbox)[:n], strict=True):
                r = results[i]
                if isinstance(r, Exception):  # kept with the ones after it, in order: retried after the backoff
                    metrics.REDIS_REJECTED.inc()
                    log.error("camera %s: Redis refused alert change %s %s (kept, retried): %s", st.camera_id,
                              p.alert.alert_id, p.dedupe, str(r)[:300])  # fmt: skip
                    rejected = r
                    break
                if r is None:
                    metrics.DEDUPED.inc()
                else:
                    metrics.PUBLISHED.labels(p.alert.event).inc()
                done += 1
            st.confirm(done)
        if rejected is not None:
            self._failed(rejected)
            return False
        if not self.healthy:
            log.info("Redis is reachable again; pending alerts published")
        self.healthy, self._delay = True, 0.0
        metrics.REDIS_UP.set(1)
        return True

    def _failed(self, exc: BaseException) -> None:
        o = self.options
        self._delay = min(o.retry_max_s, max(o.retry_min_s, self._delay * 2))
        self._next_try = self.clock() + self._delay
        metrics.REDIS_FAILURES.inc()
        metrics.REDIS_UP.set(0)
        level = logging.WARNING if self.healthy else logging.DEBUG
        log.log(level, "Redis write failed (%s: %s); retrying in %.1fs, alerts kept", type(exc).__name__, exc, self._delay)
        self.healthy = False
