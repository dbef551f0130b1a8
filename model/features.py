"""Per-frame error features: the typed record that travels, and the ``keras.ops`` code that computes them.

:class:`FrameFeatures` is what leaves the model: one ``(N,)`` float32 array per feature, ``N = B``
cameras of a streaming step or ``T`` frames of a clip. Its field names are the one definition of the
feature names (model card statistics, CSV columns, score message fields all use them).

:func:`error_features` runs inside the compiled step and returns :class:`ErrorTensors` (backend
tensors); the streaming step turns those into a :class:`FrameFeatures` and adds ``motion_max`` from
:mod:`vigil.model.motion`. Keras is imported inside the functions, so the record is cheap to import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, NamedTuple

import numpy as np

from vigil.model.config import FeatureConfig

_INFO = "info"


@dataclass(frozen=True)
class FeatureInfo:
    """What one feature of :class:`FrameFeatures` measures.

    Attributes:
        unit: Unit of the values.
        source: ``"prednet"`` (the prediction error) or ``"optical flow"`` (:mod:`vigil.model.motion`).
        scope: ``"frame"`` (over the whole frame) or ``"patch"`` (the largest value over local patches).
        anomaly_sign: ``1.0`` when a larger value is more anomalous, ``-1.0`` when a smaller one is.
    """

    unit: str
    source: Literal["prednet", "optical flow"]
    scope: Literal["frame", "patch"]
    anomaly_sign: float = 1.0


def _feature(unit: str, source: Literal["prednet", "optical flow"], scope: Literal["frame", "patch"],
             anomaly_sign: float = 1.0) -> Any:
    """A :class:`FrameFeatures` field described by a :class:`FeatureInfo`."""
    return field(metadata={_INFO: FeatureInfo(unit, source, scope, anomaly_sign)})


@dataclass(frozen=True, eq=False)  # arrays have no single truth value: compare fields with numpy
class FrameFeatures:
    """Per-frame prediction-error features of ``N`` frames (``B`` cameras of a step, ``T`` frames of a clip).

    Errors are on frames scaled to ``[0, pixel_max]`` (1.0 for the shipped models), squared differences
    averaged over channels. Each field's :class:`FeatureInfo` (:meth:`info`) gives its unit, source,
    scope and anomaly direction; :meth:`names` lists the fields, which are also the on-disk keys.

    Attributes:
        mse: ``(N,)`` float32, frame mean squared prediction error (squared pixel value).
        psnr: ``(N,)`` float32, peak signal-to-noise ratio of the prediction in dB w.r.t. ``pixel_max``
            (higher = better predicted).
        patch_max: ``(N,)`` float32, largest mean squared prediction error over ``patch_size`` patches
            at ``patch_stride`` (:class:`~vigil.model.config.FeatureConfig`).
        motion_max: ``(N,)`` float32, largest mean optical-flow speed over the same patches, in model
            pixels per frame; 0 when motion is switched off.

    Example:
        >>> f = FrameFeatures.from_mapping({n: [1.0, 2.0] for n in FrameFeatures.names()})
        >>> len(f), FrameFeatures.names(scope="patch"), f.frame(1)["psnr"]
        (2, ('patch_max', 'motion_max'), 2.0)
    """

    mse: np.ndarray = _feature("squared pixel value", "prednet", "frame")
    psnr: np.ndarray = _feature("dB", "prednet", "frame", anomaly_sign=-1.0)
    patch_max: np.ndarray = _feature("squared pixel value", "prednet", "patch")
    motion_max: np.ndarray = _feature("model pixels per frame", "optical flow", "patch")

    def __post_init__(self) -> None:
        shapes = {n: np.shape(getattr(self, n)) for n in self.names()}
        if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
            raise ValueError(f"Every feature must be one (N,) array. Received: shapes={shapes}")

    @classmethod
    def names(cls, **where: str) -> tuple[str, ...]:
        """The feature names in field order; with ``where``, only those whose :class:`FeatureInfo` matches."""
        return tuple(f.name for f in fields(cls)
                     if all(getattr(f.metadata[_INFO], k) == v for k, v in where.items()))

    @classmethod
    def info(cls, name: str) -> FeatureInfo:
        """Unit, source, scope and anomaly direction of the feature ``name``."""
        return next(f.metadata[_INFO] for f in fields(cls) if f.name == name)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FrameFeatures:
        """From ``{name: (N,) values}`` holding every feature (e.g. a cache file); float32 arrays."""
        return cls(**{n: np.asarray(values[n], np.float32) for n in cls.names()})

    @classmethod
    def concat(cls, parts: Sequence[FrameFeatures]) -> FrameFeatures:
        """The records one after the other (``N`` = the sum of theirs)."""
        return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in cls.names()})

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{name: (N,) array}`` in field order (for files keyed by feature name)."""
        return {n: getattr(self, n) for n in self.names()}

    def frame(self, i: int) -> dict[str, float]:
        """The features of frame ``i`` as ``{name: float}`` in field order."""
        return {n: float(getattr(self, n)[i]) for n in self.names()}

    def __getitem__(self, index: slice | np.ndarray | list[int]) -> FrameFeatures:
        """The frames selected by ``index`` (a slice or index array; keeps the ``(N,)`` shape)."""
        return FrameFeatures(**{n: getattr(self, n)[index] for n in self.names()})

    def __len__(self) -> int:
        return len(self.mse)


FEATURE_NAMES = FrameFeatures.names()
"""Per-frame features of a streaming step, in order: the fields of :class:`FrameFeatures`."""


class ErrorTensors(NamedTuple):
    """The PredNet error features of a batch as backend tensors, inside the compiled step.

    Attributes:
        mse: ``(B,)`` frame mean squared error.
        psnr: ``(B,)`` dB w.r.t. ``pixel_max``.
        patch_max: ``(B,)`` largest mean squared error over ``patch_size`` patches at ``patch_stride``.
        heatmap: ``(B, H // s, W // s)`` mean squared error over ``s = heatmap_stride`` cells.
    """

    mse: Any
    psnr: Any
    patch_max: Any
    heatmap: Any


def squared_error_map(prediction: Any, frame: Any) -> Any:
    """Squared error averaged over channels: ``(B, H, W, C) -> (B, H, W, 1)``."""
    from keras import ops

    return ops.mean(ops.square(prediction - frame), axis=-1, keepdims=True)


def error_features(error_map: Any, config: FeatureConfig, pixel_max: float = 1.0) -> ErrorTensors:
    """PredNet error features from a squared-error map ``(B, H, W, 1)`` (see :class:`ErrorTensors`)."""
    from keras import ops

    mse = ops.mean(error_map, axis=(1, 2, 3))
    psnr = 10.0 * ops.log10(pixel_max**2 / ops.maximum(mse, 1e-10))
    patches = ops.average_pool(error_map, config.patch_size, config.patch_stride, padding="valid")
    s = config.heatmap_stride
    heatmap = ops.average_pool(error_map, s, s, padding="valid")
    return ErrorTensors(mse=mse, psnr=psnr, patch_max=ops.max(patches, axis=(1, 2, 3)),
                        heatmap=ops.squeeze(heatmap, axis=-1))
