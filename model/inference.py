"""Run whole clips through the streaming step, several clips side by side as a batch of "cameras"."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vigil.model.features import FrameFeatures
from vigil.model.streaming import StreamingPredictor

log = logging.getLogger(__name__)


@dataclass
class ClipOutput:
    """Per-frame outputs of one clip, each stream started from a zero state.

    Attributes:
        features: The clip's error features, each ``(T,)`` float32.
        heatmaps: ``(T, h, w)`` float32.
        motion_maps: ``(T, h, w)`` float32 optical-flow speed on the heat map's grid.
    """

    features: FrameFeatures
    heatmaps: np.ndarray
    motion_maps: np.ndarray


def run_clips(predictor: StreamingPredictor, clips: dict[str, np.ndarray], batch: int = 16,
              progress: bool = True) -> dict[str, ClipOutput]:
    """Step every clip from a fresh state, ``batch`` clips at a time (exactly as the worker does).

    Args:
        predictor: The model.
        clips: ``{name: (T, H, W, C) uint8}`` at the model's input shape.
        batch: Clips stepped together.
        progress: Show a tqdm bar over frames.

    Returns:
        ``{name: ClipOutput}``.
    """
    names = list(clips)
    out: dict[str, ClipOutput] = {}
    for i in range(0, len(names), batch):
        out.update(_run_group(predictor, {n: clips[n] for n in names[i:i + batch]}, progress))
    return out


def _run_group(predictor: StreamingPredictor, clips: dict[str, np.ndarray], progress: bool) -> dict[str, ClipOutput]:
    from tqdm import tqdm

    names = list(clips)
    length = max(len(v) for v in clips.values())
    feats: dict[str, list[FrameFeatures]] = {n: [] for n in names}
    heat = {n: np.zeros((len(clips[n]), *predictor.heatmap_shape), np.float32) for n in names}
    flow = {n: np.zeros_like(heat[n]) for n in names}
    states = {n: predictor.initial_state() for n in names}
    for t in tqdm(range(length), desc="step", unit="frame", disable=not progress, leave=False):
        active = [n for n in names if t < len(clips[n])]
        result = predictor.step(np.stack([clips[n][t] for n in active]), [states[n] for n in active])
        for k, n in enumerate(active):
            states[n] = result.new_states[k]
            heat[n][t] = result.heatmaps[k]
            flow[n][t] = result.motion_maps[k]
            feats[n].append(result.features[k:k + 1])
    return {n: ClipOutput(FrameFeatures.concat(feats[n]), heat[n], flow[n]) for n in names}
