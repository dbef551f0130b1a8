"""The benchmark harness's own arithmetic: the worker profile's summary and the e2e latencies."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from vigil.tools import profiling
from vigil.tools.bench_e2e import Run, _Follower

RAW = """\
process 1:"python -m vigil.cli worker";thread (0x1);_bootstrap (threading.py:1002);WorkerEngine.process (services/worker/core.py:159);InferRequest.infer (openvino/_ov_api.py:202) 6
process 1:"python -m vigil.cli worker";thread (0x2);_bootstrap (threading.py:1002);WorkerEngine.process (services/worker/core.py:160);flow_magnitude (model/motion.py:38) 3
process 1:"python -m vigil.cli worker";thread (0x2);_bootstrap (threading.py:1002);flow_magnitude (model/motion.py:39) 1
not a stack line
"""


def test_the_profile_summary_counts_functions_not_lines_and_lists_only_vigils_functions_inclusively() -> None:
    own, incl, total = profiling.top_entries(RAW, 5)
    assert total == 10
    assert [(e.name, e.share) for e in own] == [("InferRequest.infer (openvino/_ov_api.py)", 0.6),
                                                ("flow_magnitude (model/motion.py)", 0.4)]  # fmt: skip
    assert [(e.name, e.share) for e in incl] == [("WorkerEngine.process (services/worker/core.py)", 0.9),
                                                 ("flow_magnitude (model/motion.py)", 0.4)]  # fmt: skip
    table = profiling.profile_table(RAW, 5)
    assert "10 samples" in table and "| 1 | `InferRequest.infer (openvino/_ov_api.py)` | 60.0% |" in table


def test_profiling_without_py_spy_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(profiling.shutil, "which", lambda _name: None)
    monkeypatch.setattr(profiling.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(FileNotFoundError, match=r"pip install 'vigil\[profile\]'"):
        profiling.start_py_spy(1, 1.0, tmp_path / "out.txt")


def test_e2e_latencies_come_from_the_topics_read_after_the_run() -> None:
    follower = _Follower(kafka=None, topics={})
    ms = 1_000_000
    follower.frames_at = {("a", 1): (100 * ms, 110 * ms), ("a", 2): (200 * ms, 205 * ms), ("a", 3): (900 * ms, 901 * ms)}
    follower.scores = [SimpleNamespace(camera_id="a", seq=1, capture_ns=100 * ms, processed_ns=150 * ms)]
    run = Run(cameras=1, seconds=1.0)
    follower.fill(run, (0, 500 * ms), {("a", 100 * ms): 180 * ms, ("a", 200 * ms): 260 * ms})
    assert (run.offered, run.scored) == (2, 1)  # frame 3 is outside the window, frame 2 was never scored
    assert run.ingest_ms == [10.0] and run.worker_ms == [40.0]
    assert sorted(run.total_ms) == [60.0, 80.0] and run.scorer_ms == [30.0]


def test_e2e_runtimes_name_the_workers_settings_and_reject_unknown_ones() -> None:
    import typer

    from vigil.tools.bench_e2e import _worker_runtime, runtime_envs

    envs = runtime_envs("keras, openvino-int8")
    assert envs == [{"VIGIL_WORKER_RUNTIME": "keras", "VIGIL_WORKER_RUNTIME_QUANTIZE": "none"},
                    {"VIGIL_WORKER_RUNTIME": "openvino", "VIGIL_WORKER_RUNTIME_QUANTIZE": "int8"}]  # fmt: skip
    assert [_worker_runtime(e) for e in envs] == ["TensorFlow (Keras)", "OpenVINO int8"]
    assert runtime_envs("") == [{}]
    with pytest.raises(typer.BadParameter, match="unknown runtime 'tensorrt'"):
        runtime_envs("tensorrt")


def test_bench_runtime_times_each_runtime_in_blocks_and_round_robin_on_its_own_state_dtypes() -> None:
    import ml_dtypes
    import numpy as np

    from vigil.tools.bench_runtime import report, time_runtimes

    calls: list[tuple[str, str]] = []

    class _Counting:
        def __init__(self, name: str, state_dtypes: tuple | None) -> None:
            self.name, self.state_dtypes = name, state_dtypes

        def run(self, feed: list[np.ndarray]) -> dict:
            calls.append((self.name, feed[1].dtype.name))
            return {}

    runtimes = {"keras": _Counting("keras", None),
                "openvino-bf16": _Counting("openvino-bf16", (np.dtype(ml_dtypes.bfloat16),))}
    blocks, rounds = time_runtimes(runtimes, [np.zeros((2, 4), np.uint8), np.ones((2, 3), np.float32)], runs=7)
    assert {n: len(t) for n, t in blocks.items()} == {n: len(t) for n, t in rounds.items()} == {"keras": 7, "openvino-bf16": 7}
    assert set(calls) == {("keras", "float32"), ("openvino-bf16", "bfloat16")}
    # blocks first: 2 warm-up calls each, then (1 untimed + 5) keras, (1 + 5) bf16, (1 + 2) keras, ...; then alternating
    assert [n for n, _ in calls[4:10]] == ["keras"] * 6 and [n for n, _ in calls[-4:]] == ["keras", "openvino-bf16"] * 2
    rows = [{"runtime": n, "batch": 8, "fps": fps, "best_fps": fps, "rr_fps": fps / 2, "p90_ms": 1.0}
            for n, fps in (("keras", 100.0), ("openvino-bf16", 300.0))]
    cfg = SimpleNamespace(runs=7, threads=0, streams=0, model_dir=None, runtimes=("keras", "openvino-bf16"),
                          batches=(8,), auc=False)
    text = report(cfg, rows, {"numpy": 1e11, "bf16": 1e12}, (1e11, "estimate"), 10**9, {}, {}, ((0, 0, 0), (0, 0, 0)))
    assert "| keras | 8 | 100.0 | 1.00 | 100.0 | 1.00 | 50.0 | 1.00 | 1.0 | 100.0 |" in text  # of the fp32 peak
    assert "| openvino-bf16 | 8 | 300.0 | 3.00 | 300.0 | 3.00 | 150.0 | 3.00 | 1.0 | 30.0 |" in text  # of the bf16 peak
    assert "bf16 peak" in text and "1000 GFLOP/s" in text


def test_the_demo_plays_a_normal_clip_between_test_clips_and_counts_each_alert_where_it_began() -> None:
    from vigil.model.data import ped2_mini_dir
    from vigil.tools.demo import NORMAL, CameraStats, demo_interludes, prepare_cameras, summarize

    (cam,) = prepare_cameras(ped2_mini_dir(), ["Test001", "Test002"], 0, n_cameras=1)
    assert cam.entries == ["Test001", "Train015", "Test002"] and [s[0] for s in cam.segments] == ["Test001", "Test002"]
    assert len(cam.labels) == 180 + 150 + 180 and cam.segments[1][1:] == (330, 510)
    assert demo_interludes(ped2_mini_dir(), None) == ("Train015", "Train016")  # the card's held-out clips
    (plain,) = prepare_cameras(ped2_mini_dir(), ["Test001", "Test002"], 0, n_cameras=1, interludes=())
    assert plain.entries == ["Test001", "Test002"]
    # sessions as ingest numbers them: one per clip, then the server's second pass of the playlist
    st = CameraStats(sessions={1: 1000, 2: 1180, 3: 1330, 4: 1510}, last_seq=1540)
    alerts = [
        {"camera_id": cam.camera_id, "start_seq": 1000 + 70, "end_seq": 1000 + 90, "open_trigger_seq": 1000 + 72},  # Test001
        {"camera_id": cam.camera_id, "start_seq": 1180 + 40, "end_seq": 1180 + 45},  # the normal clip: false
        {"camera_id": cam.camera_id, "start_seq": 1330 + 5, "end_seq": 1330 + 9},  # Test002 before its span: false
        {"camera_id": cam.camera_id, "start_seq": 1515, "end_seq": 1530},  # after the playlist: left out
    ]
    monitor = SimpleNamespace(stats={cam.camera_id: st}, alerts={str(i): a for i, a in enumerate(alerts)}, alert_latency_ms=[])
    summary = summarize(monitor, [cam])  # type: ignore[arg-type]
    rows = summary["per_clip"]
    assert summary["alerts"] == 3 and summary["alerts_after_the_playlist"] == 1
    first = next(i for i, v in enumerate(cam.labels[:180]) if v)
    assert rows["Test001"]["alerted"] and rows["Test001"]["delay_s"] == (72 - first) / 10
    assert rows[NORMAL]["false_alerts"] == 1 and rows["Test002"]["false_alerts"] == 1 and not rows["Test002"]["alerted"]
    assert sum(r["false_alerts"] for r in rows.values()) == 2


def test_the_demo_warns_when_no_held_out_normal_clip_can_separate_the_test_clips(tmp_path, capsys) -> None:  # noqa: ANN001
    import shutil

    from vigil.model.data import ped2_mini_dir
    from vigil.tools.demo import demo_interludes

    shutil.copy(ped2_mini_dir() / "manifest.json", tmp_path / "manifest.json")  # no train/ folder
    assert demo_interludes(tmp_path, None) == ()
    err = capsys.readouterr().err
    assert "Train015" in err and "back to back" in err and "vigil data ped2" in err
