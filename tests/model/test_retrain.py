"""``vigil retrain`` on a small synthetic camera: a passing candidate is registered and switched to, the worker's
model watcher sees the switch and the scorer finds the new version's calibration; a failing gate keeps the old
version; every version stays available for rollback."""

from __future__ import annotations

import json

import av
import keras
import numpy as np
import pytest
from model_testutils import moving_square_video, tiny_config
from typer.testing import CliRunner

from vigil.model.retrain import (
    RetrainPlan,
    labelled_gate,
    last_day_clips,
    last_day_gate,
    load_labelled_set,
    retrain,
)
from vigil.model.retrain_cli import models_app
from vigil.model.streaming import StreamingPredictor
from vigil.model.train import TrainSettings, train
from vigil.model.versions import ModelStore
from vigil.services.scorer.settings import ScorerSettings
from vigil.services.worker.registry import fingerprint


def _write_video(path, frames: np.ndarray) -> None:  # noqa: ANN001
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "gray"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f[:, :, 0], format="gray")))
        container.mux(stream.encode())


def _camera(tmp_path) -> tuple[ModelStore, str, object]:  # noqa: ANN001
    """A site whose camera cam-1 runs version 1 of a tiny model, with 3 clips of its own normal footage."""
    footage = tmp_path / "footage"
    footage.mkdir()
    for i in range(3):
        _write_video(footage / f"seg{i}.mkv", moving_square_video(30, seed=10 + i))
    keras.backend.clear_session()
    train(tiny_config(), TrainSettings(data=footage, out=tmp_path / "v1", work_dir=tmp_path / "w1", epochs=1,
                                       steps_per_epoch=1, n_val=1, guard=False))  # fmt: skip
    store = ModelStore(tmp_path / "models")
    first = store.register("cam-1", tmp_path / "v1", {"passed": True})
    store.switch("cam-1", first, reason="first model")
    plan = RetrainPlan("cam-1", footage, store, tmp_path / "work", epochs=1, steps_per_epoch=2, max_alerts=1000,
                       error_ratio=3.0, minutes=5, guard=False, max_alert_rate=1e6)  # fmt: skip
    return store, first, plan


def test_retrain_gates_registers_switches_and_rolls_back(tmp_path) -> None:  # noqa: ANN001
    store, first, plan = _camera(tmp_path)
    link = store.link("cam-1")
    before = fingerprint(link)

    strict = retrain(RetrainPlan(**{**plan.__dict__, "error_ratio": 0.5}))  # the error would have to halve
    assert not strict["registered"] and store.current("cam-1") == first and store.versions("cam-1") == [first]
    assert any("mean prediction error" in r for r in strict["gate"]["reasons"]), strict
    assert strict["why"].startswith("gate failed (held-out footage + last day): the old model of cam-1 (") and \
        f"({first}) is kept because its mean prediction error" in strict["why"], strict["why"]
    assert strict["gate"]["extra"]["running"]["hours"] > 0  # the last day was scored with both models
    history = json.loads((store.root / "cam-1" / "history.json").read_text())
    assert history[-1]["action"] == "reject" and history[-1]["report"]["reasons"] == strict["gate"]["reasons"]
    assert fingerprint(link) == before  # a failed gate leaves what the workers run alone

    report = retrain(plan)
    assert report["registered"] and report["gate"]["passed"], report
    new = report["version"]
    assert new != first and store.current("cam-1") == new and store.versions("cam-1") == [first, new]
    assert fingerprint(link) != before  # the worker's watcher hot-swaps on this
    assert StreamingPredictor.load(link).model_version == new
    book = ScorerSettings(model_dir=link).calibration_book()
    assert book.lookup("cam-1", new).calibration is not None  # the scorer recalibrates from the new card

    result = CliRunner().invoke(models_app, ["rollback", "cam-1", "--store", str(store.root)])
    assert result.exit_code == 0, result.output
    assert store.current("cam-1") == first and StreamingPredictor.load(link).model_version == first


def _noise_video(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 16, 24, 1)).astype(np.uint8)


def test_labelled_set_gate_compares_both_models_and_says_why(tmp_path) -> None:  # noqa: ANN001
    store, first, plan = _camera(tmp_path)
    model = store.path("cam-1", first)
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    _write_video(labelled / "quiet.mkv", moving_square_video(30, seed=40))
    _write_video(labelled / "odd.mkv", np.concatenate([moving_square_video(15, seed=41), _noise_video(15, 42)]))
    (labelled / "labels.json").write_text(json.dumps({"quiet": 0, "odd": [0] * 15 + [1] * 15}))
    extra, reasons = labelled_gate(model, model, labelled, plan)
    assert reasons == [] and extra["candidate"] == extra["running"], extra  # the same model passes
    assert extra["candidate"]["anomalous_clips"] == 1 and 0.0 <= extra["candidate"]["auc"] <= 1.0
    _, reasons = labelled_gate(model, model, labelled, RetrainPlan(**{**plan.__dict__, "auc_drop": -0.5}))
    assert len(reasons) == 1 and "frame AUC on the labelled set" in reasons[0], reasons

    (labelled / "labels.json").write_text(json.dumps({"quiet": 0, "odd": 0}))
    with pytest.raises(ValueError, match="both anomalous and normal"):
        load_labelled_set(labelled)
    (labelled / "labels.json").write_text(json.dumps({"quiet": 0, "gone": 1}))
    with pytest.raises(ValueError, match="no video"):
        load_labelled_set(labelled)
    (labelled / "labels.json").write_text(json.dumps({"quiet": 0, "odd": [0, 2]}))
    with pytest.raises(ValueError, match="must be 0/1"):
        retrain(RetrainPlan(**{**plan.__dict__, "labelled": labelled}))  # refused before any training
    assert not (plan.work / "candidate").exists()


def test_last_day_gate_counts_false_alerts_per_hour_of_recent_footage(tmp_path) -> None:  # noqa: ANN001
    store, first, plan = _camera(tmp_path)
    model = store.path("cam-1", first)
    day = tmp_path / "day"
    day.mkdir()
    now = 1_764_640_800_000
    _write_video(day / f"{now - 30 * 3_600_000}-{now - 30 * 3_600_000 + 3000}.mkv", _noise_video(30, 1))  # 30 h old
    for i in range(3):
        start = now - i * 600_000
        _write_video(day / f"{start}-{start + 3000}.mkv", _noise_video(30, 2 + i) if i == 0 else moving_square_video(30, seed=i))
    assert [p.stem for p in last_day_clips(day, 24.0, 10)] == [f"{now - i * 600_000}-{now - i * 600_000 + 3000}" for i in (2, 1, 0)]
    assert len(last_day_clips(day, 24.0, 2)) == 2 and len(last_day_clips(day, 48.0, 10)) == 4

    extra, reasons = last_day_gate(model, model, RetrainPlan(**{**plan.__dict__, "footage": day, "max_alert_rate": 0.0}))
    figures = extra["candidate"]
    assert figures["frames"] == 90 and figures["hours"] == pytest.approx(90 / 10 / 3600)
    assert figures["alerts"] >= 1, figures  # the noise segment alarms the tiny model
    assert len(reasons) == 1 and "false-alert rate on the last day's footage (3 segments" in reasons[0], reasons
    _, reasons = last_day_gate(model, model, RetrainPlan(**{**plan.__dict__, "footage": day, "max_alert_rate": 1e6}))
    assert reasons == []
