"""The scorer's per-camera state: event rules, order rule, the scoring core through ScorerState, safe
serialisation, zones from the cameras file, settings."""

from __future__ import annotations

import json
import pickle

import pytest

from vigil.model.alerting import calibrate
from vigil.model.events import EventParams, EventTracker, Frame
from vigil.services.scorer.settings import ScorerSettings
from vigil.services.scorer.state import CameraParams, ScorerState
from vigil.shared.schemas import ScoreMessage
from vigil.shared.scorer_params import ScoringParams
from vigil.tools.simulator import PATHS, score_messages, scripted

FAST = ScoringParams(grace_frames=100, fading_factor=0.03)


def _msgs(cam: str, sim, **kw) -> list[ScoreMessage]:  # noqa: ANN001
    return [ScoreMessage.decode(b) for b in score_messages(cam, sim, **kw)]


# ---------------------------------------------------------------------------------------------- events
def _run(tracker: EventTracker, flags: list[int], fps: float = 10.0, scores: list[float] | None = None) -> list:
    out = []
    for i, f in enumerate(flags):
        s = scores[i] if scores else (0.999 if f else 0.1)
        out += [(c.kind, c.start_seq, c.end_seq, i) for c in tracker.step(Frame(i, int(i / fps * 1e9), s, bool(f), 0.99))]
    return out


def test_k_of_n_open_and_m_close() -> None:
    t = EventTracker(EventParams(k=3, n=5, m=4, min_duration_s=0, cooldown_s=0))
    flags = [0, 1, 0, 0, 0, 1, 1] + [0, 1, 0, 1, 0, 1] + [0] * 10 + [1, 1, 1, 1, 0, 1] + [0] * 4
    assert _run(t, flags) == [("open", 5, None, 8), ("close", 5, 12, 16), ("open", 23, None, 25), ("close", 23, 28, 32)]


def test_min_duration_drops_blips_and_cooldown_suppresses() -> None:
    t = EventTracker(EventParams(k=2, n=2, m=2, min_duration_s=0.5, cooldown_s=0))
    assert _run(t, [1, 1, 1, 0, 0] + [0] * 5) == []  # lasted 0.2 s < 0.5 s
    t = EventTracker(EventParams(k=2, n=2, m=2, min_duration_s=0, cooldown_s=2.0))
    flags = [1, 1, 0, 0] + [1, 1, 0, 0] + [0] * 20 + [1, 1]  # second burst within 2 s of the close
    kinds = [(k, s) for k, s, _, _ in _run(t, flags)]
    assert kinds == [("open", 0), ("close", 0), ("open", 28)]


def test_max_length_reannounces_and_updates_are_throttled() -> None:
    t = EventTracker(EventParams(k=1, n=1, m=2, min_duration_s=0, max_length_s=3.0, update_interval_s=1.0))
    n = 50
    scores = [0.99 + 0.0001 * i for i in range(n)]  # peak rises every frame
    ev = _run(t, [1] * n, scores=scores)
    kinds = [e[0] for e in ev]
    assert kinds.count("open") == 2 and kinds.count("close") == 1  # 5 s at 10 fps, max 3 s
    closed = next(e for e in ev if e[0] == "close")
    reopen = [e for e in ev if e[0] == "open"][1]
    assert closed[3] == reopen[3] == 30 and reopen[1] == 30
    updates = [e[3] for e in ev if e[0] == "update"]
    assert updates and all(b - a >= 10 for a, b in zip(updates, updates[1:], strict=False))


# ------------------------------------------------------------------------------------- state / order
def test_order_rule_duplicates_late_and_restart() -> None:
    st = ScorerState("cam-o")
    assert st.admit(5, 500) == "ok"
    assert st.admit(5, 500) == "duplicate"
    assert st.admit(3, 300) == "late"
    assert st.admit(7, 700) == "ok"  # gap: fine
    assert st.admit(0, 900) == "restart"  # numbering restarted, newer capture time
    assert st.last_seq == 0



def test_state_learns_online_then_alerts_once_and_ignores_warmup() -> None:
    sim = scripted(600, [(50, 80), (400, 449)])
    msgs = _msgs("cam-s", sim, warmup_frames=20)
    st = ScorerState("cam-s", ScorerSettings(scoring=FAST).camera_params("cam-s"))
    results = [st.step(m) for m in msgs]
    assert {r.status for r in results[:20]} == {"warmup"} and results[20].status == "learning"
    assert results[200].mode == "online" and results[200].status == "normal"
    changes = [p.alert for r in results for p in r.alerts]
    start = changes[0].start_seq  # the first frame whose smoothed score is above
    ms = msgs[start].capture_ns // 10**6
    assert 400 <= start <= 402
    assert [(a.event, a.alert_id) for a in changes if a.event != "update"] == [("open", f"cam-s:{start}:{ms}"),
                                                                                 ("close", f"cam-s:{start}:{ms}")]
    close = changes[-1]
    assert 449 <= close.end_seq <= 456 and close.start_ns == msgs[start].capture_ns
    assert close.end_ns == msgs[close.end_seq].capture_ns and close.scoring_mode == "online"
    opened = changes[0]
    assert opened.snapshot_key == f"vigil:snapshot:cam-s:{start}:{ms}" and st.outbox[0].snapshot_jpeg[:2] == b"\xff\xd8"
    r, c = PATHS[(start // 30) % len(PATHS)]  # where the simulator put the anomaly at that frame
    assert opened.box == (c / 6, r / 4, (c + 2) / 6, (r + 2) / 4)
    assert opened.box_px == (c * 8, r * 8, (c + 2) * 8, (r + 2) * 8)
    assert all(st.step(m).admission == "duplicate" for m in msgs[-1:])  # replayed last score


def _calibration(cam: str, n: int = 1500) -> object:
    normal = _msgs(cam, scripted(n, [], seed=11))
    from vigil.model.alerting import Observation

    # margin +1: the scripted noise is independent frame to frame, so its smoothed mean is much smoother than
    # real scores, and the default margin (-1 below the largest normal score, chosen on autocorrelated data)
    # would be too tight for it
    return calibrate([[Observation.from_message(m) for m in normal]], ScoringParams(threshold_margin=1.0), cell_px=8)


def test_a_calibrated_camera_scores_from_its_first_frame_after_warmup() -> None:
    cal = _calibration("cam-c")
    msgs = _msgs("cam-c", scripted(200, [(30, 60)], seed=2), warmup_frames=10)
    st = ScorerState("cam-c", CameraParams(), resolve=lambda camera, version: cal)
    results = [st.step(m) for m in msgs]
    assert results[10].status == "normal" and results[10].mode == "calibrated"
    opens = [p.alert for r in results for p in r.alerts if p.alert.event == "open"]
    assert len(opens) == 1 and 30 <= opens[0].trigger_seq <= 40, [(a.trigger_seq, a.peak_score) for a in opens]


def test_json_state_roundtrip_continues_identically() -> None:
    cal = _calibration("cam-j")
    msgs = _msgs("cam-j", scripted(300, [(100, 140), (200, 260)], seed=4))
    a = ScorerState("cam-j", CameraParams(), resolve=lambda c, v: cal)
    for m in msgs[:120]:  # stop inside an event, with alerts unconfirmed
        a.step(m)
    data = a.dumps()
    assert data[:1] == b"{" and json.loads(data)["version"] == 2
    b = ScorerState.loads(data, "cam-j", CameraParams(), lambda c, v: cal)
    for m in msgs[120:]:
        ra, rb = a.step(m), b.step(m)
        assert (ra.status, ra.score, [p.alert.alert_id for p in ra.alerts]) == (rb.status, rb.score, [p.alert.alert_id for p in rb.alerts])
    assert [p.dedupe for p in a.outbox] == [p.dedupe for p in b.outbox]


@pytest.mark.parametrize("data", [
    pickle.dumps({"version": 2}),  # a pickle is never unpickled
    b'{"version": 2, "camera_id": "cam-x", "last_seq": NaN}',
    b'{"version": 1}',
    b"\xff\xfe",
    json.dumps({"version": 2, "camera_id": "other"}).encode(),
])  # fmt: skip
def test_forged_or_foreign_state_bytes_are_rejected(data: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError, UnicodeDecodeError)):
        ScorerState.loads(data, "cam-x", CameraParams(), lambda c, v: None)


def test_a_huge_outbox_is_trimmed_to_fit_one_kafka_record() -> None:
    st = ScorerState("cam-big", CameraParams(outbox_limit=100_000, scoring=FAST))
    msgs = _msgs("cam-big", scripted(600, [(200, 230)]))
    for m in msgs:
        st.step(m)
    big = st.outbox[0]
    st.outbox.extend([big] * 5000)
    data = st.dumps()
    assert len(data) <= 900_000 and st.outbox_dropped > 0


def test_zones_from_the_cameras_file_silence_the_excluded_place_only(tmp_path) -> None:  # noqa: ANN001
    cameras = tmp_path / "cameras.yaml"
    # frames 420..449 of a scripted stream put the anomaly on the patch at cells (2..3, 4..5): the right third
    cameras.write_text("cameras:\n"
                       "  - {id: road, url: rtsp://h/a, zones: {exclude: [[[0.6, 0], [1, 0], [1, 1], [0.6, 1]]]}}\n"
                       "  - {id: lawn, url: rtsp://h/b, zones: {include: [[[0.6, 0], [1, 0], [1, 1], [0.6, 1]]]}}\n")
    settings = ScorerSettings(cameras={"file": cameras})
    cal = _calibration("zones")  # calibrated on the whole frame: zones only say where alerts may come from
    opened = {}
    for cam in ("road", "lawn"):
        st = ScorerState(cam, settings.camera_params(cam), resolve=lambda c, v: cal)
        results = [st.step(m) for m in _msgs(cam, scripted(600, [(420, 449)]))]
        opened[cam] = [p.alert.trigger_seq for r in results for p in r.alerts if p.alert.event == "open"]
    assert opened["road"] == [] and len(opened["lawn"]) == 1


def test_a_new_model_gets_its_own_calibration_or_learns_online() -> None:
    cal = _calibration("cam-m")
    st = ScorerState("cam-m", CameraParams(scoring=FAST), resolve=lambda c, v: cal if v == "1" else None)
    msgs = _msgs("cam-m", scripted(300, []))
    assert st.step(msgs[0]).mode == "calibrated"
    swapped = msgs[1].model_copy(update={"model_version": "2"})
    assert st.step(swapped).status == "learning" and st.model == "sim:2"


def test_settings_overrides_are_validated() -> None:
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        ScorerSettings(camera_overrides={"c": {"bogus": 1}})
    with pytest.raises(ValueError, match="k <= n"):
        ScorerSettings(camera_overrides={"c": {"k": 20}})
    with pytest.raises(ValueError, match="k <= n"):
        ScorerSettings(events={"k": 20})


