"""`vigil scorer` as a subprocess on real Kafka and Redis: alerts out, DLQ, kill -9 and restart."""

from __future__ import annotations

import time
import uuid

from conftest import wait_for

from vigil.services.scorer.alerts import history
from vigil.shared.kafka import make_producer
from vigil.shared.redis_keys import camera_hash
from vigil.shared.schemas import Alert, DeadLetter
from vigil.tools.simulator import score_messages, scripted

FAST = {"grace_frames": 100, "fading_factor": 0.03, "k": 3, "n": 5, "m": 5, "min_duration_s": 0.2, "cooldown_s": 1.0, "update_interval_s": 0.5, "session_timeout_s": 6}


def _alerts(client, cam: str, since_ms: int) -> list[Alert]:  # noqa: ANN001
    return history(client, since_ms, cam, limit=100_000)


def _send(producer, topic: str, cam: str, msgs: list[bytes]) -> None:  # noqa: ANN001
    for m in msgs:
        producer.send(topic, key=cam.encode(), value=m)
    producer.flush()


def _last_seq(client, cam: str) -> int:  # noqa: ANN001
    v = client.hget(camera_hash(cam), "last_seq")
    return -1 if v is None else int(v)


def test_scores_in_alerts_out_and_dead_letters(scorer_processes, topic_settings, kafka_settings, redis_client) -> None:  # noqa: ANN001
    from kafka import KafkaConsumer

    cam, quiet = f"k-{uuid.uuid4().hex[:8]}", f"kq-{uuid.uuid4().hex[:8]}"
    since = int(time.time() * 1000) - 1
    producer = make_producer(kafka_settings)
    t0 = time.time_ns()
    _send(producer, topic_settings.scores, cam, score_messages(cam, scripted(700, [(400, 459)]), heatmap=True, warmup_frames=10, t0_ns=t0))
    _send(producer, topic_settings.scores, quiet, score_messages(quiet, scripted(700, [], seed=5), t0_ns=t0))
    _send(producer, topic_settings.scores, "junk", [b"not a score"])
    procs = scorer_processes(**FAST)
    procs.start()
    wait_for(lambda: _last_seq(redis_client, cam) == 699 and _last_seq(redis_client, quiet) == 699, 60, "all scores", procs.logs)
    alerts = _alerts(redis_client, cam, since)
    kinds = [a.event for a in alerts]
    assert kinds[0] == "open" and kinds[-1] == "close" and set(kinds[1:-1]) <= {"update"}, [(a.alert_id, a.event, a.start_seq, a.end_seq) for a in alerts]
    start = alerts[0].start_seq  # the first frame whose 5-frame mean score is above
    assert 400 <= start <= 402 and {(a.alert_id, a.camera_id) for a in alerts} == {(Alert.make_id(cam, start, t0 + start * 10**8), cam)}
    assert 459 <= alerts[-1].end_seq <= 465 and alerts[-1].start_ns == t0 + start * 10**8
    assert _alerts(redis_client, quiet, since) == []

    consumer = KafkaConsumer(topic_settings.dlq, auto_offset_reset="earliest", consumer_timeout_ms=15_000,
                             **kafka_settings.kafka_python_kwargs())  # fmt: skip
    letter = DeadLetter.decode(next(iter(consumer)).value)
    consumer.close()
    assert letter.source_topic == topic_settings.scores and letter.payload == b"not a score" and letter.service == "scorer"


def test_kill_and_restart_resumes_thresholds_without_loss_or_duplicates(
    scorer_processes, topic_settings, kafka_settings, redis_client,
) -> None:  # noqa: ANN001  # fmt: skip
    cam = f"r-{uuid.uuid4().hex[:8]}"
    since = int(time.time() * 1000) - 1
    # grace 300: a scorer that lost its state at the restart (>= seq 500) would be blind until >= 800,
    # so the alert at 620 proves that the thresholds resumed.
    msgs = score_messages(cam, scripted(1000, [(400, 439), (620, 659)]), t0_ns=time.time_ns())
    producer = make_producer(kafka_settings)
    procs = scorer_processes(**(FAST | {"grace_frames": 300}))
    _send(producer, topic_settings.scores, cam, msgs[:500])
    first = procs.start()
    wait_for(lambda: _last_seq(redis_client, cam) == 499, 60, "part A", procs.logs)
    threshold_before = float(redis_client.hget(camera_hash(cam), "threshold"))
    _send(producer, topic_settings.scores, cam, msgs[500:640])
    time.sleep(0.3)
    procs.kill9(first)  # mid-stream (the state may or may not have reached the changelog)
    _send(producer, topic_settings.scores, cam, msgs[640:])
    procs.start()
    wait_for(lambda: _last_seq(redis_client, cam) == 999, 90, "all scores after the restart", procs.logs)
    alerts = _alerts(redis_client, cam, since)
    summary = [(a.start_seq // 10, a.event) for a in alerts if a.event != "update"]
    assert summary == [(40, "open"), (40, "close"), (62, "open"), (62, "close")], summary
    updates = [(a.alert_id, a.peak_score) for a in alerts if a.event == "update"]
    assert len(updates) == len(set(updates))
    h = redis_client.hgetall(camera_hash(cam))
    assert h[b"status"] == b"normal" and abs(float(h[b"threshold"]) - threshold_before) < 0.01


def test_scorer_reset_makes_a_camera_relearn(scorer_processes, topic_settings, kafka_settings, redis_client) -> None:  # noqa: ANN001
    from vigil.services.scorer.settings import ScorerSettings
    from vigil.services.scorer.transport import reset_cameras

    cam = f"z-{uuid.uuid4().hex[:8]}"
    msgs = score_messages(cam, scripted(300, []), t0_ns=time.time_ns())
    producer = make_producer(kafka_settings)
    procs = scorer_processes(**FAST)
    _send(producer, topic_settings.scores, cam, msgs[:150])
    first = procs.start()
    wait_for(lambda: _last_seq(redis_client, cam) == 149, 60, "the first 150 scores", procs.logs)
    assert redis_client.hget(camera_hash(cam), "status") == b"normal"  # past its 100 grace frames
    time.sleep(1.5)  # the state reaches the changelog
    procs.kill9(first)
    app_id = procs.env["VIGIL_SCORER_APP_ID"]
    reset_cameras(ScorerSettings(app_id=app_id, kafka=kafka_settings), [cam])
    _send(producer, topic_settings.scores, cam, msgs[150:200])
    procs.start()
    wait_for(lambda: _last_seq(redis_client, cam) == 199, 90, "scores after the reset", procs.logs)
    # A restored state would say "normal"; a forgotten one learns again for 100 frames.
    assert redis_client.hget(camera_hash(cam), "status") == b"learning", procs.logs()


def test_scorer_reset_before_any_scorer_ran_creates_nothing(kafka_settings) -> None:  # noqa: ANN001
    from vigil.services.scorer.settings import ScorerSettings
    from vigil.services.scorer.transport import reset_cameras
    from vigil.shared.kafka import make_admin

    topic = reset_cameras(ScorerSettings(app_id=f"never-ran-{uuid.uuid4().hex[:8]}", kafka=kafka_settings), ["cam-x"])
    admin = make_admin(kafka_settings)
    try:  # an auto-created changelog would have the broker's partition count, not the scorer's
        assert topic not in admin.list_topics()
    finally:
        admin.close()
