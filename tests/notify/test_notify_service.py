"""`vigil notify` against the real Redis and Mosquitto and a local webhook receiver: both MQTT topics at QoS 1 and
the retained status, signed webhooks, retries, dead letters, malformed entries, a slow webhook, shutdown and
restart (at least once), and the replay of dead letters."""

from __future__ import annotations

import time

from tests.notify.conftest import SECRET, alert_json, metric, payload, wait_for
from vigil.shared.redis_keys import camera_hash, evidence_key


def _xadd(rclient, settings, text: str | None = None, **fields: str) -> str:  # noqa: ANN001
    return rclient.xadd(settings.alerts_stream, {"json": text} if text is not None else fields).decode()


def _pending(rclient, settings) -> int:  # noqa: ANN001
    return rclient.xpending(settings.alerts_stream, settings.alerts_group)["pending"]


def _dead(rclient, settings) -> list[dict[str, str]]:  # noqa: ANN001
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in rclient.xrange(settings.dead_letters)]


def test_alert_reaches_both_topics_at_qos1_with_retained_status(
    notify_settings, run_notify, subscribe, rclient, unique_name  # noqa: ANN001
) -> None:  # fmt: skip
    settings = notify_settings()
    cam = unique_name("cam")
    rclient.hset(camera_hash(cam), mapping={"status": "normal", "updated_ns": time.time_ns()})
    text = alert_json(cam, 7, "close", end_seq=9, end_ns=1_700_000_000_000_000_009)
    alert_id = payload_id = __import__("json").loads(text)["alert_id"]
    rclient.hset(evidence_key(alert_id), mapping={"status": "final", "snapshot_bytes": 10, "clip_bytes": 20,
                                                  "clip_mime": "video/mp4"})  # fmt: skip
    try:
        p = settings.topic_prefix
        sub = subscribe([f"{p}/alerts", f"{p}/{cam}/alert"])
        run_notify(settings)
        entry = _xadd(rclient, settings, text)
        both = wait_for(lambda: sub.on(f"{p}/alerts") and sub.on(f"{p}/{cam}/alert"), 10, "no alert on both topics")
        for m in (sub.on(f"{p}/alerts")[0], sub.on(f"{p}/{cam}/alert")[0]):
            body = payload(m)
            assert m.qos == 1 and not m.retain
            assert (body["type"], body["id"], body["camera"], body["entry_id"]) == ("end", payload_id, cam, entry)
            assert body["links"]["clip"].endswith(f"/v1/alerts/{alert_id}/clip") and body["evidence"]["clip_mime"] == "video/mp4"
        assert both
        # retained: a subscriber that comes later still gets the camera status, state and availability
        late = subscribe([f"{p}/{cam}/status", f"{p}/{cam}/state", f"{p}/available"])
        wait_for(lambda: late.on(f"{p}/{cam}/status") and late.on(f"{p}/{cam}/state") and late.on(f"{p}/available"),
                 10, "no retained status")  # fmt: skip
        assert [(m.payload, m.retain) for m in late.on(f"{p}/{cam}/status")][0] == (b"online", True)
        assert late.on(f"{p}/{cam}/state")[0].payload == b"normal"
        assert late.on(f"{p}/available")[0].payload == b"online"
        wait_for(lambda: _pending(rclient, settings) == 0, 5, "the entry was never acknowledged")
        # the camera goes stale: offline, retained
        rclient.hset(camera_hash(cam), "updated_ns", time.time_ns() - 10**12)
        wait_for(lambda: any(m.payload == b"offline" for m in late.on(f"{p}/{cam}/status")), 10, "never offline")
    finally:
        rclient.delete(camera_hash(cam), evidence_key(alert_id))


def test_webhook_is_signed_and_delivered(receiver, notify_settings, run_notify, rclient, unique_name) -> None:  # noqa: ANN001
    from vigil.services.notify.core import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

    settings = notify_settings([{"name": "ops", "url": receiver.url("/hook?token=abc")}], mqtt_enabled=False)
    latencies = metric("vigil_notify_delivery_seconds_count", channel="webhook")
    run_notify(settings)
    cam = unique_name("cam")
    entry = _xadd(rclient, settings, alert_json(cam))
    [hit] = wait_for(lambda: receiver.at("/hook"), 10, "the webhook got nothing")
    assert verify_signature(SECRET.encode(), hit.body, hit.headers[TIMESTAMP_HEADER], hit.headers[SIGNATURE_HEADER],
                            now_s=int(time.time()))  # fmt: skip
    assert not verify_signature(b"another-secret-of-16", hit.body, hit.headers[TIMESTAMP_HEADER],
                                hit.headers[SIGNATURE_HEADER], now_s=int(time.time()))  # fmt: skip
    assert hit.headers["X-Vigil-Delivery"] == entry and payload(hit)["camera"] == cam
    wait_for(lambda: _pending(rclient, settings) == 0, 5, "the entry was never acknowledged")
    assert metric("vigil_notify_delivery_seconds_count", channel="webhook") > latencies


def test_entries_left_by_a_dead_consumer_are_claimed(receiver, notify_settings, run_notify, rclient, unique_name) -> None:  # noqa: ANN001
    settings = notify_settings([{"name": "ops", "url": receiver.url("/hook")}], mqtt_enabled=False, claim_idle_s=1.0)
    rclient.xgroup_create(settings.alerts_stream, settings.alerts_group, id="0", mkstream=True)
    entry = _xadd(rclient, settings, alert_json(unique_name("cam")))
    rclient.xreadgroup(settings.alerts_group, "notify-2", {settings.alerts_stream: ">"})  # read, never acknowledged
    time.sleep(1.1)
    run_notify(settings)
    [hit] = wait_for(lambda: receiver.at("/hook"), 10, "the stale entry was not claimed")
    assert hit.headers["X-Vigil-Delivery"] == entry
    wait_for(lambda: _pending(rclient, settings) == 0, 5, "the claimed entry was never acknowledged")


def test_retries_then_delivered_and_always_500_dead_lettered(
    receiver, notify_settings, run_notify, rclient, unique_name  # noqa: ANN001
) -> None:  # fmt: skip
    receiver.scripts = {"/flaky": [500, 500, 200], "/down": [500]}
    settings = notify_settings([{"name": "flaky", "url": receiver.url("/flaky")},
                                {"name": "down", "url": receiver.url("/down"), "max_attempts": 3}], mqtt_enabled=False)  # fmt: skip
    retried, dead = metric("vigil_notify_retried_total", channel="webhook", target="flaky"), metric(
        "vigil_notify_dead_lettered_total", channel="webhook", target="down", reason="exhausted")
    run_notify(settings)
    text = alert_json(unique_name("cam"))
    entry = _xadd(rclient, settings, text)
    [letter] = wait_for(lambda: _dead(rclient, settings), 10, "no dead letter")
    assert len(receiver.at("/down")) == 3
    assert (letter["channel"], letter["target"], letter["entry_id"], letter["attempts"]) == ("webhook", "down", entry, "3")
    assert letter["reason"].startswith("exhausted: HTTP 500 after 3 attempts") and letter["truncated"] == "0"
    assert payload(receiver.at("/down")[0]) == __import__("json").loads(letter["payload"])
    wait_for(lambda: len(receiver.at("/flaky")) == 3, 5, "the flaky webhook was not retried twice")
    wait_for(lambda: _pending(rclient, settings) == 0, 5, "the entry was never acknowledged")
    assert metric("vigil_notify_retried_total", channel="webhook", target="flaky") == retried + 2
    assert metric("vigil_notify_dead_lettered_total", channel="webhook", target="down", reason="exhausted") == dead + 1
    assert "token" not in letter["reason"] and SECRET not in str(letter)

    # the receiver is back: `vigil notify replay` re-sends the dead letter and deletes it
    from vigil.services.notify.replay import replay_dead_letters

    receiver.scripts["/down"] = [200]
    report = replay_dead_letters(settings, "down", 10, dry_run=False)
    assert (len(report.sent), report.failed, _dead(rclient, settings)) == (1, [], [])
    assert receiver.at("/down")[-1].body == receiver.at("/down")[0].body


def test_malformed_entries_are_dead_lettered_and_the_service_goes_on(
    notify_settings, run_notify, subscribe, rclient, unique_name  # noqa: ANN001
) -> None:  # fmt: skip
    settings = notify_settings()
    sub = subscribe([f"{settings.topic_prefix}/alerts"])
    running = run_notify(settings)
    _xadd(rclient, settings, "not json")
    _xadd(rclient, settings, alert_json(unique_name("cam")).replace('"open"', '"boom"'))
    _xadd(rclient, settings, other="field")
    good = _xadd(rclient, settings, alert_json(unique_name("cam")))
    wait_for(lambda: sub.on(f"{settings.topic_prefix}/alerts"), 10, "the good alert was not delivered")
    letters = wait_for(lambda: d if len(d := _dead(rclient, settings)) == 3 else None, 5, "not 3 dead letters")
    assert {d["channel"] for d in letters} == {"input"} and letters[0]["payload"] == "not json"
    assert payload(sub.on(f"{settings.topic_prefix}/alerts")[0])["entry_id"] == good
    assert running.thread.is_alive()
    wait_for(lambda: _pending(rclient, settings) == 0, 5, "entries left unacknowledged")


def test_slow_webhook_delays_neither_mqtt_nor_other_webhooks(
    receiver, notify_settings, run_notify, subscribe, rclient, unique_name  # noqa: ANN001
) -> None:  # fmt: skip
    receiver.delays = {"/slow": 4.0}
    settings = notify_settings([{"name": "slow", "url": receiver.url("/slow"), "concurrency": 1, "queue_size": 1},
                                {"name": "fast", "url": receiver.url("/fast")}], flush_timeout_s=0.5)  # fmt: skip
    sub = subscribe([f"{settings.topic_prefix}/alerts"])
    dropped = metric("vigil_notify_dropped_total", channel="webhook", target="slow")
    run_notify(settings)
    _xadd(rclient, settings, alert_json(unique_name("cam"), 1))
    wait_for(lambda: receiver.at("/slow"), 5, "the slow webhook got nothing")  # its one thread is now busy for 4 s
    for seq in range(2, 5):
        _xadd(rclient, settings, alert_json(unique_name("cam"), seq))
    wait_for(lambda: len(sub.on(f"{settings.topic_prefix}/alerts")) == 4, 8, "MQTT did not get 4 alerts")
    wait_for(lambda: len(receiver.at("/fast")) == 4, 8, "the fast webhook did not get 4 alerts")
    # all of them arrived while the slow receiver still held its first request (it answers after 4 s)
    slow_answer = receiver.at("/slow")[0].t_ns + 4 * 10**9
    assert max(m.t_ns for m in sub.on(f"{settings.topic_prefix}/alerts")) < slow_answer
    assert max(h.t_ns for h in receiver.at("/fast")) < slow_answer
    # one POST in flight, the next one queued: the last two are dropped to the dead letters, counted
    letters = wait_for(lambda: [d for d in _dead(rclient, settings) if d["reason"].startswith("queue_full")], 5,
                       "no queue_full dead letter")  # fmt: skip
    assert len(letters) == 2 and metric("vigil_notify_dropped_total", channel="webhook", target="slow") == dropped + 2


def test_shutdown_keeps_undelivered_entries_pending_and_a_restart_delivers_them(
    receiver, notify_settings, run_notify, rclient, unique_name  # noqa: ANN001
) -> None:  # fmt: skip
    receiver.scripts = {"/hook": [503]}
    settings = notify_settings([{"name": "ops", "url": receiver.url("/hook"), "max_attempts": 100,
                                 "backoff_s": 0.2, "backoff_max_s": 0.2}], mqtt_enabled=False, flush_timeout_s=0.5)  # fmt: skip
    first = run_notify(settings)
    entry = _xadd(rclient, settings, alert_json(unique_name("cam")))
    wait_for(lambda: receiver.at("/hook"), 5, "no attempt")
    t0 = time.monotonic()
    first.stop()
    assert time.monotonic() - t0 < 3.0, "shutdown took longer than its flush timeout"
    assert _pending(rclient, settings) == 1 and _dead(rclient, settings) == []  # neither acked nor dead-lettered
    receiver.scripts["/hook"] = [200]
    run_notify(settings)
    wait_for(lambda: _pending(rclient, settings) == 0, 10, "the restarted service did not deliver the pending entry")
    assert receiver.at("/hook")[-1].headers["X-Vigil-Delivery"] == entry


def test_a_wrong_mqtt_password_stops_the_start_without_showing_it(notify_settings, tmp_path) -> None:  # noqa: ANN001
    import pytest

    from vigil.services.notify.transport import build_service
    from vigil.shared.runner import StartupError

    wrong = tmp_path / "pw"
    wrong.write_text("wrong-password-4f1c9e")
    with pytest.raises(StartupError) as err:
        build_service(notify_settings(mqtt_password_file=wrong))
    assert "refused" in str(err.value) and "wrong-password-4f1c9e" not in str(err.value)


def test_an_entry_being_retried_is_not_claimed_by_another_replica(
    receiver, notify_settings, run_notify, rclient, unique_name  # noqa: ANN001
) -> None:  # fmt: skip
    receiver.scripts = {"/hook": [503]}
    settings = notify_settings([{"name": "ops", "url": receiver.url("/hook"), "max_attempts": 100, "backoff_s": 0.2,
                                 "backoff_max_s": 0.2}], mqtt_enabled=False, claim_idle_s=4.0, flush_timeout_s=0.2)  # fmt: skip
    _xadd(rclient, settings, alert_json(unique_name("cam")))
    t0 = time.monotonic()
    run_notify(settings)  # reads the entry at once; keeps it fresh every claim_idle_s / 2 = 2 s while it retries
    wait_for(lambda: len(receiver.at("/hook")) >= 2, 5, "no retry")
    time.sleep(max(0.0, t0 + 3.2 - time.monotonic()))
    # a replica claiming entries idle for 2.5 s finds none (without the refresh this one would be 3.2 s idle)
    _, claimed, _ = rclient.xautoclaim(settings.alerts_stream, settings.alerts_group, "notify-2", min_idle_time=2500)
    assert claimed == [] and _pending(rclient, settings) == 1


def test_an_unreachable_broker_dead_letters_after_the_deadline(notify_settings, run_notify, rclient, unique_name) -> None:  # noqa: ANN001
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = notify_settings(mqtt_port=port, mqtt_connect_timeout_s=0.2, mqtt_deadline_s=1.0)
    running = run_notify(settings)
    assert not running.service.ready()
    entry = _xadd(rclient, settings, alert_json(unique_name("cam")))
    letters = wait_for(lambda: d if len(d := _dead(rclient, settings)) == 2 else None, 10, "no no_puback dead letters")
    assert {(d["channel"], d["entry_id"], d["reason"]) for d in letters} == {("mqtt", entry, "no_puback: no PUBACK within 1s")}
    assert {d["topic"] for d in letters} == {f"{settings.topic_prefix}/alerts",
                                             f"{settings.topic_prefix}/{letters[0]['camera_id']}/alert"}  # fmt: skip
    wait_for(lambda: _pending(rclient, settings) == 0, 5, "the entry was never acknowledged")


def test_a_suppressed_alert_is_kept_in_the_record_but_not_notified(receiver, notify_settings, run_notify, rclient,
                                                                   unique_name) -> None:  # noqa: ANN001
    settings = notify_settings([{"name": "ops", "url": receiver.url("/supp")}], mqtt_enabled=False)
    suppressed = metric("vigil_notify_alert_entries_total", result="suppressed")
    run_notify(settings)
    cam = unique_name("cam")
    _xadd(rclient, settings, alert_json(cam, seq=1, kind="false_positive", kind_confidence=0.97, kind_labels=40,
                                        suppressed=True))  # fmt: skip
    _xadd(rclient, settings, alert_json(cam, seq=2, kind="bike", kind_confidence=0.95, kind_labels=40))
    [hit] = wait_for(lambda: receiver.at("/supp"), 10, "the unsuppressed alert was not delivered")
    assert payload(hit)["camera"] == cam and payload(hit)["alert"]["kind"] == "bike"
    wait_for(lambda: _pending(rclient, settings) == 0, 5, "the suppressed entry was never acknowledged")
    time.sleep(0.5)
    assert len(receiver.at("/supp")) == 1 and metric("vigil_notify_alert_entries_total", result="suppressed") == suppressed + 1
    assert any(b"false_positive" in f[b"json"] for _, f in rclient.xrange(settings.alerts_stream))  # still in the record
