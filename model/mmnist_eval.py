"""The Moving MNIST anomaly protocol: score each test sequence's last frame with the streaming step.

Metrics (as the paper): accuracy at the operating point where precision equals recall, frame AUC,
and both again for each corruption kind against the normals.

Example:
    >>> accuracy_at_equal_pr(np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 0, 1, 0]))
    1.0
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vigil.model.moving_mnist import KINDS


def accuracy_at_equal_pr(scores: np.ndarray, positive: np.ndarray) -> float:
    """Accuracy when the ``P`` highest scores (``P`` = number of positives) are flagged.

    Flagging exactly as many items as there are positives makes false positives equal false
    negatives, hence precision equal to recall. Ties are broken by the stable order of the input.
    """
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive).astype(bool)
    if scores.shape != positive.shape or scores.ndim != 1 or not len(scores):
        raise ValueError(f"scores and labels must be equal-length 1-D arrays. Received: {scores.shape}, {positive.shape}")
    flagged = np.zeros(len(scores), bool)
    flagged[np.argsort(-scores, kind="stable")[:int(positive.sum())]] = True
    return float((flagged == positive).mean())


def metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """``{"all"|kind: {"accuracy_pr", "auc", "n"}}`` for anomalies (label > 0) vs normals (label 0)."""
    from sklearn.metrics import roc_auc_score

    out: dict[str, Any] = {}
    groups = {"all": labels >= 0, **{k: np.isin(labels, [0, i]) for i, k in enumerate(KINDS) if i}}
    for name, keep in groups.items():
        s, y = scores[keep], labels[keep] > 0
        auc = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")
        out[name] = {"accuracy_pr": accuracy_at_equal_pr(s, y), "auc": auc, "n": int(keep.sum())}
    return out


def last_frame_scores(model_dir: str | os.PathLike, test: np.ndarray, feature: str = "mse",
                      batch: int = 32) -> np.ndarray:
    """Score the last frame of each ``(N, T, 64, 64)`` uint8 test sequence with the model's streaming
    step (:func:`vigil.model.inference.run_clips`, the worker's path), each from a zero state."""
    from vigil.model.inference import run_clips
    from vigil.model.streaming import StreamingPredictor

    predictor = StreamingPredictor.load(model_dir)
    predictor.motion = False
    clips = {f"{i:05d}": seq[..., None] for i, seq in enumerate(test)}
    outputs = run_clips(predictor, clips, batch=batch, progress=False)
    return np.array([getattr(outputs[n].features, feature)[-1] for n in clips], np.float32)


def evaluate(model_dir: str | os.PathLike, data: dict[str, np.ndarray], feature: str = "mse") -> dict[str, Any]:
    """Scores and metrics of ``model_dir`` on ``data["test"]``."""
    scores = last_frame_scores(model_dir, data["test"], feature)
    return {"feature": feature, "metrics": metrics(scores, data["labels"]),
            "score_mean": {k: float(scores[data["labels"] == i].mean()) for i, k in enumerate(KINDS)
                           if (data["labels"] == i).any()}}
