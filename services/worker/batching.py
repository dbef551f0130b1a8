"""Batch assembly: turn one batch of frames taken from Kafka into batched model steps.

A batch holds frames of many cameras, sometimes several of one camera. One model step can take at most
one frame per camera (each camera's state advances by one frame), so the batch is cut into *waves*:
wave ``k`` holds the ``k``-th frame of every camera that has one. Waves run in order, so each camera's
frames are stepped in their order in the batch (its Kafka partition order); none is skipped. Cameras
served by different models (per-camera overrides) go to separate steps of the same wave.

Example:
    >>> plan_steps(["a", "b", "a", "c", "a"], ["m", "m", "m", "x", "m"])
    [Step(model_key='m', positions=(0, 1)), Step(model_key='x', positions=(3,)), Step(model_key='m', positions=(2,)), Step(model_key='m', positions=(4,))]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One batched model step: positions (in the batch) of frames of distinct cameras, one model."""

    model_key: str
    positions: tuple[int, ...]


def plan_waves(camera_ids: Sequence[str]) -> list[list[int]]:
    """Group batch positions into waves; wave ``k`` holds the ``k``-th frame of each camera.

    Example:
        >>> plan_waves(["a", "b", "a", "a", "b"])
        [[0, 1], [2, 4], [3]]
    """
    waves: list[list[int]] = []
    seen: dict[str, int] = {}
    for pos, cam in enumerate(camera_ids):
        k = seen.get(cam, 0)
        seen[cam] = k + 1
        if k == len(waves):
            waves.append([])
        waves[k].append(pos)
    return waves


def plan_steps(camera_ids: Sequence[str], model_keys: Sequence[str], max_step: int | None = None) -> list[Step]:
    """Cut a batch into model steps: waves in order, split by model and by ``max_step`` frames.

    Args:
        camera_ids: Camera of each frame, in batch order.
        model_keys: Model serving each frame's camera (same length).
        max_step: Largest step; None = no limit.

    Returns:
        Steps to run in order; every position appears exactly once, and a camera's positions appear in
        increasing order across the steps.
    """
    if len(camera_ids) != len(model_keys):
        raise ValueError(f"camera_ids and model_keys differ in length. Received: {len(camera_ids)}, {len(model_keys)}")
    if max_step is not None and max_step < 1:
        raise ValueError(f"max_step must be >= 1. Received: max_step={max_step}")
    steps: list[Step] = []
    for wave in plan_waves(camera_ids):
        by_model: dict[str, list[int]] = {}
        for pos in wave:
            by_model.setdefault(model_keys[pos], []).append(pos)
        for key, positions in by_model.items():
            size = max_step or len(positions)
            steps.extend(Step(key, tuple(positions[i : i + size])) for i in range(0, len(positions), size))
    return steps
