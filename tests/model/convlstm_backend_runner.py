"""Runs a saved tiny ConvLSTM autoencoder on a saved video with whatever Keras backend this process has.

Used by ``test_convlstm_ae.py``: in-process for TensorFlow, as ``python convlstm_backend_runner.py FOLDER``
with ``KERAS_BACKEND=jax`` for JAX.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np

from vigil.model.features import FrameFeatures
from vigil.model.streaming import StreamingPredictor


def compute(folder: Path) -> dict[str, np.ndarray]:
    """Streaming reconstructions, features and states, and the batch reconstruction of the last window."""
    video = np.load(folder / "video.npy")
    predictor = StreamingPredictor.load(folder)
    predictor.motion = False
    state, preds, feats = predictor.initial_state(), [], []
    for t in range(len(video)):
        result = predictor.step(video[t:t + 1], [state])
        state = result.new_states[0]
        preds.append(result.predictions[0])
        feats.append([getattr(result.features, k)[0] for k in FrameFeatures.names(source="prednet")])
    window = predictor.config.window
    last = video[None, -window:].astype("float32") / 255.0
    batch = np.asarray(predictor.cell(last))[0]
    return {"preds": np.stack(preds), "feats": np.array(feats), "batch": batch, "state0": state[0]}


if __name__ == "__main__":
    out_folder = Path(sys.argv[1])
    np.savez(out_folder / f"out_{keras.backend.backend()}.npz", **compute(out_folder))
