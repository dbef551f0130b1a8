"""Pure logic of vigil notify: signatures, topics, parsing, filters, backoff."""

from __future__ import annotations

import pytest

from vigil.services.notify import core


def _alert_json(**kw: object) -> bytes:
    import json
    base = {"alert_id": "cam-1:1:1", "camera_id": "cam-1", "event": "open", "start_seq": 1, "start_ns": 1,
            "peak_score": 5.0, "score": 5.0, "threshold": 3.0, "peak_seq": 1}
    base.update(kw)
    return json.dumps(base).encode()


def test_signature_roundtrip_and_tamper() -> None:
    ts, sig = core.sign_body(b"k", b"body", now_s=100)
    assert core.verify_signature(b"k", b"body", ts, sig, now_s=100)
    assert not core.verify_signature(b"k", b"body2", ts, sig, now_s=100)
    assert not core.verify_signature(b"other", b"body", ts, sig, now_s=100)
    assert not core.verify_signature(b"k", b"body", ts, sig, now_s=10_000)  # replay window
    assert not core.verify_signature(b"k", b"body", "x", sig, now_s=100)


def test_topics_sanitised() -> None:
    t = core.Topics("site")
    assert t.camera_alert("a/b+#") == "site/a_b__/alert"
    assert t.camera_status("cam-1") == "site/cam-1/status"
    assert t.alerts == "site/alerts" and t.available == "site/available"


def test_parse_alert_good_and_bad() -> None:
    a = core.parse_alert({b"json": _alert_json()})
    assert a.camera_id == "cam-1"
    for bad in ({}, {b"json": b"not json"}, {b"json": _alert_json(event="boom")}):
        with pytest.raises(core.BadAlertError):
            core.parse_alert(bad)


def test_filters_backoff_status() -> None:
    a = core.parse_alert({b"json": _alert_json()})
    assert core.matches(a, [], [])
    assert core.matches(a, ["cam-1"], ["open"])
    assert not core.matches(a, ["cam-2"], [])
    assert not core.matches(a, [], ["close"])
    assert [core.backoff_s(i, 0.5, 2.0) for i in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.0]
    assert core.camera_status({b"updated_ns": b"100"}, now_ns=100 + 10**9, stale_s=30) == "online"
    assert core.camera_status({b"updated_ns": b"100"}, now_ns=100 + 60 * 10**9, stale_s=30) == "offline"
    assert core.camera_status({}, now_ns=1, stale_s=30) == "offline"
