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
