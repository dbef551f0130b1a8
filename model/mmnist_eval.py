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


PATCHES = (2, 3, 4, 8, 16)
"""Patch sides of the ``patch_max`` features the score is chosen among."""


def feature_names() -> list[str]:
    """``mse`` and ``patch_max_<k>`` for every ``k`` of :data:`PATCHES`."""
    return ["mse", *(f"patch_max_{k}" for k in PATCHES)]


def error_features(errors: np.ndarray) -> dict[str, np.ndarray]:
    """The model's frame features of squared-error maps ``(N, H, W)``: ``mse`` (the mean) and ``patch_max_<k>``
    (the largest mean over ``k x k`` patches, stride 1; the streaming step's ``patch_max`` at that patch size).

    Example:
        >>> e = np.zeros((1, 16, 16)); e[0, 2:5, 2:5] = 1.0
        >>> f = error_features(e); float(f["mse"][0]), float(f["patch_max_3"][0]), float(f["patch_max_4"][0])
        (0.03515625, 1.0, 0.5625)
    """
    errors = np.asarray(errors, np.float64)
    if errors.ndim != 3 or min(errors.shape[1:]) < max(PATCHES):
        raise ValueError(f"errors must be (N, H, W) with H, W >= {max(PATCHES)}. Received: {errors.shape}")
    integral = np.pad(errors.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    out = {"mse": errors.mean(axis=(1, 2))}
    for k in PATCHES:
        sums = integral[:, k:, k:] - integral[:, :-k, k:] - integral[:, k:, :-k] + integral[:, :-k, :-k]
        out[f"patch_max_{k}"] = sums.max(axis=(1, 2)) / (k * k)
    return out


def last_frame_errors(model_dir: str | os.PathLike, sequences: np.ndarray, batch: int = 32,
                      progress: bool = True) -> np.ndarray:
    """The error map ``(N, H, W)`` of the last frame of each ``(N, T, H, W)`` uint8 sequence, stepped from a zero
    state with the model's streaming step (the worker's :meth:`StreamingPredictor.step`).

    The map is the architecture's own: the squared error of the prediction for PredNet and the ConvLSTM-AE,
    the per-pixel negative log-likelihood of the true intensities for the inpainter (its anomaly score, the
    map its streaming step scores). The inpainter's state after frames ``0..T-2`` is its last ``context``
    frames (:func:`inpaint_state`), so only the last frame is stepped: the same map, ~``T`` times cheaper.
    """
    from tqdm import tqdm

    from vigil.model.streaming import StreamingPredictor

    predictor = StreamingPredictor.load(model_dir)
    predictor.motion = False
    out = np.empty(sequences.shape[:1] + sequences.shape[2:], np.float32)
    for i in tqdm(range(0, len(sequences), batch), desc="sequences", unit="batch", disable=not progress):
        group = sequences[i:i + batch, ..., None]
        if predictor.arch.name == "inpaint":
            states = [inpaint_state(seq, predictor.config.context) for seq in group]
            out[i:i + batch] = own_error_map(predictor, group[:, -1], states)
            continue
        states = [predictor.initial_state() for _ in group]
        for t in range(group.shape[1]):
            result = predictor.step(group[:, t], states)
            states = result.new_states
        truth = group[:, -1, ..., 0].astype(np.float32) / 255.0
        out[i:i + batch] = (np.asarray(result.predictions)[..., 0] - truth) ** 2
    return out


def inpaint_state(sequence: np.ndarray, context: int) -> list[np.ndarray]:
    """The inpainter's streaming state ``[past (K, H, W, C) uint8, started (1,)]`` after every frame of
    ``(T, H, W, C)`` but the last: the ``K = context`` frames before the last one, started. Requires
    ``T > K``.

    Example:
        >>> seq = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1)
        >>> past, started = inpaint_state(seq, 3)
        >>> past.ravel().tolist(), started.tolist()
        ([2, 3, 4], [1.0])
    """
    if len(sequence) <= context:
        raise ValueError(f"Need more than context={context} frames. Received: {len(sequence)}")
    return [np.ascontiguousarray(sequence[-context - 1:-1]), np.ones((1,), np.float32)]


def own_error_map(predictor: Any, frames: np.ndarray, states: list[list[np.ndarray]]) -> np.ndarray:
    """``(B, H, W)`` error map of the architecture's streaming step (:attr:`Architecture.stream_step`, the
    function the worker's step graph wraps) for ``frames`` ``(B, H, W, C)`` uint8 and per-camera ``states``."""
    batched = [np.stack([s[k] for s in states]) for k in range(len(states[0]))]
    _, error_map, _ = predictor.arch.stream_step(predictor.cell, predictor.config, frames, batched)
    return np.asarray(error_map, np.float32).mean(axis=-1)


def choose_feature(features: dict[str, np.ndarray], labels: np.ndarray) -> tuple[str, dict[str, Any]]:
    """The feature with the highest accuracy at precision = recall on the labelled **validation** set (ties:
    the higher AUC, then the first name), and every feature's validation metrics."""
    table = {name: metrics(values, labels)["all"] for name, values in features.items()}
    best = max(table, key=lambda n: (table[n]["accuracy_pr"], table[n]["auc"], -list(table).index(n)))
    return best, table


def evaluate(model_dir: str | os.PathLike, data: dict[str, np.ndarray], feature: str = "auto",
             val: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Metrics of ``model_dir`` on ``data["test"]`` with ``feature`` as the score; ``"auto"`` chooses it on the
    labelled validation set ``val`` (:func:`~vigil.model.moving_mnist.make_validation`, train-pool digits)
    before the test set is scored. The test metrics of ``mse`` (the default feature) are reported beside it."""
    names = feature_names()
    if feature != "auto" and feature not in names:
        raise ValueError(f"feature must be 'auto' or one of {names}. Received: {feature!r}")
    result: dict[str, Any] = {}
    if feature == "auto":
        if val is None:
            raise ValueError("feature='auto' needs a validation set (make_validation).")
        feature, table = choose_feature(error_features(last_frame_errors(model_dir, val["val"])), val["val_labels"])
        result["validation"] = {"n": len(val["val_labels"]), "chosen": feature, "metrics": table}
    test = error_features(last_frame_errors(model_dir, data["test"]))
    labels = data["labels"]
    result.update({"feature": feature, "metrics": metrics(test[feature], labels),
                   "mse_metrics": metrics(test["mse"], labels),
                   "score_mean": {k: float(test[feature][labels == i].mean()) for i, k in enumerate(KINDS)
                                  if (labels == i).any()}})
    return result
