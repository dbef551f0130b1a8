"""`vigil bench api`: latency of `vigil api` at 10,000 stored alerts, against 100 stored alerts in the same run.

A private Redis (started by the project's own ``infra/local/stack.sh`` in a temporary folder, on a free port,
stopped at the end) holds two stores: database 0 with ``alerts`` alerts, database 1 with ``baseline`` alerts.
Both are written through the real code paths:

* every alert change (``open``, ``update``, ``close``) by the scorer's :class:`~vigil.services.scorer.sink.RedisSink`
  (its Lua script: dedupe mark, ``XADD vigil:alerts``, publish), with the scorer's heat-map snapshot and the
  camera hashes;
* every alert's evidence by `vigil evidence`'s :class:`~vigil.services.evidence.transport.EvidenceWriter`: a real
  snapshot and H.264 clip rendered by the evidence core from UCSD Ped2 frames (:mod:`vigil.tools.bench_evidence`;
  1, 5 and 10 s alerts in turn).

One `vigil api` process serves each store (the real service, as deployed); the same requests go to both,
one at a time over keep-alive connections, interleaved round by round (so a busy moment of this shared machine
hits both alike). The ``api`` section of docs/benchmarks.md gets p50 / p99 per request and the ratios.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DAY_NS = 86_400 * 1_000_000_000
FPS = 10


@dataclass(frozen=True)
class BenchConfig:
    """What `vigil bench api` measures."""

    alerts: int = 10_000
    baseline: int = 100
    requests: int = 200
    cameras: int = 20
    warmup: int = 10
    data: Path | None = None
    clip: str = "Test001"


@dataclass
class Store:
    """One filled Redis database and the `vigil api` process serving it."""

    name: str
    alerts: int
    redis_url: str
    alert_ids: list[str] = field(default_factory=list)
    url: str = ""
    proc: Any = None


@dataclass(frozen=True)
class Probe:
    """One measured request: its name, path (per store) and the headers it sends."""

    name: str
    paths: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)
    console: bool = False
    status: int = 200


# -- filling the stores --------------------------------------------------------------------------------------------
def _alert(cam: str, i: int, n: int, event: str, now_ns: int) -> Any:
    """Change ``event`` of the ``i``-th of ``n`` alerts (spread over the last 7 days, a few seconds long)."""
    from vigil.shared.redis_keys import snapshot_key
    from vigil.shared.schemas import Alert

    start_seq = 1_000 + i * 600
    start_ns = now_ns - 7 * DAY_NS + i * (7 * DAY_NS // n)
    alert_id = Alert.make_id(cam, start_seq, start_ns)
    length = 10 + (i % 3) * 40  # 1, 5, 10 s at 10 fps, as the evidence clips
    end = None if event == "open" else start_seq + length - 1
    box = (0.6, 0.55, 0.9, 0.9)
    return Alert(alert_id=alert_id, camera_id=cam, event=event, start_seq=start_seq, end_seq=end, start_ns=start_ns,
                 end_ns=None if end is None else start_ns + length * 10**8, peak_score=6.0 + i % 7, score=5.0,
                 threshold=2.6, peak_seq=start_seq + length // 2, trigger_seq=start_seq + 3,
                 trigger_capture_ns=start_ns + 3 * 10**8, snapshot_key=snapshot_key(alert_id), box=box,
                 box_px=(108, 66, 162, 108), scoring_mode="calibrated", model_id="prednet-ped2", model_version="bench")  # fmt: skip


def _camera_fields(cam: str, now_ns: int) -> dict[str, str]:
    """A camera hash as the scorer writes it."""
    return {"status": "normal", "scoring_mode": "calibrated", "score": "0.9000", "threshold": "2.6000",
            "model": "prednet-ped2:bench", "last_seq": "100000", "last_frame_ns": str(now_ns),
            "last_frame_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9)), "updated_ns": str(now_ns)}  # fmt: skip


async def _write_changes(redis_settings: Any, cams: list[str], n: int, heat_jpeg: bytes) -> list[str]:
    """Every alert's open, update and close through the scorer's RedisSink, 100 alerts at a time; the alert ids."""
    from vigil.services.scorer.sink import RedisSink, SinkOptions
    from vigil.services.scorer.state import PendingAlert, ScorerState

    sink = RedisSink(redis_settings.async_client(), SinkOptions(stream_maxlen=max(100_000, 4 * n)))
    states = {c: ScorerState(c) for c in cams}
    now, ids = time.time_ns(), []
    hashes = {c: _camera_fields(c, now) for c in cams}
    try:
        for first in range(0, n, 100):
            batch = [(cams[i % len(cams)], i) for i in range(first, min(n, first + 100))]
            for event, dedupe in (("open", "open:0"), ("update", "update:1"), ("close", "close:0")):
                for cam, i in batch:
                    a = _alert(cam, i, n, event, now)
                    states[cam].outbox.append(PendingAlert(a, dedupe, a.snapshot_key, heat_jpeg))
                if not await sink.write(list(states.values()), hashes if event == "close" else {}):
                    raise RuntimeError("bench api: the private Redis refused the alerts")
            ids += [_alert(cam, i, n, "open", now).alert_id for cam, i in batch]
    finally:
        await sink.client.aclose()
    return ids


def fill(store: Store, redis_settings: Any, cams: list[str], evidence: list[Any], heat_jpeg: bytes) -> None:
    """Write the store's alerts (scorer sink) and their evidence (evidence writer)."""
    from vigil.services.evidence.settings import EvidenceSettings
    from vigil.services.evidence.transport import EvidenceWriter

    t0 = time.monotonic()
    store.alert_ids = asyncio.run(_write_changes(redis_settings, cams, store.alerts, heat_jpeg))
    client = redis_settings.client()
    writer = EvidenceWriter(client, EvidenceSettings(redis=redis_settings))
    for i, alert_id in enumerate(store.alert_ids):
        ev = evidence[i % len(evidence)]
        writer.write(replace(ev, alert_id=alert_id, camera_id=alert_id.split(":", 1)[0], created_ns=time.time_ns()))
    log.info("store %s: %d alerts, %d stream entries, %.0f MB in Redis, written in %.0f s", store.name, store.alerts,
             client.xlen("vigil:alerts"), client.info("memory")["used_memory"] / 1e6, time.monotonic() - t0)  # fmt: skip
    client.close()


def real_evidence(cfg: BenchConfig) -> tuple[list[Any], bytes]:
    """Evidence of a 1, 5 and 10 s alert rendered by the evidence core from Ped2 frames, and a heat-map snapshot."""
    from vigil.services.scorer.snapshot import render_snapshot
    from vigil.tools.bench_evidence import ALERT_LENGTHS_S, load_frames, render_alert
    from vigil.tools.launcher import default_ped2_dir

    images = load_frames(cfg.data or default_ped2_dir(), cfg.clip)
    evidence = [render_alert(images, s)[0] for s in ALERT_LENGTHS_S]
    heat = np.zeros((15, 23), np.float32)
    heat[9:13, 14:20] = 1.0
    return evidence, render_snapshot(heat, box=(0.6, 0.55, 0.9, 0.9))


# -- the API processes -------------------------------------------------------------------------------------------
def start_api(store: Store, redis_env: dict[str, str], tokens: Path, logs: Path) -> None:
    """`vigil api` over the store's database, on free ports; waits until it is ready."""
    from vigil.tools.demo import wait_ready
    from vigil.tools.launcher import Proc, free_port, vigil_argv

    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_REDIS_")} | redis_env | {"VIGIL_REDIS_URL": store.redis_url, "VIGIL_API_PORT": str(port),
                                          "VIGIL_API_METRICS_PORT": str(metrics_port), "VIGIL_API_TOKENS_FILE": str(tokens),
                                          "VIGIL_LOG_LEVEL": "WARNING"}  # fmt: skip
    store.proc = Proc(f"api-{store.name}", vigil_argv("api"), logs / f"api-{store.name}.log", env).start()
    wait_ready(store.proc, metrics_port, timeout=120)
    store.url = f"http://127.0.0.1:{port}"


def deep_cursor(client: Any, store: Store, headers: dict[str, str]) -> str:
    """The cursor of the oldest full page of 50: after the newest ``alerts - 50`` alerts (pages of 500 to get there)."""
    seen, cursor = 0, None
    target = max(1, store.alerts - 50)
    while seen < target:
        params: dict[str, Any] = {"limit": min(500, target - seen)} | ({"cursor": cursor} if cursor else {})
        page = client.get(store.url + "/v1/alerts", params=params, headers=headers, timeout=60).json()
        seen, cursor = seen + len(page["items"]), page["next_cursor"]
        if cursor is None:
            raise RuntimeError(f"bench api: store {store.name} ended after {seen} alerts")
    return str(cursor)


def probes(stores: list[Store], cams: list[str], cursors: dict[str, str]) -> list[Probe]:
    """The measured requests (the same alert position, camera and relative depth in every store)."""
    def per(fmt: str) -> dict[str, str]:
        return {s.name: fmt.format(id=s.alert_ids[len(s.alert_ids) // 2], cursor=cursors[s.name]) for s in stores}

    cam = cams[len(cams) // 2]
    return [
        Probe("alert list, first page (limit 50)", per("/v1/alerts?limit=50")),
        Probe("alert list, first page (limit 500)", per("/v1/alerts?limit=500")),
        Probe(f"alert list, one camera of {len(cams)} (limit 50)", per(f"/v1/alerts?camera={cam}&limit=50")),
        Probe("alert list, a filter nothing matches (event=open)", per("/v1/alerts?event=open&limit=50")),
        Probe("alert list, deep cursor (the oldest 50)", per("/v1/alerts?limit=50&cursor={cursor}")),
        Probe("one alert (detail)", per("/v1/alerts/{id}")),
        Probe("evidence record", per("/v1/alerts/{id}/evidence")),
        Probe("evidence snapshot (JPEG)", per("/v1/alerts/{id}/snapshot")),
        Probe("clip, full (MP4)", per("/v1/alerts/{id}/clip")),
        Probe("clip, Range bytes=16384-32767", per("/v1/alerts/{id}/clip"), {"Range": "bytes=16384-32767"}, status=206),
        Probe("camera list", per("/v1/cameras")),
        Probe("console review page (HTML, 30 alerts)", per("/review"), console=True),
    ]  # fmt: skip


# -- measuring --------------------------------------------------------------------------------------------------
def _clients(stores: list[Store], token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per store: an API client (bearer token) and a console client (signed in through ``POST /login``)."""
    import httpx

    api, console = {}, {}
    for s in stores:
        api[s.name] = httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        console[s.name] = httpx.Client(base_url=s.url, timeout=60)
        r = console[s.name].post("/login", data={"token": token, "next": "/review"})
        if r.status_code != 303 or "vigil_session" not in console[s.name].cookies:
            raise RuntimeError(f"bench api: console sign-in failed on store {s.name}: {r.status_code} {r.text[:200]}")
    return api, console


@dataclass
class Sample:
    """The times (s) of one probe on one store, and what its answer held."""

    times: list[float] = field(default_factory=list)
    bytes: int = 0
    items: int | None = None


def _check(probe: Probe, store: str, resp: Any, sample: Sample) -> None:
    if resp.status_code != probe.status:
        raise RuntimeError(f"bench api: {probe.name} on store {store}: {resp.status_code} {resp.text[:300]}")
    sample.bytes = len(resp.content)
    if probe.paths[store].startswith("/v1/alerts?"):
        sample.items = len(resp.json()["items"])


def measure(stores: list[Store], plist: list[Probe], cfg: BenchConfig, token: str) -> dict[tuple[str, str], Sample]:
    """Each probe on each store, one request at a time, ``warmup`` + ``requests`` rounds, the stores' order
    alternating every round."""
    api, console = _clients(stores, token)
    samples = {(p.name, s.name): Sample() for p in plist for s in stores}
    try:
        for r in range(cfg.warmup + cfg.requests):
            for p in plist:
                for s in stores if r % 2 else reversed(stores):
                    client = (console if p.console else api)[s.name]
                    t0 = time.perf_counter()
                    resp = client.get(p.paths[s.name], headers=p.headers)
                    dt = time.perf_counter() - t0
                    sample = samples[p.name, s.name]
                    if r < cfg.warmup:
                        _check(p, s.name, resp, sample)
                    else:
                        sample.times.append(dt)
    finally:
        for c in [*api.values(), *console.values()]:
            c.close()
    return samples


def markdown(cfg: BenchConfig, stores: list[Store], plist: list[Probe], samples: dict[tuple[str, str], Sample],
             wall_s: float) -> str:
    """The ``api`` section of docs/benchmarks.md."""
    from vigil.tools.benchdoc import machine_line

    base, big = stores
    rows = []
    for p in plist:
        a, b = samples[p.name, base.name], samples[p.name, big.name]
        (a50, a99), (b50, b99) = (np.percentile(np.array(x.times) * 1e3, [50, 99]) for x in (a, b))
        items = "" if b.items is None else f"{a.items} / {b.items}"
        rows.append(f"| {p.name} | {items} | {b.bytes:,} | {a50:.1f} / {a99:.1f} | **{b50:.1f} / {b99:.1f}** | "
                    f"x{b50 / a50:.2f} / x{b99 / a99:.2f} |")  # fmt: skip
    return "\n".join([
        "## API (`vigil bench api`)",
        "",
        f"Command: `vigil bench api --alerts {cfg.alerts} --baseline {cfg.baseline} --requests {cfg.requests} "
        f"--cameras {cfg.cameras}` ({wall_s:.0f} s)  ",
        f"Machine: {machine_line()}; shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end).  ",
        f"Stores: a private Redis (the local stack's settings: AOF every second) with {big.alerts:,} alerts and, in "
        f"another database, {base.alerts:,} alerts (the baseline), over {cfg.cameras} cameras; each alert is an open, "
        "an update and a close written by the scorer's `RedisSink`, with the scorer's heat-map snapshot and the real "
        "evidence `vigil evidence` writes (a JPEG of the frame and an H.264 clip of a 1, 5 or 10 s Ped2 alert, "
        "through its `EvidenceWriter`). One `vigil api` process per store; real HTTP on loopback, one request at a "
        f"time over a keep-alive connection, {cfg.requests} per request and store after {cfg.warmup} warm-up rounds, "
        "the two stores interleaved round by round. Times are client-side, from sending the request to the last byte.",
        "",
        f"| request | items ({base.alerts:,} / {big.alerts:,}) | bytes | ms p50 / p99 at {base.alerts:,} | "
        f"ms p50 / p99 at {big.alerts:,} | ratio p50 / p99 |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
"The detail, evidence, snapshot and clip requests read a handful of keys whatever the store holds. A list page "
        "walks the alert stream newest first (a Lua script returns only the entries of the page's camera and event that "
        "can be their alert's latest change), so it costs what it must read, not what the store holds: the first page "
        "and a deep cursor cost the same at both sizes; a 500-alert page reads 500 alerts; a filter that matches little "
        "reads more entries per item, at most `VIGIL_API_SCAN_LIMIT` (20,000) per request before it answers with a "
        "cursor. The camera list finds the camera ids by a SCAN of the whole keyspace (about five keys per alert with "
        "its evidence) at most every `VIGIL_API_CAMERAS_CACHE_S` (5 s): the requests that pay it make its p99, and the "
        "review page's (which lists the cameras for its filter). On this shared machine absolute times are several "
        "times an idle one's; read the ratios.",
    ])  # fmt: skip


def run_bench(cfg: BenchConfig, write: bool = True, doc: Path | None = None) -> str:
    """Start a private Redis, fill both stores, serve each with `vigil api`, measure; write the ``api`` section."""
    import shutil

    from vigil.tools.benchdoc import DEFAULT_DOC, write_section
    from vigil.tools.launcher import LocalStack

    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-api-"))
    stack = LocalStack(tmp / "state")
    stores = [Store("baseline", cfg.baseline, ""), Store("full", cfg.alerts, "")]
    try:
        stack.up("redis")
        text = _run(cfg, stack, stores, tmp, t0)
    finally:
        for s in stores:
            if s.proc is not None:
                s.proc.stop()
        stack.down("redis")
        shutil.rmtree(tmp, ignore_errors=True)
    if write:
        write_section("api", text, doc or DEFAULT_DOC)
    return text


def _run(cfg: BenchConfig, stack: Any, stores: list[Store], tmp: Path, t0: float) -> str:
    """Fill, serve and measure (the private Redis is up)."""
    import secrets

    from vigil.shared.settings import RedisSettings

    env = stack.env()
    redis_env = {k: env[k] for k in ("VIGIL_REDIS_URL", "VIGIL_REDIS_PASSWORD_FILE")}
    root = redis_env["VIGIL_REDIS_URL"].rsplit("/", 1)[0]
    evidence, heat = real_evidence(cfg)
    cams = [f"bench-cam-{i:03d}" for i in range(cfg.cameras)]
    token = secrets.token_urlsafe(24)
    tokens = tmp / "tokens"
    tokens.write_text(f"viewer:{token}\n")
    tokens.chmod(0o600)
    for db, s in zip((1, 0), stores, strict=True):
        s.redis_url = f"{root}/{db}"
        fill(s, RedisSettings(url=s.redis_url, password_file=Path(redis_env["VIGIL_REDIS_PASSWORD_FILE"])), cams, evidence, heat)
        start_api(s, redis_env, tokens, tmp / "logs")
    import httpx

    with httpx.Client(timeout=120) as c:
        cursors = {s.name: deep_cursor(c, s, {"Authorization": f"Bearer {token}"}) for s in stores}
    plist = probes(stores, cams, cursors)
    samples = measure(stores, plist, cfg, token)
    return markdown(cfg, stores, plist, samples, time.monotonic() - t0)
