"""Helpers of the model tests: tiny configs and synthetic videos (imported by the test modules)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from vigil.model.config import PredNetConfig


def tiny_config(**overrides) -> PredNetConfig:
    """A 3-layer PredNet on 16x24 gray frames."""
    kwargs = {"height": 16, "width": 24, "stack_sizes": (1, 4, 8), "r_stack_sizes": (2, 4, 8), "nt": 5,
              "features": {"patch_size": 4, "patch_stride": 2, "heatmap_stride": 4}}
    kwargs.update(overrides)
    return PredNetConfig(**kwargs)


def moving_square_video(n_frames: int, height: int = 16, width: int = 24, seed: int = 0) -> np.ndarray:
    """``(T, H, W, 1)`` uint8: a bright square moving one pixel per frame over a dark, noisy background."""
    rng = np.random.default_rng(seed)
    video = rng.integers(10, 30, size=(n_frames, height, width, 1)).astype(np.uint8)
    y0, x0 = rng.integers(0, height - 5), rng.integers(0, width // 2)
    for t in range(n_frames):
        x = (x0 + t) % (width - 4)
        video[t, y0:y0 + 4, x:x + 4] = 220
    return video


def run_on_jax(runner: Path, folder: Path) -> dict[str, np.ndarray]:
    """Run a backend runner script on ``folder`` in a subprocess with ``KERAS_BACKEND=jax`` (CPU) and return the
    arrays it saved in ``folder/out_jax.npz``; fails the test with the subprocess's stderr when it fails."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(runner), str(folder)], env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(folder / "out_jax.npz") as data:
        return {k: data[k] for k in data.files}
