"""``vigil retrain`` on a small synthetic camera: a passing candidate is registered and switched to, the worker's
model watcher sees the switch and the scorer finds the new version's calibration; a failing gate keeps the old
version; every version stays available for rollback."""

from __future__ import annotations

import json

import av
import keras
import numpy as np
from model_testutils import moving_square_video, tiny_config
from typer.testing import CliRunner

from vigil.model.retrain import RetrainPlan, retrain
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
                       error_ratio=3.0, minutes=5, guard=False)  # fmt: skip
    return store, first, plan


def test_retrain_gates_registers_switches_and_rolls_back(tmp_path) -> None:  # noqa: ANN001
    store, first, plan = _camera(tmp_path)
    link = store.link("cam-1")
    before = fingerprint(link)

    strict = retrain(RetrainPlan(**{**plan.__dict__, "error_ratio": 0.5}))  # the error would have to halve
    assert not strict["registered"] and store.current("cam-1") == first and store.versions("cam-1") == [first]
    assert any("mean prediction error" in r for r in strict["gate"]["reasons"]), strict
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
