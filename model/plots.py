"""Evaluation plots (matplotlib, Agg backend): score curves, ROC, localisation examples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _spans(labels: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` runs of label 1."""
    edges = np.diff(np.r_[0, labels.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def plot_clip_scores(path: Path, labels: dict[str, np.ndarray], scores: dict[str, np.ndarray], title: str) -> None:
    """One panel per clip: the anomaly score over frames, labelled anomalous spans shaded."""
    plt = _pyplot()
    n = len(scores)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 2.4 * rows), squeeze=False)
    for ax, (name, score) in zip(axes.flat, scores.items(), strict=False):
        ax.plot(score, lw=1, color="tab:blue")
        for a, b in _spans(labels[name]):
            ax.axvspan(a, b, color="tab:red", alpha=0.2, lw=0)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"causal anomaly score ({title}); red = labelled anomalous", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_roc(path: Path, labels: dict[str, np.ndarray], scores: dict[str, dict[str, dict[str, np.ndarray]]],
             keys: list[str], roc_curve: Callable, minmax_key: str | None = None) -> None:
    """ROC curves of the causal score variants ``keys`` and the per-clip min-max of ``minmax_key``
    (default: the last key)."""
    plt = _pyplot()
    names = list(labels)
    y = np.concatenate([labels[n] for n in names])
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for kind, key in [("causal", k) for k in keys] + [("per_clip_minmax", minmax_key or keys[-1])]:
        fpr, tpr, _ = roc_curve(y, np.concatenate([scores[n][kind][key] for n in names]))
        ax.plot(fpr, tpr, label=f"{kind}: {key} (AUC {np.trapezoid(tpr, fpr):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_localisation(path: Path, labels: dict[str, np.ndarray], frames: dict[str, np.ndarray],
                      heatmaps: dict[str, np.ndarray], masks: dict[str, np.ndarray], n_warmup: int,
                      examples: int = 6) -> None:
    """Anomalous frames (``frames``: ``(T, H, W, C)`` gray or BGR) with the error heat map, the
    ground-truth mask outline and the top patch."""
    import cv2

    plt = _pyplot()
    picks = []
    for name, lab in labels.items():
        idx = np.flatnonzero(lab[n_warmup:]) + n_warmup
        if len(idx) and name in masks:
            picks.append((name, int(idx[len(idx) // 2])))
    picks = picks[:examples]
    if not picks:
        return
    fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 2.6), squeeze=False)
    for ax, (name, t) in zip(axes.flat, picks, strict=True):
        frame = frames[name][t]
        h, w = frame.shape[:2]
        heat = cv2.resize(heatmaps[name][t], (w, h), interpolation=cv2.INTER_NEAREST)
        mask = cv2.resize(masks[name][t], (w, h), interpolation=cv2.INTER_NEAREST)
        ax.imshow(frame[:, :, 0] if frame.shape[2] == 1 else frame[:, :, ::-1], cmap="gray")  # BGR -> RGB
        ax.imshow(heat, cmap="inferno", alpha=0.45)
        ax.contour(mask, levels=[0.5], colors="lime", linewidths=0.8)
        hm = heatmaps[name][t]
        win = (hm[:-1, :-1] + hm[1:, :-1] + hm[:-1, 1:] + hm[1:, 1:])
        i, j = np.unravel_index(int(np.argmax(win)), win.shape)
        sy, sx = h / hm.shape[0], w / hm.shape[1]
        ax.add_patch(plt.Rectangle((j * sx, i * sy), 2 * sx, 2 * sy, fill=False, ec="cyan", lw=1))
        ax.set_title(f"{name} frame {t}", fontsize=8)
        ax.axis("off")
    fig.suptitle("error heat map; green = ground-truth mask; cyan = largest-error patch", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_regularity(path: Path, labels: dict[str, np.ndarray], regularity: dict[str, np.ndarray],
                    warmup: dict[str, np.ndarray], model_id: str) -> None:
    """The sources' regularity-score curves, one panel per clip: ``s_r(t) = 1 - s_a(t)`` with ``s_a`` the frame
    error min-max scaled **per clip** (it uses the clip's future: for comparison with the literature only);
    warm-up frames are left out, labelled anomalous spans shaded."""
    plt = _pyplot()
    n = len(regularity)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.2 * rows), squeeze=False)
    for ax, (name, s_r) in zip(axes.flat, regularity.items(), strict=False):
        ax.plot(np.where(warmup[name], np.nan, s_r), lw=1, color="tab:green")
        for a, b in _spans(labels[name]):
            ax.axvspan(a, b, color="tab:red", alpha=0.2, lw=0)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{model_id}: regularity score s_r(t) = 1 - s_a(t), s_a = frame MSE min-max scaled PER CLIP "
                 "(uses the clip's future; comparison only); red = labelled anomalous", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
