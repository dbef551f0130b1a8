"""`vigil api` over alerts the real scorer core and sink wrote into the real Redis (FastAPI TestClient)."""

from __future__ import annotations

import time

from conftest import OPERATOR, VIEWER, auth


def _page(client, **params):  # noqa: ANN001, ANN003, ANN202
    r = client.get("/v1/alerts", params=params, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    return r.json()


def test_cameras_list_and_one(client, scored) -> None:  # noqa: ANN001
    r = client.get("/v1/cameras", headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    cams = {c["camera_id"]: c for c in r.json()}
    a = cams[scored.a]
    assert a["status"] == "normal" and a["scoring_mode"] == "online" and a["last_seq"] == 699
    assert isinstance(a["score"], float) and isinstance(a["threshold"], float) and a["model"] and a["last_frame_time"]
    assert a["alert_id"] is None
    one = client.get(f"/v1/cameras/{scored.b}", headers=auth(VIEWER)).json()
    assert one["camera_id"] == scored.b and one["last_seq"] == 699
    assert client.get("/v1/cameras/nope-unknown", headers=auth(VIEWER)).status_code == 404
    assert client.get("/v1/cameras/bad%20id!", headers=auth(VIEWER)).status_code == 422


def test_alerts_listed_once_each_newest_first_with_evidence(client, scored) -> None:  # noqa: ANN001
    page = _page(client, camera=scored.a)
    items = page["items"]
    assert len(items) == 2 and page["next_cursor"] is None, page
    assert [it["alert"]["event"] for it in items] == ["close", "close"]  # each alert as its latest change
    assert items[0]["stream_id"] > items[1]["stream_id"] and items[0]["alert"]["start_seq"] > items[1]["alert"]["start_seq"]
    for it in items:
        assert it["alert"]["camera_id"] == scored.a and it["alert"]["box"] is not None and it["label"] is None
        assert it["snapshot_url"] == f"/v1/alerts/{it['alert']['alert_id']}/snapshot"
    both = _page(client, since=_iso(scored.since_ms), until=_iso(scored.until_ms), limit=500)
    ours = [it for it in both["items"] if it["alert"]["camera_id"] in (scored.a, scored.b)]
    assert len(ours) == 3 and len({it["alert"]["alert_id"] for it in both["items"]}) == len(both["items"])


def test_alerts_paged_by_cursor_never_repeat(client, scored) -> None:  # noqa: ANN001
    first = _page(client, camera=scored.a, limit=1)
    assert len(first["items"]) == 1 and first["next_cursor"] == first["items"][0]["stream_id"]
    second = _page(client, camera=scored.a, limit=1, cursor=first["next_cursor"])
    assert len(second["items"]) == 1
    assert second["items"][0]["alert"]["alert_id"] != first["items"][0]["alert"]["alert_id"]
    third = _page(client, camera=scored.a, limit=1, cursor=second["next_cursor"])
    assert third["items"] == [] and third["next_cursor"] is None


def test_alerts_filtered_by_time_and_event(client, scored) -> None:  # noqa: ANN001
    assert _page(client, camera=scored.a, event="open")["items"] == []
    assert len(_page(client, camera=scored.a, event="close")["items"]) == 2
    assert _page(client, camera=scored.a, until=_iso(scored.since_ms - 60_000))["items"] == []
    assert _page(client, camera=scored.a, since=_iso(scored.until_ms + 60_000))["items"] == []
    # until inside the first alert's life: it is shown as its latest change at that time (not its close)
    detail = client.get(f"/v1/alerts/{_page(client, camera=scored.a)['items'][1]['alert']['alert_id']}", headers=auth(VIEWER)).json()
    open_ms, close_ms = (int(detail["changes"][i]["stream_id"].split("-")[0]) for i in (0, -1))
    assert open_ms < close_ms, detail
    early = _page(client, camera=scored.a, until=_iso(close_ms - 1))["items"]
    assert [it["alert"]["event"] for it in early] in (["open"], ["update"])


def test_one_alert_with_all_its_changes_and_its_snapshot(client, scored) -> None:  # noqa: ANN001
    alert_id = _page(client, camera=scored.b)["items"][0]["alert"]["alert_id"]
    detail = client.get(f"/v1/alerts/{alert_id}", headers=auth(VIEWER)).json()
    events = [c["alert"]["event"] for c in detail["changes"]]
    assert events[0] == "open" and events[-1] == "close" and set(events[1:-1]) <= {"update"}, events
    assert detail["camera_id"] == scored.b and detail["snapshot_url"]
    snap = client.get(detail["snapshot_url"], headers=auth(VIEWER))
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg" and snap.content[:2] == b"\xff\xd8"
    missing = f"{scored.b}:1:2"
    assert client.get(f"/v1/alerts/{missing}", headers=auth(VIEWER)).status_code == 404
    r = client.get(f"/v1/alerts/{missing}/snapshot", headers=auth(VIEWER))
    assert r.status_code == 404 and "expired" in r.json()["detail"]


def test_label_round_trip_roles_and_validation(client, scored, redis_client) -> None:  # noqa: ANN001
    alert_id = _page(client, camera=scored.b)["items"][0]["alert"]["alert_id"]
    url = f"/v1/alerts/{alert_id}/label"
    assert client.get(url, headers=auth(VIEWER)).status_code == 404
    body = {"kind": "bike", "note": "courier on the footpath"}
    assert client.put(url, json=body, headers=auth(VIEWER)).status_code == 403
    r = client.put(url, json=body, headers=auth(OPERATOR))
    assert r.status_code == 200 and r.json()["kind"] == "bike" and r.json()["by"].startswith("operator:"), r.text
    assert client.get(url, headers=auth(VIEWER)).json()["note"] == "courier on the footpath"
    from vigil.services.scorer.alerts import labels

    assert labels(redis_client)[alert_id] == "bike"  # stored where `vigil alerts list` reads it
    assert _page(client, camera=scored.b)["items"][0]["label"]["kind"] == "bike"
    bad = client.put(url, json={"kind": "Not A Kind!"}, headers=auth(OPERATOR))
    assert bad.status_code == 422 and "lower-case slug" in bad.json()["detail"]
    assert client.put(url, json={"note": "no kind"}, headers=auth(OPERATOR)).status_code == 422
    assert client.put(url, content=b"{not json", headers=auth(OPERATOR) | {"Content-Type": "application/json"}).status_code == 422
    unknown = client.put(f"/v1/alerts/{scored.b}:1:2/label", json=body, headers=auth(OPERATOR))
    assert unknown.status_code == 404


def test_bad_inputs_are_4xx_with_a_reason(client) -> None:  # noqa: ANN001
    assert client.get("/v1/alerts").status_code == 401
    r = client.get("/v1/alerts", headers=auth("x" * 30))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/alerts", headers={"Authorization": "Basic abc"}).status_code == 401
    for params, says in [({"limit": 501}, "limit"), ({"limit": 0}, "limit"), ({"cursor": "abc"}, "cursor"),
                         ({"since": "yesterday"}, "since"), ({"event": "boom"}, "event"), ({"camera": "a b"}, "camera"),
                         ({"since": "1m", "until": "2h"}, "since must not be after until")]:  # fmt: skip
        r = client.get("/v1/alerts", params=params, headers=auth(VIEWER))
        assert r.status_code == 422 and says in r.text, (params, r.text)
    assert client.get("/v1/alerts/not-an-id", headers=auth(VIEWER)).status_code == 422
    assert client.get("/v1/nothing", headers=auth(VIEWER)).status_code == 404
    assert client.post("/v1/cameras", headers=auth(VIEWER)).status_code == 405


def test_unexpected_errors_are_a_bare_500_and_redis_down_a_503(client, service, monkeypatch) -> None:  # noqa: ANN001
    import redis

    def boom() -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service.ctx.store, "cameras", boom)
    r = client.get("/v1/cameras", headers=auth(VIEWER))
    assert r.status_code == 500 and "secret" not in r.text and r.json() == {"detail": "internal error (logged)"}

    def down() -> None:
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(service.ctx.store, "cameras", down)
    r = client.get("/v1/cameras", headers=auth(VIEWER))
    assert r.status_code == 503 and r.headers["retry-after"] == "5"


def test_openapi_and_docs_are_served(client) -> None:  # noqa: ANN001
    spec = client.get("/openapi.json").json()
    assert {"/v1/cameras", "/v1/alerts", "/v1/alerts/{alert_id}/label", "/v1/events", "/v1/score"} <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}+00:00"


def test_a_label_given_through_the_api_reaches_the_kind_classifier(client, scored, redis_client) -> None:  # noqa: ANN001
    import json

    from vigil.model.classify import KindClassifier
    from vigil.services.scorer.kinds import parse_label_entry
    from vigil.shared.redis_keys import ALERT_LABELS, LABELS_STREAM, alert_features_key

    alert_id = _page(client, camera=scored.a)["items"][-1]["alert"]["alert_id"]
    features = {"peak_score": 7.5, "box_w": 0.25, "duration_s": 3.0}
    redis_client.set(alert_features_key(alert_id), json.dumps(features), ex=600)  # as the scorer stores them
    try:
        r = client.put(f"/v1/alerts/{alert_id}/label", json={"kind": "cart"}, headers=auth(OPERATOR))
        assert r.status_code == 200, r.text
        entries = [parse_label_entry(f) for _, f in redis_client.xrevrange(LABELS_STREAM, count=200)]
        mine = [e for e in entries if e is not None and e[0] == alert_id]
        assert mine and mine[0] == (alert_id, "cart", features)
        clf = KindClassifier()
        clf.learn(mine[0][2], mine[0][1], alert_id)  # what the scorer's KindBook does with each entry
        assert clf.n_labels == 1
    finally:  # the session's alerts stay unlabelled for the other tests
        redis_client.hdel(ALERT_LABELS, alert_id)
        redis_client.delete(alert_features_key(alert_id))
