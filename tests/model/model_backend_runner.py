"""Runs a saved tiny model on a saved video with whatever Keras backend this process has.

Used by ``test_backends.py``: in-process for TensorFlow, as ``python backend_runner.py FOLDER`` with
``KERAS_BACKEND=jax`` for JAX.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np

from vigil.model.features import FrameFeatures
from vigil.model.prednet import build_sequence_model, get_cell, load_cell_weights
from vigil.model.streaming import StreamingPredictor


def compute(folder: Path) -> dict[str, np.ndarray]:
    """Streaming predictions/features and sequence-model errors on ``folder/video.npy``."""
    video = np.load(folder / "video.npy")
    predictor = StreamingPredictor.load(folder)
    state, preds, feats = predictor.initial_state(), [], []
    for t in range(len(video)):
        result = predictor.step(video[t:t + 1], [state])
        state = result.new_states[0]
        preds.append(result.predictions[0])
        feats.append([getattr(result.features, k)[0] for k in FrameFeatures.names(source="prednet")])
    seq = build_sequence_model(predictor.config, "error", nt=len(video))
    load_cell_weights(get_cell(seq), folder / "prednet.weights.npz")
    errors = np.asarray(seq(video[None].astype("float32") / 255.0))[0]
    return {"preds": np.stack(preds), "feats": np.array(feats), "errors": errors, "state0": state[0]}


if __name__ == "__main__":
    out_folder = Path(sys.argv[1])
    np.savez(out_folder / f"out_{keras.backend.backend()}.npz", **compute(out_folder))
