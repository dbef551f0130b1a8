"""The processing core against a real Redis: exact outputs, idempotent replays, Redis outage (in-process)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import typer
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from vigil.services.scorer import metrics as scorer_metrics
from vigil.services.scorer.alerts import history
from vigil.services.scorer.cli import cameras_app
from vigil.services.scorer.core import ScorerCore
from vigil.services.scorer.settings import ScorerSettings
from vigil.services.scorer.sink import RedisSink, SinkOptions, changes_key
from vigil.shared.kafka import KafkaRecord
from vigil.shared.redis_keys import ALERTS_STREAM, alerts_channel, camera_hash
from vigil.shared.schemas import Alert
from vigil.shared.scorer_params import EventParams, ScoringParams
from vigil.shared.settings import RedisSettings
from vigil.tools.simulator import score_messages, scripted

FAST = {"scoring": ScoringParams(grace_frames=100, fading_factor=0.03),
        "events": EventParams(k=3, n=5, m=5, min_duration_s=0.2, cooldown_s=1.0, update_interval_s=0.5)}


def _core(redis_settings: RedisSettings, table: dict[str, bytes], **kw: object) -> tuple[ScorerCore, list]:
    settings = ScorerSettings(**(FAST | kw))
    letters: list = []

    async def dead(letter, key):  # noqa: ANN001, ANN202
        letters.append(letter)

    sink = RedisSink(redis_settings.async_client(), SinkOptions(retry_min_s=0.05, retry_max_s=0.2))
    return ScorerCore(settings, sink, table.get, table.__setitem__, dead), letters


def _records(cam: str, sim, **kw: object) -> list[KafkaRecord]:  # noqa: ANN001
    return [KafkaRecord("scores", 0, i, cam.encode(), v) for i, v in enumerate(score_messages(cam, sim, **kw))]


def _entries(client, cam: str, since_ms: int) -> list[Alert]:  # noqa: ANN001
    return history(client, since_ms, cam, limit=100_000)


async def _feed(core: ScorerCore, records: list[KafkaRecord], batch: int = 100) -> None:
    for i in range(0, len(records), batch):
        await core.handle(records[i : i + batch])


def test_alerts_exact_outputs_and_idempotent_replay(redis_settings, redis_client) -> None:  # noqa: ANN001
    cam, quiet = f"t-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    since = int(time.time() * 1000) - 1
    pubsub = redis_client.pubsub()
    pubsub.subscribe(alerts_channel(cam))
    table: dict[str, bytes] = {}
    core, letters = _core(redis_settings, table)
    sim = scripted(700, [(400, 459)])
    records = _records(cam, sim, heatmap=True, t0_ns=10**18) + _records(quiet, scripted(700, [], seed=3))
    records.insert(5, KafkaRecord("scores", 1, 99, b"bad", b"VG\x02garbage"))
    asyncio.run(_feed(core, records))

    alerts = _entries(redis_client, cam, since)
    kinds = [a.event for a in alerts]
    assert kinds[0] == "open" and kinds[-1] == "close" and set(kinds[1:-1]) <= {"update"}, kinds
    close = alerts[-1]
    start = close.start_seq  # the first frame whose 5-frame mean score is above
    assert 400 <= start <= 402 and 459 <= close.end_seq <= 465  # the 5-frame mean stays above a few frames
    assert {a.alert_id for a in alerts} == {Alert.make_id(cam, start, 10**18 + int(sim.t_ns[start]))}
    assert close.start_ns == 10**18 + int(sim.t_ns[start]) and close.end_ns == 10**18 + int(sim.t_ns[close.end_seq])
    assert close.peak_score >= close.threshold and close.box is not None and close.scoring_mode == "online"
    assert _entries(redis_client, quiet, since) == []
    assert len(letters) == 1 and letters[0].offset == 99

    published = []
    while (msg := pubsub.get_message(timeout=0.5)) is not None:
        if msg["type"] == "message":
            published.append(json.loads(msg["data"])["event"])
    assert published == kinds
    h = {k.decode(): v.decode() for k, v in redis_client.hgetall(camera_hash(cam)).items()}
    assert h["status"] == "normal" and h["last_seq"] == "699" and h["scoring_mode"] == "online"
    assert float(h["threshold"]) == ScoringParams().online_threshold
    assert 0 < redis_client.ttl(camera_hash(cam)) <= 7 * 86_400  # a camera that stops sending expires
    level = dict(part.split(":") for part in h["level"].split(","))  # the level it follows, as `cameras status` shows
    assert set(level) == {"error"} and abs(float(level["error"])) <= ScoringParams().max_gain  # the simulator's one map
    gauge = REGISTRY.get_sample_value("vigil_scorer_camera_level", {"camera": cam, "map": "error"})
    assert gauge == pytest.approx(float(level["error"]), abs=1e-4)
    cli = typer.Typer()
    cli.add_typer(cameras_app, name="cameras")
    status = CliRunner().invoke(cli, ["cameras", "status", "--camera", cam])
    assert status.exit_code == 0 and f"{cam}: normal, scoring online" in status.output, status.output
    assert f"level error {float(level['error']):+.4f} (log units from its normal)" in status.output, status.output
    scorer_metrics.forget_camera(cam)  # an evicted camera's gauges go with it
    assert REGISTRY.get_sample_value("vigil_scorer_camera_level", {"camera": cam, "map": "error"}) is None
    snap = redis_client.get(close.snapshot_key)
    assert snap[:2] == b"\xff\xd8" and 0 < redis_client.ttl(close.snapshot_key) <= 7 * 86400
    assert redis_client.hlen(changes_key(close.alert_id)) == len(alerts)

    # Replays: from the saved states (repeats are ignored) and from scratch (same ids, deduplicated).
    asyncio.run(_feed(_core(redis_settings, table)[0], records))
    asyncio.run(_feed(_core(redis_settings, {})[0], records))
    assert [a.event for a in _entries(redis_client, cam, since)] == kinds


def test_redis_outage_keeps_alerts_and_delivers_them_later(private_redis) -> None:  # noqa: ANN001
    settings = RedisSettings(url=private_redis.url, password=private_redis.password, socket_timeout_s=1.0)
    cam = f"o-{uuid.uuid4().hex[:8]}"
    core, _ = _core(settings, {})
    records = _records(cam, scripted(800, [(300, 339), (600, 649)]))

    async def scenario() -> bool:  # one event loop: the async Redis client belongs to it
        await _feed(core, records[:250])
        private_redis.stop()
        await _feed(core, records[250:])  # both incidents happen while Redis is down: no exception
        assert [p.alert.event for p in core.states[cam].outbox].count("open") == 2
        assert not core.sink.healthy
        private_redis.start()
        await asyncio.sleep(0.3)  # past the backoff
        return await core.flush()

    assert asyncio.run(scenario())
    client = settings.client()
    got = [Alert.from_json(f[b"json"]) for _id, f in client.xrange(ALERTS_STREAM)]
    opens = [a.start_seq for a in got if a.event == "open"]
    closes = [a.start_seq for a in got if a.event == "close"]
    assert opens == closes and [s // 100 for s in opens] == [3, 6]
    assert not core.states[cam].outbox


def test_a_change_redis_refuses_is_kept_and_published_later(private_redis) -> None:  # noqa: ANN001
    """WRONGTYPE (someone wrote a string where the alert stream goes): nothing is lost, nothing is marked."""
    settings = RedisSettings(url=private_redis.url, password=private_redis.password, socket_timeout_s=1.0)
    cam = f"w-{uuid.uuid4().hex[:8]}"
    core, _ = _core(settings, {})
    records = _records(cam, scripted(500, [(300, 339)]))
    client = settings.client()
    client.set(ALERTS_STREAM, "not a stream")

    async def scenario() -> bool:
        await _feed(core, records)
        kept = [p.alert.event for p in core.states[cam].outbox]
        assert kept[0] == "open" and kept[-1] == "close", kept
        assert not core.sink.healthy and not client.keys("vigil:alert-changes:*")  # no dedupe mark was left
        client.delete(ALERTS_STREAM)
        await asyncio.sleep(0.3)
        return await core.flush()

    assert asyncio.run(scenario())
    got = [Alert.from_json(f[b"json"]).event for _id, f in client.xrange(ALERTS_STREAM)]
    assert got[0] == "open" and got[-1] == "close" and not core.states[cam].outbox


def test_hostile_scores_cost_one_record_each(redis_settings, redis_client, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """A far-future capture time, an unknown camera (known-only), a camera over the cap, and a record whose
    processing fails: each is one dead letter, and the good scores of the same batch are processed."""
    from vigil.services.scorer.state import ScorerState

    cameras = tmp_path / "cameras.yaml"
    good, other = f"g-{uuid.uuid4().hex[:8]}", f"x-{uuid.uuid4().hex[:8]}"
    cameras.write_text(f"cameras:\n  - {{id: {good}, url: rtsp://h/a}}\n  - {{id: {other}, url: rtsp://h/b}}\n")
    core, letters = _core(redis_settings, {}, known_cameras_only=True, max_cameras=1, cameras={"file": cameras})
    now = time.time_ns()
    records = _records(good, scripted(50, []), t0_ns=now - 10**10)
    future = _records(good, scripted(1, []), start_seq=1000, t0_ns=now + 2 * 86_400 * 10**9)[0]
    stranger = _records("stranger", scripted(1, []), t0_ns=now)[0]
    over_cap = _records(other, scripted(1, []), t0_ns=now)[0]
    records[10:10] = [future, stranger, over_cap]
    step = ScorerState.step

    def failing_step(self, msg):  # noqa: ANN001, ANN202 - one record fails in a way no schema catches
        if msg.seq == 20:
            raise RuntimeError("unexpected")
        return step(self, msg)

    monkeypatch.setattr(ScorerState, "step", failing_step)
    asyncio.run(_feed(core, records, batch=100))
    reasons = [letter.error for letter in letters]
    assert len(letters) == 4, reasons
    assert "in the future" in reasons[0] and "not in the cameras file" in reasons[1] and "limit" in reasons[2]
    assert "processing failed: RuntimeError" in reasons[3]
    assert core.states[good].last_seq == 49 and redis_client.hget(camera_hash(good), "last_seq") == b"49"


def test_a_quiet_camera_s_unconfirmed_alerts_are_published_at_start_up(private_redis, redis_settings, redis_client) -> None:  # noqa: ANN001
    """Alerts raised while Redis was down, by a camera that then went quiet: a new scorer process loads every
    saved state that still holds unconfirmed changes and publishes them, without a new score of that camera."""
    down = RedisSettings(url=private_redis.url, password=private_redis.password, socket_timeout_s=1.0)
    cam = f"quiet-{uuid.uuid4().hex[:8]}"
    table: dict[str, bytes] = {}
    private_redis.stop()
    first, _ = _core(down, table)
    asyncio.run(_feed(first, _records(cam, scripted(500, [(300, 339)]))))
    assert [p.alert.event for p in first.states[cam].outbox][0] == "open"  # kept, saved with the state
    since = int(time.time() * 1000) - 1
    second, _ = _core(redis_settings, table)  # restarted scorer, Redis reachable, no new score of cam

    async def start_up() -> bool:
        assert second.adopt(table.items()) == 1
        return await second.flush()

    assert asyncio.run(start_up())
    events = [a.event for a in _entries(redis_client, cam, since)]
    assert events[0] == "open" and events[-1] == "close" and not second.states[cam].outbox


def test_score_timeline_has_one_point_per_second_with_the_interval_s_highest_score(redis_settings, redis_client) -> None:  # noqa: ANN001
    from vigil.shared.redis_keys import timeline_key

    cam = f"tl-{uuid.uuid4().hex[:8]}"
    since = int(time.time() * 1000) - 1
    core, _ = _core(redis_settings, {})
    sim = scripted(700, [(400, 459)])
    asyncio.run(_feed(core, _records(cam, sim, t0_ns=10**18)))
    entries = redis_client.xrange(timeline_key(cam))
    t = [int(f[b"t_ns"]) for _, f in entries]
    scores = [float(f[b"score"]) for _, f in entries]
    seconds = {(10**18 + int(x)) // 10**9 for x in sim.t_ns}
    # one point per second from the first scored frame (after the grace period) to the last second, still open
    assert len(entries) > 40 and t == [x * 10**9 for x in range(t[0] // 10**9, max(seconds))]
    peak = max(a.peak_score for a in _entries(redis_client, cam, since))
    assert abs(max(scores) - peak) < 1e-3  # the spike is kept, not averaged away
    assert 0 < redis_client.ttl(timeline_key(cam)) <= ScorerSettings().camera_ttl_s
