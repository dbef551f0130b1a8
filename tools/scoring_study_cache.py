"""Build the score-message caches the scoring study needs (helper H3's study, #13): every Ped2 clip (train and
test; the model is run over the test clips, their labels are not read) and the synthetic set, for one model.

The synthetic set (:mod:`vigil.model.synthetic`): one painted object in each of Train013-016, with ``SEEDS``
seeds each, on the rows where people move in Train001-012 (mean motion map per row of those clips).

Usage: ``python -m vigil.tools.scoring_study_cache MODEL_DIR``
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

SEEDS = range(5)
SYN_CLIPS = ("Train013", "Train014", "Train015", "Train016")
CALIB_CLIPS = tuple(f"Train{i:03d}" for i in range(1, 13))
CACHE = Path(".state/replay")


def synthetic_clips(root: Path, shape: tuple[int, int, int], rows: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The painted clips and their labels: ``{Train013_s0: frames}``, ``{Train013_s0: (T,) int8}``."""
    from vigil.model.data import read_video
    from vigil.model.synthetic import inject

    clips, labels = {}, {}
    for name in SYN_CLIPS:
        frames = read_video(root / "train" / f"{name}.mkv", *shape)
        for seed in SEEDS:
            rng = np.random.default_rng(1000 + seed)
            start = int(rng.integers(15, len(frames) // 2))
            out, lab = inject(frames, seed=seed + 17 * int(name[-3:]), start=start, length=len(frames) - start, rows=rows)
            clips[f"{name}_s{seed}"], labels[f"{name}_s{seed}"] = out, lab
    return clips, labels


def row_weights(messages: dict[str, list], height: int) -> np.ndarray:
    """How much people move on each pixel row of Train001-012 (their motion maps, cells spread over pixels)."""
    grids = np.concatenate([np.stack([m.motion_map() for m in messages[n]]) for n in CALIB_CLIPS])
    per_cell_row = grids.mean(axis=(0, 2))
    cell = height // len(per_cell_row)
    return np.repeat(per_cell_row, cell)[:height]


def main(model_dir: str) -> None:
    """Cache Ped2 and the synthetic set for ``model_dir``."""
    from vigil.model.data import ped2_dir
    from vigil.model.replay import clip_messages, ped2_messages
    from vigil.model.streaming import StreamingPredictor

    logging.basicConfig(level=logging.INFO)
    root = ped2_dir(None)
    predictor = StreamingPredictor.load(model_dir)
    msgs = ped2_messages(root, predictor, CACHE)
    h = predictor.input_shape[0]
    clips, labels = synthetic_clips(root, predictor.input_shape, row_weights(msgs, h))
    np.savez(CACHE / f"synthetic-labels-{predictor.model_id}.npz", **labels)
    clip_messages(predictor, clips, warmup_frames=10, cache_dir=CACHE)
    print("done", predictor.model_id, len(msgs), len(clips), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
