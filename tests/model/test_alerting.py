"""The one scoring core (model/alerting.py): calibration, the daily gain, protection from long incidents,
zones, boxes, and the validation of calibrations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vigil.model.alerting import CameraScoring, Observation, ZoneMask, calibrate
from vigil.model.baseline import Calibration, LocationStats
from vigil.shared.scorer_params import EventParams, ScoringParams

GRID = (6, 8)


def _scene(rng: np.random.Generator, level: float = 1.0) -> dict[str, np.ndarray]:
    """A quiet scene with a walker whose patch moves along a path (autocorrelated like real scores)."""
    error = rng.lognormal(-8, 0.15, GRID) * level
    motion = rng.lognormal(-3, 0.15, GRID) * level
    return {"error": error, "motion": motion}


def _frames(n: int, seed: int = 0, level=lambda t: 1.0, bad=(), at=(2, 3)) -> list[Observation]:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        maps = _scene(rng, level(t))
        r, c = (t // 20) % 3 + 1, (t // 20) % 5 + 1  # the walker's patch
        maps["error"][r:r + 2, c:c + 2] *= 20
        maps["motion"][r:r + 2, c:c + 2] *= 10
        if t in bad:
            maps["error"][at[0]:at[0] + 2, at[1]:at[1] + 2] *= 400
            maps["motion"][at[0]:at[0] + 2, at[1]:at[1] + 2] *= 60
        out.append(Observation(t, t * 10**8, t < 3, maps, (GRID[1] * 8, GRID[0] * 8)))
    return out


PARAMS = ScoringParams(threshold_margin=1.0)


@pytest.fixture(scope="module")
def cal() -> Calibration:
    return calibrate([_frames(1500, seed=1)], PARAMS, cell_px=8, source="test")


def _run(cam: CameraScoring, frames: list[Observation]) -> list:
    return [cam.step(o) for o in frames]


def test_calibrated_scores_are_centred_and_the_threshold_sits_above_normal(cal: Calibration) -> None:
    assert cal.threshold == pytest.approx(cal.normal_max + 1.0) and cal.frames == 1497
    verdicts = _run(CameraScoring(PARAMS, EventParams(), cal), _frames(600, seed=2))
    scores = [v.score for v in verdicts if v.score is not None]
    assert abs(float(np.median(scores))) < 1.0 and max(scores) < cal.threshold
    assert [v.status for v in verdicts[:3]] == ["warmup"] * 3 and verdicts[3].status == "normal"


def test_a_local_incident_alerts_with_its_box(cal: Calibration) -> None:
    verdicts = _run(CameraScoring(PARAMS, EventParams(), cal), _frames(300, seed=3, bad=range(100, 160), at=(3, 5)))
    opens = [c for v in verdicts for c in v.changes if c.kind == "open"]
    assert len(opens) == 1 and 100 <= opens[0].start_seq <= 103
    assert opens[0].peak_heat["box"] == [5 / 8, 3 / 6, 7 / 8, 5 / 6]  # the 2x2 cells at row 3, column 5


def test_the_gain_follows_a_scene_wide_change_but_not_a_local_one(cal: Calibration) -> None:
    def dusk(t: int) -> float:  # the whole scene slowly x2.5
        return 1.0 if t < 200 else min(2.5, 1.0 + (t - 200) / 400)

    fast = ScoringParams(threshold_margin=1.0, gain_fading=0.02)
    events = EventParams(k=5, n=10, min_duration_s=0.5)  # the gain is under test, not the event rule
    adapting = _run(CameraScoring(fast, events, cal), _frames(1500, seed=4, level=dusk))
    frozen = _run(CameraScoring(fast, events, cal, adapt=False), _frames(1500, seed=4, level=dusk))
    assert not any(c.kind == "open" for v in adapting for c in v.changes)
    assert any(c.kind == "open" for v in frozen for c in v.changes)  # without the gain, dusk is an alarm


def test_a_long_incident_never_becomes_the_baseline(cal: Calibration) -> None:
    cam = CameraScoring(ScoringParams(threshold_margin=1.0, fading_factor=0.05, gain_fading=0.05), EventParams(), cal)
    frames = _frames(3000, seed=5, bad=range(100, 3000))
    _run(cam, frames[:100])
    before = cam.stats["error"].mean.copy()
    verdicts = _run(cam, frames[100:])
    assert verdicts[-1].status == "alert" and verdicts[-1].above  # still alerting after 290 s
    assert np.allclose(cam.stats["error"].mean, before)  # nothing was learnt during the incident
    assert abs(cam.gain["error"]) < 0.3  # the median location did not move


def test_zones_keep_an_excluded_place_out_of_the_maximum(cal: Calibration) -> None:
    road = ZoneMask(exclude=[[(0.5, 0.3), (1.0, 0.3), (1.0, 1.0), (0.5, 1.0)]])
    frames = _frames(300, seed=6, bad=range(100, 160), at=(3, 5))
    quiet = _run(CameraScoring(PARAMS, EventParams(), cal, road), frames)
    assert not any(c.kind == "open" for v in quiet for c in v.changes)
    lawn = ZoneMask(include=[[(0.5, 0.3), (1.0, 0.3), (1.0, 1.0), (0.5, 1.0)]])
    loud = _run(CameraScoring(PARAMS, EventParams(), cal, lawn), frames)
    assert sum(c.kind == "open" for v in loud for c in v.changes) == 1


def test_a_camera_without_calibration_learns_then_scores() -> None:
    params = ScoringParams(grace_frames=400)
    verdicts = _run(CameraScoring(params, EventParams(), None), _frames(900, seed=7, bad=range(700, 760)))
    assert {v.status for v in verdicts[3:403]} == {"learning"} and verdicts[403].status == "normal"
    opens = [c.start_seq for v in verdicts for c in v.changes if c.kind == "open"]
    assert len(opens) == 1 and 700 <= opens[0] <= 704


def test_the_whole_state_survives_a_json_round_trip(cal: Calibration) -> None:
    import json

    a = CameraScoring(PARAMS, EventParams(), cal)
    frames = _frames(400, seed=8, bad=range(150, 200))
    _run(a, frames[:170])
    b = CameraScoring.from_dict(json.loads(json.dumps(a.to_dict())), PARAMS, EventParams(), cal)
    for o in frames[170:]:
        va, vb = a.step(o), b.step(o)
        assert (va.status, va.score, [c.kind for c in va.changes]) == (vb.status, vb.score, [c.kind for c in vb.changes])


@pytest.mark.parametrize("bad", [
    {"shape": [3, 4], "eps": 1e-6, "weight": 1, "centre": 0, "scale": 1, "level": 0, "mean": [[0.0] * 4] * 2, "var": [[0.0] * 4] * 3},
    {"shape": [2, 2], "eps": 1e-6, "weight": 1, "centre": 0, "scale": 1, "level": 0, "mean": [[math.nan, 0], [0, 0]], "var": [[0, 0], [0, 0]]},
    {"shape": [2, 2], "eps": 1e-6, "weight": 2, "centre": 0, "scale": 1, "level": 0, "mean": [[0, 0], [0, 0]], "var": [[0, 0], [0, 0]]},
    {"shape": [2, 2], "eps": 1e-6, "weight": 1, "centre": 0, "scale": 0, "level": 0, "mean": [[0, 0], [0, 0]], "var": [[0, 0], [0, 0]]},
])  # fmt: skip
def test_malformed_location_statistics_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        LocationStats.from_dict(bad)


def test_a_calibration_round_trips_and_names_what_is_wrong(cal: Calibration) -> None:
    back = Calibration.from_dict(cal.to_dict())
    assert back.threshold == pytest.approx(cal.threshold, abs=1e-4) and back.grid == GRID
    with pytest.raises(ValueError, match="vigil calibrate"):
        Calibration.from_dict(cal.to_dict() | {"version": 99})
    with pytest.raises(ValueError, match="match the grid"):
        Calibration.from_dict(cal.to_dict() | {"grid": [7, 8]})


@pytest.mark.parametrize("full_window", [True, False])
def test_only_a_full_smoothing_window_can_alert_after_a_fresh_state(cal: Calibration, full_window: bool) -> None:
    params = ScoringParams(threshold_margin=1.0, full_window=full_window)
    frames = _frames(40, seed=3, bad=range(3, 40))  # an incident already under way when the camera starts
    verdicts = _run(CameraScoring(params, EventParams(), cal), frames)
    scored = [v for v in verdicts if v.score is not None]
    assert all(v.score > v.threshold for v in scored)  # every score is high, including the partial windows'
    first_above = next(i for i, v in enumerate(scored) if v.above)
    assert first_above == (params.smooth - 1 if full_window else 0)
    # a warm-up frame clears the window: the next scores are partial again
    again = _run(CameraScoring(params, EventParams(), cal), [*frames[:10], frames[0], *frames[11:20]])
    after = [v.above for v in again[11:]]
    assert after[: params.smooth - 1] == [not full_window] * (params.smooth - 1) and all(after[params.smooth - 1:])


def test_long_running_cameras_carry_their_events_from_clip_to_clip_unless_a_normal_clip_separates_them():
    from vigil.model.live import camera_playlists, replay, replay_playlists

    cal = calibrate([_frames(600, seed=1)], PARAMS, cell_px=8)
    clips = {"A": _frames(100, seed=2, bad=range(80, 100)), "B": _frames(100, seed=3, bad=range(10, 40)),
             "n": _frames(150, seed=4)}
    assert camera_playlists(["A", "B"], 1, ("n",)) == [["A", "n", "B"]] and camera_playlists(["A", "B"], 1) == [["A", "B"]]
    fresh = replay({k: clips[k] for k in "AB"}, cal, PARAMS)
    assert fresh["A"].events and fresh["B"].events  # each clip from a fresh state: both alert
    (back_to_back,) = replay_playlists(clips, [["A", "B"]], cal, PARAMS)
    named = dict(back_to_back)
    assert named["A"].events and not named["B"].events  # A's alert is still open (then cooling down) in B
    assert len(named["B"].scores) == 100 and named["B"].warmup[:3].all()  # B starts with the worker's warm-up
    (separated,) = replay_playlists(clips, [["A", "n", "B"]], cal, PARAMS)
    named = dict(separated)
    assert not named["n"].events and [e.open_seq // 10 for e in named["B"].events] == [e.open_seq // 10 for e in fresh["B"].events]
    np.testing.assert_allclose(named["A"].scores, fresh["A"].scores)  # clip-relative: the first clip is as if alone
    gappy = dict(clips, A=clips["A"][:10] + clips["A"][30:])  # 20 frames dropped: A's own numbers have a gap
    named = dict(replay_playlists(gappy, [["A", "n", "B"]], cal, PARAMS)[0])
    assert len(named["A"].scores) == 80 and named["A"].events and not named["n"].events
    assert all(60 <= e.open_seq < 80 for e in named["A"].events)  # positions in the clip: A's anomaly is its last 20
