"""A tiny, fast predictor honouring the ``vigil.model.streaming.StreamingPredictor`` interface.

Its "model" predicts the previous frame; its state is that frame. That makes the outputs depend on
the order of a camera's frames, so tests can see a skipped, reordered or mixed-up state. A model
directory for it holds ``fake.json`` (height, width, channels, version, optional step_delay_s).
Worker subprocesses load it with ``VIGIL_WORKER_PREDICTOR=worker_fake_predictor:FakePredictor`` and this
folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vigil.model.features import FrameFeatures

POOL = 4


@dataclass
class FakeStepResult:
    """Same fields as vigil.model.streaming.StepOutput."""

    predictions: np.ndarray
    features: FrameFeatures
    heatmaps: np.ndarray
    new_states: list[list[np.ndarray]]


MOTION = 2.0
"""The fake's motion_max for every step (flow between the camera's previous frame and this one)."""


class FakePredictor:
    """Predicts the previous frame of each camera."""

    model_id = "fake-prev-frame"

    def __init__(self, height: int = 8, width: int = 12, channels: int = 1, version: str = "1",
                 step_delay_s: float = 0.0) -> None:  # fmt: skip
        self.input_shape = (height, width, channels)
        self.heatmap_shape = (height // POOL, width // POOL)
        self.model_version = version
        self.step_delay_s = step_delay_s
        self.calls: list[int] = []

    @classmethod
    def load(cls, path: str | Path) -> FakePredictor:
        """Read ``fake.json`` from a model directory."""
        return cls(**json.loads((Path(path) / "fake.json").read_text()))

    @staticmethod
    def write(path: Path, **config: object) -> Path:
        """Write a model directory for :meth:`load`."""
        path.mkdir(parents=True, exist_ok=True)
        (path / "fake.json").write_text(json.dumps(config))
        return path

    def initial_state(self) -> list[np.ndarray]:
        """Zero previous frame."""
        return [np.zeros(self.input_shape, np.float32)]

    def step(self, frames: np.ndarray, states: list[list[np.ndarray]]) -> FakeStepResult:
        """Score ``frames`` against the previous frame of each camera."""
        if frames.dtype != np.uint8 or frames.shape[1:] != self.input_shape or len(states) != len(frames):
            raise ValueError(f"bad step input {frames.shape} {frames.dtype} with {len(states)} states")
        self.calls.append(len(frames))
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        x = frames.astype(np.float32) / 255.0
        pred = np.stack([s[0] for s in states])
        err = (x - pred) ** 2
        mse = err.mean(axis=(1, 2, 3))
        b, h, w, _ = err.shape
        heat = err.mean(axis=3)[:, : h // POOL * POOL, : w // POOL * POOL]
        heat = heat.reshape(b, h // POOL, POOL, w // POOL, POOL).mean(axis=(2, 4))
        feats = FrameFeatures(mse=mse, psnr=10 * np.log10(1.0 / np.maximum(mse, 1e-10)),
                              patch_max=heat.reshape(b, -1).max(1), motion_max=np.full(b, MOTION, np.float32))
        return FakeStepResult(pred, feats, heat, [[x[i]] for i in range(b)])


def offline_features(predictor: FakePredictor | object, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Step one camera's frames one at a time (B=1) from zero state: the offline reference.

    Returns:
        ``{name: (T,) array}`` of the PredNet features (the ones a score message carries unchanged).
    """
    state = predictor.initial_state()
    steps: list[FrameFeatures] = []
    for frame in frames:
        res = predictor.step(frame[None], [state])
        state = res.new_states[0]
        steps.append(res.features)
    feats = FrameFeatures.concat(steps)
    return {k: getattr(feats, k).astype(np.float64) for k in FrameFeatures.names(source="prednet")}


class PoisonedPredictor(FakePredictor):
    """A fake whose step fails for any batch holding an all-white frame (a frame that breaks the model)."""

    def step(self, frames: np.ndarray, states: list[list[np.ndarray]]) -> FakeStepResult:
        """Raise on an all-white frame, else as :class:`FakePredictor`."""
        if any(bool((f == 255).all()) for f in frames):
            raise FloatingPointError("poisoned frame: the model produced NaN")
        return super().step(frames, states)
