"""A brand-new camera whose model is calibrated alerts in its first minute (`vigil scorer` on real Kafka and Redis);
one without a calibration learns online and says so."""

from __future__ import annotations

import time
import uuid

import pytest
from conftest import wait_for

from vigil.model.alerting import Observation, calibrate
from vigil.model.calibrate import write_camera_calibration
from vigil.services.scorer.alerts import history
from vigil.shared.kafka import make_producer
from vigil.shared.redis_keys import camera_hash
from vigil.shared.schemas import ScoreMessage
from vigil.shared.scorer_params import ScoringParams
from vigil.tools.simulator import score_messages, scripted

pytestmark = pytest.mark.integration


def _calibration_file(tmp_path, camera: str):  # noqa: ANN001, ANN202
    """The camera's own calibration, as `vigil calibrate --camera` writes it, from normal footage."""
    normal = [ScoreMessage.decode(b) for b in score_messages(camera, scripted(1500, [], seed=21))]
    # margin +1: scripted noise is independent frame to frame (see test_scorer_math._calibration)
    cal = calibrate([[Observation.from_message(m) for m in normal]], ScoringParams(threshold_margin=1.0), cell_px=8)
    return write_camera_calibration(tmp_path / "calibrations" / f"{camera}.json", camera, "sim", "1", cal, "test")


def test_a_new_calibrated_camera_alerts_in_its_first_minute(
    scorer_processes, topic_settings, kafka_settings, redis_client, tmp_path, monkeypatch,
) -> None:  # noqa: ANN001  # fmt: skip
    cam, other = f"new-{uuid.uuid4().hex[:8]}", f"unk-{uuid.uuid4().hex[:8]}"
    _calibration_file(tmp_path, cam)
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(f"cameras:\n  - {{id: {cam}, url: rtsp://h/a, calibration: calibrations/{cam}.json}}\n"
                       f"  - {{id: {other}, url: rtsp://h/b}}\n")
    monkeypatch.setenv("VIGIL_CAMERAS_FILE", str(cameras))
    since = int(time.time() * 1000) - 1
    t0 = time.time_ns()
    # The camera's very first frames: 10 warm-up frames, then 15 s of normal scene, then a bike for 5 s.
    producer = make_producer(kafka_settings)
    for c in (cam, other):
        for value in score_messages(c, scripted(400, [(150, 199)]), warmup_frames=10, t0_ns=t0):
            producer.send(topic_settings.scores, key=c.encode(), value=value)
    producer.flush()
    procs = scorer_processes()  # the production defaults: a camera without calibration learns 3000 frames
    procs.start()
    wait_for(lambda: redis_client.hget(camera_hash(cam), "last_seq") == b"399", 60, "all scores", procs.logs)
    opened = [a for a in history(redis_client, since, cam, limit=1000) if a.event == "open"]
    assert len(opened) == 1, [(a.alert_id, a.event, a.start_seq) for a in opened]
    alert = opened[0]
    assert 150 <= alert.start_seq <= 155 and alert.scoring_mode == "calibrated"
    assert (alert.trigger_capture_ns - t0) / 1e9 < 60  # within the camera's first minute
    assert redis_client.hget(camera_hash(cam), "scoring_mode") == b"calibrated"
    wait_for(lambda: redis_client.hget(camera_hash(other), "last_seq") == b"399", 30, "the other camera", procs.logs)
    assert history(redis_client, since, other, limit=1000) == []
    h = redis_client.hgetall(camera_hash(other))
    assert h[b"scoring_mode"] == b"online" and h[b"status"] == b"learning"
