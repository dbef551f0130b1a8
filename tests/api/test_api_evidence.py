"""Evidence (real-frame snapshot, clip with Range requests), timelines, latest frames, zones, evidence events on
/v1/events and the console's cookie sign-in, over the real Redis (FastAPI TestClient)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from conftest import OPERATOR, VIEWER, auth
from evidence_fixtures import jpeg, make_clip, write_evidence, write_live_view


@pytest.fixture(scope="module")
def clip() -> bytes:
    return make_clip(frames=20)


@pytest.fixture
def alert_id(client, scored) -> str:  # noqa: ANN001
    return client.get("/v1/alerts", params={"camera": scored.a}, headers=auth(VIEWER)).json()["items"][0]["alert"]["alert_id"]


def test_snapshot_is_the_real_frame_once_written_else_the_heat_map(client, scored, redis_client, clip) -> None:  # noqa: ANN001
    items = client.get("/v1/alerts", params={"camera": scored.b}, headers=auth(VIEWER)).json()["items"]
    alert_id = items[0]["alert"]["alert_id"]
    assert items[0]["snapshot_kind"] == "heatmap" and items[0]["clip_url"] is None and items[0]["evidence_status"] is None
    heat = client.get(f"/v1/alerts/{alert_id}/snapshot", headers=auth(VIEWER))
    assert heat.status_code == 200 and heat.headers["x-vigil-snapshot"] == "heatmap"
    assert client.get(f"/v1/alerts/{alert_id}/evidence", headers=auth(VIEWER)).status_code == 404
    frame = jpeg(text="peak")
    write_evidence(redis_client, alert_id, clip, frame, publish=False)
    r = client.get(f"/v1/alerts/{alert_id}/snapshot", headers=auth(VIEWER))
    assert r.status_code == 200 and r.content == frame and r.headers["x-vigil-snapshot"] == "frame"
    assert client.get(f"/v1/alerts/{alert_id}/snapshot?kind=heatmap", headers=auth(VIEWER)).content == heat.content
    assert client.get(f"/v1/alerts/{alert_id}/snapshot?kind=video", headers=auth(VIEWER)).status_code == 422
    item = client.get("/v1/alerts", params={"camera": scored.b}, headers=auth(VIEWER)).json()["items"][0]
    assert item["snapshot_kind"] == "frame" and item["clip_url"] == f"/v1/alerts/{alert_id}/clip" and item["evidence_status"] == "final"
    ev = client.get(f"/v1/alerts/{alert_id}/evidence", headers=auth(VIEWER)).json()
    assert ev["clip_bytes"] == len(clip) and ev["clip_mime"] == "video/mp4" and ev["frames"] == 80 and ev["status"] == "final"
    detail = client.get(f"/v1/alerts/{alert_id}", headers=auth(VIEWER)).json()
    assert detail["clip_url"] and detail["snapshot_kind"] == "frame"


def test_clip_whole_and_by_ranges(client, redis_client, alert_id, clip) -> None:  # noqa: ANN001
    write_evidence(redis_client, alert_id, clip, jpeg(), publish=False)
    url, n = f"/v1/alerts/{alert_id}/clip", len(clip)
    whole = client.get(url, headers=auth(VIEWER))
    assert whole.status_code == 200 and whole.content == clip and whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["etag"]
    for rng, first, last in [("bytes=0-99", 0, 99), ("bytes=100-", 100, n - 1), ("bytes=-50", n - 50, n - 1),
                             (f"bytes=10-{n + 500}", 10, n - 1), (f"bytes=-{n + 10}", 0, n - 1)]:  # fmt: skip
        r = client.get(url, headers=auth(VIEWER) | {"Range": rng})
        assert r.status_code == 206, (rng, r.text)
        assert r.headers["content-range"] == f"bytes {first}-{last}/{n}" and r.content == clip[first : last + 1], rng
    beyond = client.get(url, headers=auth(VIEWER) | {"Range": f"bytes={n}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{n}" and str(n) in beyond.json()["detail"]
    for bad in ["bytes=5-1", "items=0-1", "bytes=0-1,5-9", "bytes=-", "bytes=-0", "bytes=abc"]:
        r = client.get(url, headers=auth(VIEWER) | {"Range": bad})
        assert r.status_code == 416 and "Range" in r.json()["detail"], bad
    stale = client.get(url, headers=auth(VIEWER) | {"Range": "bytes=0-9", "If-Range": '"old-version"'})
    assert stale.status_code == 200 and stale.content == clip  # changed since: the whole clip
    same = client.get(url, headers=auth(VIEWER) | {"Range": "bytes=0-9", "If-Range": whole.headers["etag"]})
    assert same.status_code == 206 and same.content == clip[:10]
    assert client.get(url).status_code == 401
    assert client.get(f"/v1/alerts/{alert_id.split(':')[0]}:1:2/clip", headers=auth(VIEWER)).status_code == 404


def test_clip_type_comes_from_the_hash_or_the_bytes(client, redis_client, alert_id) -> None:  # noqa: ANN001
    webm = make_clip(frames=5, container="webm")
    write_evidence(redis_client, alert_id, webm, jpeg(), mime="text/html", publish=False)  # a hostile type is not echoed
    r = client.get(f"/v1/alerts/{alert_id}/clip", headers=auth(VIEWER))
    assert r.headers["content-type"] == "video/webm" and r.content == webm
    assert r.headers["x-content-type-options"] == "nosniff"


def test_timeline_latest_frame_and_their_bad_inputs(client, redis_client) -> None:  # noqa: ANN001
    from vigil.shared.redis_keys import timeline_key

    cam = f"api-tl-{uuid.uuid4().hex[:8]}"
    write_live_view(redis_client, cam, points=90)
    redis_client.xadd(timeline_key(cam), {"t_ns": "garbage", "score": "1"})
    redis_client.xadd(timeline_key(cam), {"t_ns": "5", "score": "nan"})
    points = client.get(f"/v1/cameras/{cam}/timeline", headers=auth(VIEWER)).json()
    assert len(points) == 90 and points[0]["t_ns"] < points[-1]["t_ns"] and points[0]["threshold"] == 2.6
    assert len(client.get(f"/v1/cameras/{cam}/timeline?limit=10", headers=auth(VIEWER)).json()) <= 10
    recent = client.get(f"/v1/cameras/{cam}/timeline?since=soon", headers=auth(VIEWER))
    assert recent.status_code == 422 and "since" in recent.json()["detail"]
    assert 0 < len(client.get(f"/v1/cameras/{cam}/timeline?since=1m", headers=auth(VIEWER)).json()) < 90
    assert client.get(f"/v1/cameras/{cam}/timeline?limit=0", headers=auth(VIEWER)).status_code == 422
    assert client.get(f"/v1/cameras/{cam}/timeline?limit=10001", headers=auth(VIEWER)).status_code == 422
    assert client.get("/v1/cameras/nobody-here/timeline", headers=auth(VIEWER)).json() == []
    frame = client.get(f"/v1/cameras/{cam}/frame", headers=auth(VIEWER))
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg" and frame.content[:2] == b"\xff\xd8"
    assert frame.headers["cache-control"] == "no-store"
    assert client.get("/v1/cameras/nobody-here/frame", headers=auth(VIEWER)).status_code == 404
    assert client.get("/v1/cameras/bad%20id/frame", headers=auth(VIEWER)).status_code == 422


def test_zones_are_checked_and_given_back_as_yaml(client) -> None:  # noqa: ANN001
    import yaml

    body = {"include": [[[0, 0], [1, 0], [1, 1], [0, 1]]], "exclude": [[[0.1, 0.1], [0.4, 0.1], [0.4, 0.3]]]}
    r = client.post("/v1/cameras/lobby/zones/check", json=body, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    assert yaml.safe_load(r.json()["yaml"])["zones"] == {"include": body["include"], "exclude": body["exclude"]}
    for bad, says in [({"exclude": [[[0, 0], [0.5, 0.5], [1, 1]]]}, "no area"), ({"exclude": [[[0, 0], [2, 0], [0, 1]]]}, "less than or equal"),
                      ({"include": [[[0, 0], [1, 0]]]}, "at least 3"), ({"exclude": "x"}, "exclude")]:  # fmt: skip
        r = client.post("/v1/cameras/lobby/zones/check", json=bad, headers=auth(VIEWER))
        assert r.status_code == 422 and says in r.text, (bad, r.text)


def test_evidence_ready_messages_become_evidence_events() -> None:
    from vigil.services.api.events import AlertHub

    async def run() -> list:
        hub = AlertHub(lambda: None, queue_size=4)
        queue: asyncio.Queue = asyncio.Queue(4)
        hub._queues.add(queue)
        hub.dispatch({"type": "message", "data": b"cam-1:10:1795378018859"})
        hub.dispatch({"type": "message", "data": b"<script>alert(1)</script>"})  # not an alert id: dropped
        hub.dispatch({"type": "pmessage", "data": b'{"alert_id": "x"}'})
        return [queue.get_nowait() for _ in range(queue.qsize())]

    got = asyncio.run(run())
    assert got == [("evidence", json.dumps({"alert_id": "cam-1:10:1795378018859"})), ("alert", '{"alert_id": "x"}')]


def test_console_sign_in_cookie_and_csrf(client, scored) -> None:  # noqa: ANN001
    client.cookies.clear()
    r = client.get("/review", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Freview"
    bad = client.post("/login", data={"token": "wrong" * 5, "next": "/"}, follow_redirects=False)
    assert bad.status_code == 401 and "not in the tokens file" in bad.text and "set-cookie" not in bad.headers
    assert client.post("/login", content=b"x" * 5000, headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 413
    assert client.post("/login", json={"token": OPERATOR}).status_code == 415
    r = client.post("/login", data={"token": OPERATOR, "next": "//evil.example/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and OPERATOR.lower() not in cookie
    page = client.get("/review", params={"camera": scored.a})  # the shared stream may hold newer alerts of others
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert scored.a in page.text and 'data-kind="false_positive"' in page.text
    alert_id = client.get("/v1/alerts", params={"camera": scored.a}).json()["items"][0]["alert"]["alert_id"]  # cookie reads
    url = f"/v1/alerts/{alert_id}/label"
    assert client.put(url, json={"kind": "skater"}).status_code == 403  # no console header: a forged request
    hdr = {"X-Vigil-Console": "1"}
    assert client.put(url, json={"kind": "skater"}, headers=hdr | {"Origin": "https://evil.example"}).status_code == 403
    ok = client.put(url, json={"kind": "skater"}, headers=hdr | {"Origin": "http://testserver"})
    try:
        assert ok.status_code == 200 and ok.json()["by"].startswith("operator:")
        card = client.get(f"/console/cards/{alert_id}")
        assert card.status_code == 200 and "labelled <b>skater</b>" in card.text
    finally:  # the session's alerts stay unlabelled for the other tests
        from vigil.shared.redis_keys import ALERT_LABELS

        client.app.state.ctx.store.client.hdel(ALERT_LABELS, alert_id)
    for path in ["/", f"/cameras/{scored.a}", f"/cameras/{scored.a}/zones"]:
        assert client.get(path).status_code == 200, path
    client.post("/logout")
    assert client.get("/", follow_redirects=False).status_code == 303
    assert client.get(f"/console/cards/{alert_id}").status_code == 401


def test_a_viewer_sees_the_console_but_cannot_label(client, scored) -> None:  # noqa: ANN001
    client.cookies.clear()
    client.post("/login", data={"token": VIEWER, "next": "/review"})
    page = client.get("/review")
    assert page.status_code == 200 and 'disabled title="needs an operator token"' in page.text
    alert_id = client.get("/v1/alerts", params={"camera": scored.a}).json()["items"][0]["alert"]["alert_id"]
    assert client.put(f"/v1/alerts/{alert_id}/label", json={"kind": "bike"}, headers={"X-Vigil-Console": "1"}).status_code == 403
    assert client.get("/review?cursor=nonsense").status_code == 422
    client.cookies.clear()


def test_a_card_shows_the_predicted_kind_and_suppression(client) -> None:  # noqa: ANN001
    import uuid

    from vigil.services.scorer.sink import changes_key
    from vigil.shared.redis_keys import ALERTS_STREAM
    from vigil.shared.schemas import Alert

    cam = f"kind-{uuid.uuid4().hex[:8]}"
    alert = Alert(alert_id=f"{cam}:1:1", camera_id=cam, event="close", start_seq=1, end_seq=9, start_ns=10**18,
                  end_ns=10**18 + 10**9, peak_score=4.0, score=1.0, threshold=2.0, peak_seq=4, kind="false_positive",
                  kind_confidence=0.97, kind_labels=42, suppressed=True)  # fmt: skip
    redis = client.app.state.ctx.store.client
    sid = redis.xadd(ALERTS_STREAM, {"alert_id": alert.alert_id, "camera_id": cam, "event": "close", "json": alert.to_json()})
    redis.hset(changes_key(alert.alert_id), "close:1", sid)  # the scorer's index of an alert's changes
    redis.expire(changes_key(alert.alert_id), 600)
    client.cookies.clear()
    client.post("/login", data={"token": OPERATOR, "next": "/"}, follow_redirects=False)
    card = client.get(f"/console/cards/{alert.alert_id}")
    assert card.status_code == 200, card.text
    assert "predicted <b>false positive</b> (97%), 42 labels" in card.text and ">suppressed</span>" in card.text
    client.post("/logout")
