"""Runs a saved tiny masked-frame inpainting model on a saved video with whatever Keras backend this process has.

Used by ``test_inpaint.py``: in-process for TensorFlow, as ``python inpaint_backend_runner.py FOLDER`` with
``KERAS_BACKEND=jax`` for JAX (writes ``out_jax.npz`` into FOLDER).
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np

from vigil.model.features import FrameFeatures
from vigil.model.streaming import StreamingPredictor


def compute(folder: Path) -> dict[str, np.ndarray]:
    """Streaming expected frames, error features, NLL heat maps and the last state (the batch scoring of a window
    is left out: op by op, JAX would compile each of its operations for seconds more; ``test_inpaint.py`` checks
    streaming against it on TensorFlow)."""
    video = np.load(folder / "video.npy")
    predictor = StreamingPredictor.load(folder)
    predictor.motion = False
    state, preds, feats, heat = predictor.initial_state(), [], [], []
    for t in range(len(video)):
        result = predictor.step(video[t:t + 1], [state])
        state = result.new_states[0]
        preds.append(result.predictions[0])
        heat.append(result.heatmaps[0])
        feats.append([getattr(result.features, k)[0] for k in FrameFeatures.names(source="prednet")])
    return {"preds": np.stack(preds), "feats": np.array(feats), "heatmaps": np.stack(heat), "state_past": state[0],
            "state_started": state[1]}


if __name__ == "__main__":
    out_folder = Path(sys.argv[1])
    np.savez(out_folder / f"out_{keras.backend.backend()}.npz", **compute(out_folder))
