"""Alert kinds learnt from operators' labels, against a real Redis (issue #17): labels given through the one
label function reach the scorer's classifier, new alerts carry a kind, and a kind operators mark as false
positive is suppressed but stays in the record."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from vigil.services.scorer.alerts import history, label
from vigil.services.scorer.core import ScorerCore
from vigil.services.scorer.kinds import KindBook, parse_label_entry
from vigil.services.scorer.settings import KindSettings, ScorerSettings
from vigil.services.scorer.sink import RedisSink, SinkOptions
from vigil.shared.kafka import KafkaRecord
from vigil.shared.redis_keys import LABELS_STREAM, alert_features_key
from vigil.shared.schemas import Alert
from vigil.shared.scorer_params import EventParams, ScoringParams
from vigil.tools.simulator import score_messages, scripted

FAST = {"scoring": ScoringParams(grace_frames=100, fading_factor=0.03),
        "events": EventParams(k=3, n=5, m=5, min_duration_s=0.2, cooldown_s=1.0, update_interval_s=0.5)}
SPANS = [(150 + 80 * i, 179 + 80 * i) for i in range(6)]
N = 150 + 80 * 6
DB = 7  # labels are site-wide: this test keeps its own Redis database


@pytest.fixture
def private_db(redis_settings):  # noqa: ANN001, ANN201
    """Redis settings and a sync client on database 7 of the local server, its label stream emptied."""
    settings = redis_settings.model_copy(update={"url": redis_settings.url.rsplit("/", 1)[0] + f"/{DB}"})
    client = settings.client()
    client.delete(LABELS_STREAM)
    yield settings, client
    client.delete(LABELS_STREAM)
    client.close()


def _core(settings, kinds: bool = True) -> ScorerCore:  # noqa: ANN001
    async def dead(letter, key):  # noqa: ANN001, ANN202
        raise AssertionError(f"unexpected dead letter {letter}")

    client = settings.async_client()
    sink = RedisSink(client, SinkOptions(retry_min_s=0.05, retry_max_s=0.2))
    book = KindBook(client, KindSettings(refresh_s=0.5, suppress=True)) if kinds else None
    table: dict[str, bytes] = {}
    return ScorerCore(ScorerSettings(**FAST), sink, table.get, table.__setitem__, dead, book)


async def _feed(core: ScorerCore, cam: str, strength: float, seed: int) -> None:
    values = score_messages(cam, scripted(N, SPANS, seed=seed, strength=strength), t0_ns=10**18)
    records = [KafkaRecord("scores", 0, i, cam.encode(), v) for i, v in enumerate(values)]
    for i in range(0, len(records), 50):
        await core.handle(records[i : i + 50])
    if core.kinds is not None:
        await core.kinds.refresh(force=True)


def _closed(client, cam: str, since_ms: int) -> list[Alert]:  # noqa: ANN001
    return [a for a in history(client, since_ms, cam, limit=10_000) if a.event == "close"]


def test_labels_teach_the_scorer_and_a_false_positive_kind_is_suppressed_but_kept(private_db) -> None:  # noqa: ANN001
    settings, client = private_db
    token, since = uuid.uuid4().hex[:6], int(time.time() * 1000) - 1
    cams = {"fp": (f"k-fp-{token}", 3.0), "bike": (f"k-bike-{token}", 12.0)}
    later = {kind: (f"{cam}-2", strength) for kind, (cam, strength) in cams.items()}
    before: dict[str, list[Alert]] = {}

    async def run() -> None:
        core = _core(settings)
        for seed, (cam, strength) in enumerate(cams.values()):
            await _feed(core, cam, strength, seed)
        before.update({kind: _closed(client, cam, since) for kind, (cam, _) in cams.items()})
        for kind, alerts in before.items():  # the operator labels every alert (the API calls the same function)
            for a in alerts:
                label(client, a.alert_id, "false_positive" if kind == "fp" else "bike", by="test")
        assert await core.kinds.refresh(force=True) == 2 * len(SPANS)
        for seed, (cam, strength) in enumerate(later.values(), start=5):
            await _feed(core, cam, strength, seed)

    asyncio.run(run())
    assert all(len(alerts) == len(SPANS) for alerts in before.values()), {k: len(v) for k, v in before.items()}
    assert {(a.kind, a.kind_labels, a.suppressed) for alerts in before.values() for a in alerts} == {("unknown", 0, False)}
    fp = _closed(client, later["fp"][0], since)
    bike = _closed(client, later["bike"][0], since)
    assert fp and bike and all(a.kind_labels == 2 * len(SPANS) for a in fp + bike)
    assert all(a.kind == "false_positive" and a.suppressed and a.kind_confidence >= 0.9 for a in fp), fp
    assert all(a.kind == "bike" and not a.suppressed for a in bike), bike


def test_an_alert_far_beyond_every_labelled_false_positive_is_never_suppressed(private_db) -> None:  # noqa: ANN001
    settings, client = private_db
    token, since = uuid.uuid4().hex[:6], int(time.time() * 1000) - 1
    cam = f"k-only-fp-{token}"

    async def run() -> None:
        core = _core(settings)
        await _feed(core, cam, 3.0, 0)
        await _feed(core, cam + "-b", 3.2, 1)
        for a in _closed(client, cam, since) + _closed(client, cam + "-b", since):
            label(client, a.alert_id, "false_positive", by="test")
        await core.kinds.refresh(force=True)
        await _feed(core, cam + "-big", 60.0, 2)

    asyncio.run(run())
    big = _closed(client, cam + "-big", since)
    assert big and all(not a.suppressed for a in big), [(a.kind, a.peak_score, a.suppressed) for a in big]


def test_malformed_label_entries_are_skipped_and_never_fatal(private_db) -> None:  # noqa: ANN001
    settings, client = private_db
    client.xadd(LABELS_STREAM, {"alert_id": "x:1:2", "kind": "bike", "features": '{"peak_score": NaN}'})
    client.xadd(LABELS_STREAM, {"alert_id": "x:1:3", "kind": "DROP TABLE", "features": "{}"})
    client.xadd(LABELS_STREAM, {"alert_id": "x:1:4", "kind": "bike", "features": "[1, 2]"})
    client.xadd(LABELS_STREAM, {"alert_id": "x:1:5", "kind": "bike", "features": '{"peak_score": 5.0}'})
    book = KindBook(settings.async_client(), KindSettings())
    assert asyncio.run(book.refresh(force=True)) == 1 and book.classifier.n_labels == 1
    assert parse_label_entry({b"alert_id": b"a:1:1", b"kind": b"bike", b"features": b""}) is None  # expired features


@pytest.mark.parametrize("snapshots", [True, False])
def test_live_alerts_carry_the_error_map_inside_their_box(private_db, snapshots: bool) -> None:  # noqa: ANN001
    """The features stored for a label come from the peak frame's real error map, with or without snapshots,
    and a stronger anomaly has a larger error inside its box."""
    settings, client = private_db
    token, since = uuid.uuid4().hex[:6], int(time.time() * 1000) - 1
    cams = {strength: f"k-map-{strength:.0f}-{token}" for strength in (3.0, 12.0)}

    async def run() -> None:
        async def dead(letter, key):  # noqa: ANN001, ANN202
            raise AssertionError(f"unexpected dead letter {letter}")

        aclient = settings.async_client()
        table: dict[str, bytes] = {}
        core = ScorerCore(ScorerSettings(**FAST, snapshots=snapshots), RedisSink(aclient), table.get,
                          table.__setitem__, dead, KindBook(aclient, KindSettings()))  # fmt: skip
        for seed, (strength, cam) in enumerate(cams.items()):
            await _feed(core, cam, strength, seed)
        assert all(st.outbox == type(st.outbox)() for st in core.states.values())

    asyncio.run(run())
    box_max: dict[float, list[float]] = {}
    for strength, cam in cams.items():
        closed = _closed(client, cam, since)
        assert len(closed) == len(SPANS) and all(a.box is not None for a in closed)
        assert all((a.snapshot_key is not None) == snapshots for a in closed)
        feats = [json.loads(client.get(alert_features_key(a.alert_id))) for a in closed]
        assert all(0 < f["box_err_mean"] <= f["box_err_max"] for f in feats), feats
        box_max[strength] = [f["box_err_max"] for f in feats]
    assert min(box_max[12.0]) > max(box_max[3.0]), box_max
