"""One frame's model output as the score message the worker publishes: the one place that builds it.

The worker publishes what :func:`score_message` returns, and ``vigil evaluate``, ``vigil score``,
``vigil calibrate`` and the benchmarks build their score messages with the same function, so the
scorer sees exactly the same values (quantised maps included) whether it runs live or replays a clip.

Example:
    >>> import numpy as np
    >>> from vigil.model.features import FrameFeatures
    >>> one = np.ones(1, np.float32)
    >>> out = type("Out", (), {"features": FrameFeatures(mse=one * 0.01, psnr=one * 20, patch_max=one * 0.1,
    ...                                                   motion_max=one * 2.0),
    ...                        "heatmaps": np.full((1, 2, 3), 0.01, np.float32),
    ...                        "motion_maps": np.full((1, 2, 3), 2.0, np.float32)})()
    >>> ref = FrameRef("cam", seq=7, session=3, pts=0.7, capture_ns=10**18)
    >>> msg = score_message(ref, ("m", "v1"), out, 0, warmup=False, gap=2, received_ns=10**18, now_ns=10**18)
    >>> msg.session, msg.features.motion_max, msg.heatmap_planes, float(msg.motion_map().max())
    (3, 1.0, 2, 1.0)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from vigil.shared.schemas import ErrorFeatures, ScoreMessage

PSNR_CAP_DB = 100.0
"""A perfect prediction has infinite PSNR; JSON and the scorer want a finite number."""
MAP_ENCODING = "log"
"""Quantisation of the maps: keeps the quiet background resolvable next to a bright anomaly."""


@dataclass(frozen=True)
class FrameRef:
    """What a score copies from its frame message."""

    camera_id: str
    seq: int
    session: int = 0
    pts: float = 0.0
    capture_ns: int = 0
    width: int = 0
    height: int = 0


def _finite(value: float, default: float = 0.0) -> float:
    return value if math.isfinite(value) else default


def score_message(ref: FrameRef, model: tuple[str, str], out: Any, i: int, *, warmup: bool, gap: int,
                  received_ns: int, maps: bool = True, now_ns: int | None = None) -> ScoreMessage:
    """The score message of camera ``i`` of a streaming step's output.

    Args:
        ref: The frame's identity and times (copied into the score, ``session`` included).
        model: ``(model_id, model_version)``.
        out: A step output (``features``, ``heatmaps`` and optionally ``motion_maps``, batch first).
        i: Index of the camera in the step.
        warmup: The camera's state is still warming up (no alerts on this frame).
        gap: Frames since the camera's previous frame (0 after a reset: no previous frame, so no motion
            reading); the flow across skipped frames is spread over them (pixels per frame).
        received_ns: When the worker received the frame (for ``latency_ms``).
        maps: Attach the quantised error map and, when the step has one, the motion map.
        now_ns: The processing time (default: now); replays pass the frame's own time.
    """
    feats = out.features
    per_frame = 1.0 / gap if gap > 0 else 0.0
    features = ErrorFeatures(
        mse=max(0.0, _finite(float(feats.mse[i]))),
        psnr=_finite(float(feats.psnr[i]), PSNR_CAP_DB),
        patch_max=max(0.0, _finite(float(feats.patch_max[i]))),
        motion_max=max(0.0, _finite(float(feats.motion_max[i]) * per_frame)),
    )
    extra: dict[str, Any] = {}
    if maps:
        extra = _maps(np.asarray(out.heatmaps[i], np.float32), getattr(out, "motion_maps", None), i, per_frame)
    now = time.time_ns() if now_ns is None else now_ns
    return ScoreMessage(
        camera_id=ref.camera_id, seq=ref.seq, session=ref.session, pts=_finite(ref.pts), capture_ns=ref.capture_ns,
        processed_ns=now, model_id=model[0], model_version=model[1], warmup=warmup, features=features,
        frame_width=ref.width, frame_height=ref.height,
        latency_ms=max(0.0, (now - received_ns) / 1e6), **extra,
    )  # fmt: skip


def _maps(heat: np.ndarray, motion: np.ndarray | None, i: int, per_frame: float) -> dict[str, Any]:
    """Score-message fields of the quantised error map and (when present) motion map."""
    heat = np.nan_to_num(np.maximum(heat, 0.0), nan=0.0, posinf=0.0)
    payload, scale = ScoreMessage.quantize_heatmap(heat, MAP_ENCODING)
    fields: dict[str, Any] = {"heatmap_height": heat.shape[0], "heatmap_width": heat.shape[1], "heatmap_scale": scale,
                              "heatmap_encoding": MAP_ENCODING}
    if motion is not None:
        flow = np.nan_to_num(np.maximum(np.asarray(motion[i], np.float32) * per_frame, 0.0), nan=0.0, posinf=0.0)
        flow_bytes, flow_scale = ScoreMessage.quantize_heatmap(flow, MAP_ENCODING)
        payload += flow_bytes
        fields |= {"heatmap_planes": 2, "motion_scale": flow_scale}
    return fields | {"payload": payload}
