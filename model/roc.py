"""Frame-level detection metrics: ROC curve, ROC AUC and equal error rate (numpy only)."""

from __future__ import annotations

import numpy as np


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in length. Received: {labels.shape} vs {scores.shape}")
    if labels.all() or not labels.any():
        raise ValueError("ROC needs both positive and negative labels. Received: a single class")
    return labels, scores


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates for every distinct threshold, starting at (0, 0).

    Returns:
        ``(fpr, tpr, thresholds)``; a frame is positive when ``score >= threshold``.

    Example:
        >>> fpr, tpr, _ = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps / y.sum()]
    fpr = np.r_[0.0, fps / (~y).sum()]
    return fpr, tpr, np.r_[np.inf, s[last]]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half), equal to scikit-learn's ``roc_auc_score``.

    Example:
        >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate: where the false positive rate equals the miss rate ``1 - tpr``.

    Linear interpolation between the two ROC points around the crossing.

    Example:
        >>> eer(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.5
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    diff = fpr - (1.0 - tpr)  # rises from -1 to +1 along the curve
    k = int(np.flatnonzero(diff >= 0)[0])
    if diff[k] == 0 or k == 0:
        return float(fpr[k])
    w = -diff[k - 1] / (diff[k] - diff[k - 1])
    return float(fpr[k - 1] + w * (fpr[k] - fpr[k - 1]))
