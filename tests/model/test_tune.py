"""Tests of `vigil tune` (model/tune.py): the search space, resuming, pruning, results and plots.

The fast tests replace the trainer with one that writes nothing and returns a card whose validation measure is
a known function of the trial's parameters (so the study's decisions can be checked); the slow test trains real
tiny models on synthetic videos.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import optuna
import pytest
from model_testutils import moving_square_video

from vigil.model import tune as tune_mod
from vigil.model.tune import SearchSpace, TuneSettings, trial_config, tune

TINY = {"height": 16, "width": 24, "channels": 1, "features": {"patch_size": 4, "patch_stride": 2, "heatmap_stride": 4}}


def _settings(tmp_path: Path, **kw) -> TuneSettings:
    defaults = {"data": tmp_path / "videos", "out": tmp_path / "out", "storage": tmp_path / "study.db", "trials": 4,
                "rungs": 2, "rung_minutes": 0.05, "epochs_per_rung": 1, "steps_per_epoch": 1, "batch_size": 2,
                "n_val": 1, "base": TINY, "guard": False}
    return TuneSettings(**{**defaults, **kw})


@pytest.fixture
def fake_train(monkeypatch: pytest.MonkeyPatch) -> list:
    """A trainer whose measure is 0.01 * channels, improving by 10% per stage; records its calls."""
    calls = []

    def train(config, settings):  # noqa: ANN001, ANN202
        stage = int(settings.out.name.removeprefix("model"))
        calls.append((config.stack_sizes[1], config.nt, settings.crop, settings.init_from, stage))
        return {"calibration": {"feature_stats": {"mse": {"median": 0.01 * config.stack_sizes[1] * 0.9**stage}}}}

    monkeypatch.setattr("vigil.model.train.train", train)
    return calls


def test_study_runs_resumes_and_stores_results(tmp_path: Path, fake_train: list) -> None:
    space = SearchSpace(channels=(4, 8), nt=(4, 6), lr=(1e-3, 3e-3), crops=(0, 8, 64))
    first = tune(_settings(tmp_path, trials=3), space)
    assert first["counts"]["COMPLETE"] + first["counts"]["PRUNED"] == 3 and len(fake_train) >= 4
    assert all(c[2] in (None, (8, 8)) for c in fake_train)  # 64 > the 16x24 frame: whole frames instead
    stage1 = [c for c in fake_train if c[4] == 1]
    assert stage1 and all(c[3] is not None and c[3].name == "model0" for c in stage1)  # stage 1 continues stage 0
    best = first["best"]
    assert best["value"] == pytest.approx(0.01 * best["params"]["channels"] * 0.9)
    again = tune(_settings(tmp_path, trials=5), space)  # same storage: continues
    assert len(again["trials"]) == 5 and again["trials"][:3] == first["trials"]
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert stored["best"]["value"] <= best["value"] and "history.png" in stored["plots"]
    assert (tmp_path / "out" / "history.png").stat().st_size > 1000
    assert "no test label" not in stored["measure"] and "held-out normal" in stored["measure"]


def test_a_worse_trial_is_pruned_after_its_first_stage(tmp_path: Path, fake_train: list) -> None:
    settings = _settings(tmp_path, trials=1)
    study = tune_mod.open_study(settings)
    for channels in (4, 4, 4):
        study.enqueue_trial({"channels": channels, "nt": 4, "lr": 1e-3, "crop": 0})
    study.enqueue_trial({"channels": 16, "nt": 4, "lr": 1e-3, "crop": 0})
    tune(_settings(tmp_path, trials=4), SearchSpace(channels=(4, 16), nt=(4,), lr=(1e-3, 3e-3), crops=(0,)))
    states = [t.state for t in tune_mod.open_study(settings).trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 3 + [optuna.trial.TrialState.PRUNED]
    assert [c[4] for c in fake_train if c[0] == 16] == [0]  # the pruned trial never trained its second stage


def test_trial_config_follows_the_committed_layout() -> None:
    config = trial_config({"channels": 12, "nt": 20}, {"height": 120, "width": 180, "channels": 1})
    assert config.stack_sizes == (1, 12, 24) and config.r_stack_sizes == (4, 12, 24) and config.nt == 20


def _write_video(path: Path, frames: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "gray"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f[:, :, 0], format="gray")))
        container.mux(stream.encode())


@pytest.mark.slow
def test_real_training_trial_on_tiny_videos(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    for i in range(3):
        _write_video(tmp_path / "videos" / f"clip{i}.mkv", moving_square_video(24, seed=i))
    res = tune(_settings(tmp_path, trials=1, rungs=1), SearchSpace(channels=(4,), nt=(4,), lr=(1e-3, 2e-3), crops=(8,)))
    assert res["counts"]["COMPLETE"] == 1
    best = res["best"]
    assert 0 < best["value"] < 1 and Path(best["model_dir"], "model_card.json").is_file()
