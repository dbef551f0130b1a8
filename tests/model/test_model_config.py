"""Config, serialisation and save/load round trips."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from model_testutils import moving_square_video, tiny_config

from vigil.model.config import PredNetConfig
from vigil.model.prednet import (
    PredNetCell,
    build_cell,
    build_training_model,
    get_cell,
    load_cell_weights,
    save_cell_weights,
)
from vigil.model.streaming import StreamingPredictor


def test_config_dict_and_file_round_trip(tmp_path, config):
    assert PredNetConfig.from_dict(config.to_dict()) == config
    config.save(tmp_path / "c.json")
    assert PredNetConfig.load(tmp_path / "c.json") == config


@pytest.mark.parametrize("bad", [
    {"height": 18},                      # not divisible by 4
    {"r_stack_sizes": (2, 4)},           # wrong length
    {"channels": 3},                     # != stack_sizes[0]
    {"nt": 1},
])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="Received"):
        tiny_config(**bad)


def test_cell_get_config_round_trip(config):
    cell = build_cell(config, "all")
    clone = PredNetCell.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    with pytest.raises(ValueError, match="output_mode"):
        PredNetCell(**config.cell_kwargs("bogus"))


def test_keras_save_load_round_trip(tmp_path, config):
    model = build_training_model(config)
    x = moving_square_video(config.nt)[None].astype("float32") / 255.0
    before = np.asarray(model(x))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), before, rtol=1e-6, atol=1e-7)


def test_cell_weights_and_model_dir_round_trip(tmp_path, config):
    cell = get_cell(build_training_model(config))
    save_cell_weights(cell, tmp_path / "prednet.weights.npz")
    config.save(tmp_path / "config.json")
    other = build_cell(config)
    load_cell_weights(other, tmp_path / "prednet.weights.npz")
    for a, b in zip(cell.weights, other.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    predictor = StreamingPredictor.load(tmp_path)
    assert predictor.input_shape == (16, 24, 1) and len(predictor.model_version) == 12
    with pytest.raises(ValueError, match="mismatch|arrays"):
        load_cell_weights(build_cell(tiny_config(r_stack_sizes=(3, 4, 8))), tmp_path / "prednet.weights.npz")
