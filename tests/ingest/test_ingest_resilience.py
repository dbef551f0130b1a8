"""Resilience against real servers: a camera outage, bad inputs, credentials never shown."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from conftest import decode_frames, decode_status, running_service, write_cameras
from prometheus_client import REGISTRY, generate_latest

from vigil.shared.cameras import load_cameras
from vigil.shared.schemas import DeadLetter

pytestmark = pytest.mark.integration

PASSWORD = "s3cr3t-Pw"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_outage_reconnects_and_other_cameras_continue(
    tmp_path, clips, rtsp_server, ingest_settings, topic_reader, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.DEBUG, logger="vigil")
    monkeypatch.setenv("CAM_USER", "admin")
    monkeypatch.setenv("CAM_PASS", PASSWORD)
    flaky = rtsp_server([clips["a60"]], loop=True)
    steady = rtsp_server([clips["b30"]], loop=True)
    flaky_url = flaky.urls[0].replace("rtsp://", "rtsp://${CAM_USER}:${CAM_PASS}@")
    cams = write_cameras(
        tmp_path / "cameras.yaml",
        [{"id": "flaky", "url": flaky_url}, {"id": "steady", "url": steady.urls[0]}],
        defaults={"reconnect": {"initial_s": 0.2, "max_s": 1.0}},
    )
    frames = topic_reader(ingest_settings.topics.frames)
    status = topic_reader(ingest_settings.topics.camera_status)
    reconnects_before = _metric("vigil_ingest_reconnects_total", camera="flaky")

    with running_service(ingest_settings, load_cameras(cams)):
        assert frames.until(lambda r: len(decode_frames(r, "flaky")) >= 10, timeout_s=15)
        flaky.stop()
        outage_start = time.time_ns()
        assert status.until(lambda r: "reconnecting" in [s.state for s in decode_status(r, "flaky")], timeout_s=10)
        time.sleep(1.5)  # refused connections meanwhile: more attempts with backoff
        flaky.start()
        outage_end = time.time_ns()
        n_before = len(decode_frames(frames.records, "flaky"))

        def resumed(records: list) -> bool:
            return len(decode_frames(records, "flaky")) >= n_before + 10

        assert frames.until(resumed, timeout_s=15), "frames did not resume after the server came back"
        status.until(lambda r: decode_status(r, "flaky")[-1].state == "online", timeout_s=5)

    flaky_frames = decode_frames(frames.records, "flaky")
    states = [s.state for s in decode_status(status.records, "flaky")]
    assert states[0] == "online" and "reconnecting" in states
    assert states[states.index("reconnecting") :].count("online") >= 1, states
    attempts = [s.attempt for s in decode_status(status.records, "flaky") if s.state == "reconnecting"]
    assert attempts[0] == 1 and max(attempts) >= 2, attempts
    assert _metric("vigil_ingest_reconnects_total", camera="flaky") - reconnects_before >= 2
    # the flaky camera: sequence numbers keep increasing across the outage, its session changed
    assert [f.seq for f in flaky_frames] == sorted(f.seq for f in flaky_frames)
    assert len({f.seq for f in flaky_frames}) == len(flaky_frames)
    assert flaky_frames[-1].session > flaky_frames[0].session
    # the steady camera never stopped: one session, and frames captured during the outage
    steady_frames = decode_frames(frames.records, "steady")
    assert {f.session for f in steady_frames} == {steady_frames[0].session}
    during = [f for f in steady_frames if outage_start <= f.capture_ns <= outage_end]
    assert len(during) >= 10, f"only {len(during)} steady frames during the outage"
    assert "reconnecting" not in [s.state for s in decode_status(status.records, "steady")]
    # credentials: never in a log line, a status reason, or a metric
    reasons = " ".join(s.reason for s in decode_status(status.records))
    assert PASSWORD not in caplog.text and PASSWORD not in reasons
    assert PASSWORD.encode() not in generate_latest(REGISTRY)


def test_bad_inputs_are_reported_and_others_keep_running(
    tmp_path, clips, rtsp_server, ingest_settings, topic_reader
) -> None:
    data = bytearray(clips["a60"].read_bytes())
    for off in range(len(data) // 3, 2 * len(data) // 3, 25_000):  # garbage in the middle, then cut short
        data[off : off + 300] = bytes(range(256)) + bytes(44)
    corrupt = tmp_path / "corrupt.mkv"
    corrupt.write_bytes(bytes(data[: int(len(data) * 0.8)]))
    garbage = tmp_path / "garbage.mkv"
    garbage.write_bytes(bytes(i * 7 % 251 for i in range(50_000)))
    good = rtsp_server([clips["a30"]])
    cams = write_cameras(
        tmp_path / "cameras.yaml",
        [
            {"id": "good", "url": good.urls[0]},
            {"id": "corrupt", "url": str(corrupt)},
            {"id": "garbage", "url": str(garbage)},
            {"id": "refused", "url": f"rtsp://127.0.0.1:{_free_port()}/none", "reconnect": {"initial_s": 0.2, "max_s": 0.5}},
            {"id": "typo", "url": good.urls[0], "fsp": 10},
            {"id": "nofps", "url": good.urls[0], "fps": 0},
            {"id": "good", "url": str(corrupt)},
        ],
    )
    cameras = load_cameras(cams)
    assert {c.id for c in cameras.cameras} == {"good", "corrupt", "garbage", "refused"}
    frames = topic_reader(ingest_settings.topics.frames)
    status = topic_reader(ingest_settings.topics.camera_status)
    dlq = topic_reader(ingest_settings.topics.dlq)
    corrupt_before = _metric("vigil_ingest_frames_dropped_total", camera="corrupt", reason="corrupt")

    with running_service(ingest_settings, cameras) as service:
        assert frames.until(lambda r: len(decode_frames(r, "good")) >= 30, timeout_s=20)
        assert status.until(
            lambda r: {"garbage", "corrupt"} <= {s.camera_id for s in decode_status(r) if s.state == "offline"}
            and any(s.attempt >= 2 for s in decode_status(r, "refused")),
            timeout_s=10,
        )
        assert all(r.thread.is_alive() for r in service.readers if r.cam.id in ("good", "refused"))

    good_frames = decode_frames(frames.records, "good")
    first = good_frames[0].seq
    assert [f.seq for f in good_frames][:30] == list(range(first, first + 30))
    corrupt_frames = decode_frames(frames.records, "corrupt")
    assert 0 < len(corrupt_frames) < 60
    assert _metric("vigil_ingest_frames_dropped_total", camera="corrupt", reason="corrupt") > corrupt_before
    by_cam = {}
    for s in decode_status(status.records):
        by_cam.setdefault(s.camera_id, []).append(s)
    assert by_cam["garbage"][0].state == "offline" and "Invalid data" in by_cam["garbage"][0].reason
    assert "end of file after" in by_cam["corrupt"][-1].reason or "end of file" in by_cam["corrupt"][-1].reason
    refused = [s for s in by_cam["refused"] if s.state == "reconnecting"]
    assert refused and "Connection refused" in refused[0].reason
    assert by_cam["typo"][0].state == "offline" and "fsp: unknown key" in by_cam["typo"][0].reason
    assert "fps" in by_cam["nofps"][0].reason and "greater than 0" in by_cam["nofps"][0].reason
    dlq.until(lambda r: len(r) >= 3, timeout_s=5)
    letters = [DeadLetter.decode(r.value) for r in dlq.records]
    errors = {letter.camera_id: letter.error for letter in letters}
    assert set(errors) == {"typo", "nofps", "good"}
    assert "duplicate camera id" in errors["good"]
    assert all(letter.payload for letter in letters)  # the rejected YAML entry
