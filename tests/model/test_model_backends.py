"""TensorFlow and JAX give the same outputs for the same weights (JAX runs in a subprocess)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from model_backend_runner import compute
from model_testutils import moving_square_video, run_on_jax, tiny_config

from vigil.model.prednet import build_cell, save_cell_weights

RUNNER = Path(__file__).with_name("model_backend_runner.py")


def test_tensorflow_and_jax_agree(tmp_path):
    assert keras.backend.backend() == "tensorflow"
    config = tiny_config()
    cell = build_cell(config)
    # Random normal kernels and biases, so that every unit is active and outputs are not ~0.
    rng = np.random.default_rng(0)
    cell.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in cell.get_weights()])
    save_cell_weights(cell, tmp_path / "prednet.weights.npz")
    config.save(tmp_path / "config.json")
    np.save(tmp_path / "video.npy", moving_square_video(6, seed=2))
    jax_out = run_on_jax(RUNNER, tmp_path)
    tf_out = compute(tmp_path)
    assert np.abs(tf_out["preds"]).max() > 0.01 and np.abs(tf_out["errors"]).max() > 0.01
    for key, value in tf_out.items():
        np.testing.assert_allclose(jax_out[key], value, rtol=2e-4, atol=2e-5, err_msg=key)
