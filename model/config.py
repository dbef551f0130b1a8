"""Configuration of a PredNet model and of its error features.

The configuration is a plain, JSON-serialisable dataclass so that it can be written next to the
weights (``config.json``) and read back without Keras.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

OUTPUT_MODES = ("prediction", "error", "all")


@dataclass
class FeatureConfig:
    """How per-frame error features are computed from the squared prediction error.

    Attributes:
        patch_size: Side (model pixels) of the square patches whose mean squared error is taken;
            ``patch_max`` is the largest of them.
        patch_stride: Stride (model pixels) between patches.
        heatmap_stride: Side of the average-pooling window of the error heat map (1/8 of the frame
            each side by default).
    """

    patch_size: int = 16
    patch_stride: int = 8
    heatmap_stride: int = 8

    def validate(self, height: int, width: int) -> None:
        """Raise ``ValueError`` if the sizes do not fit a ``height`` x ``width`` frame."""
        for name in ("patch_size", "patch_stride", "heatmap_stride"):
            value = getattr(self, name)
            if value < 1 or value > min(height, width):
                raise ValueError(f"{name} must be in [1, {min(height, width)}]. Received: {name}={value}")


class ArchConfig:
    """What every architecture's config dataclass shares: the input and heat-map shapes and the JSON round trip;
    ``ARCH`` names the architecture."""

    ARCH: ClassVar[str]
    height: int
    width: int
    channels: int
    features: FeatureConfig

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one model input frame."""
        return (self.height, self.width, self.channels)

    @property
    def heatmap_shape(self) -> tuple[int, int]:
        """``(h, w)`` of the error heat map."""
        s = self.features.heatmap_stride
        return (self.height // s, self.width // s)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists), with the architecture name (``"arch"``)."""
        return {"arch": self.ARCH, **json.loads(json.dumps(dataclasses.asdict(self)))}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys or another ``"arch"`` raise ``ValueError`` (no ``"arch"``:
        this class's, as PredNet configs written before the architecture registry have none)."""
        data = dict(data)
        arch = data.pop("arch", cls.ARCH)
        if arch != cls.ARCH:
            raise ValueError(f"Not a {cls.ARCH} config. Received: arch={arch!r}")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"Unknown {cls.__name__} keys. Received: {sorted(unknown)}")
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Self:
        """Read a config written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class PredNetConfig(ArchConfig):
    """Architecture, input size and loss weights of a PredNet (Lotter, Kreiman & Cox, 2016).

    Attributes:
        height: Model input height (pixels); divisible by ``2 ** (n_layers - 1)``.
        width: Model input width (pixels); divisible by ``2 ** (n_layers - 1)``.
        channels: Image channels (1 gray, 3 colour); equals ``stack_sizes[0]``.
        stack_sizes: Channels of the targets/predictions ``A_l`` / ``Ahat_l`` per layer.
        r_stack_sizes: Channels of the representation units ``R_l`` per layer.
        a_filt_sizes: Kernel size of the conv making ``A_{l+1}`` from ``E_l`` (n_layers - 1 values).
        ahat_filt_sizes: Kernel size of the conv making ``Ahat_l`` from ``R_l``.
        r_filt_sizes: Kernel size of the convolutional LSTM of ``R_l``.
        pixel_max: Largest pixel value; ``Ahat_0`` is clipped to it.
        lstm_activation: Activation of the LSTM cell candidate and output.
        lstm_inner_activation: Activation of the LSTM gates.
        layer_loss_weights: Weight of each layer's mean error in the loss.
        nt: Frames per training sequence.
        features: Error feature settings.
    """

    ARCH: ClassVar[str] = "prednet"
    """The architecture name (``"arch"`` in ``config.json``; see :mod:`vigil.model.architectures`)."""

    height: int = 120
    width: int = 180
    channels: int = 1
    stack_sizes: tuple[int, ...] = (1, 12, 24)
    r_stack_sizes: tuple[int, ...] = (4, 12, 24)
    a_filt_sizes: tuple[int, ...] = (3, 3)
    ahat_filt_sizes: tuple[int, ...] = (3, 3, 3)
    r_filt_sizes: tuple[int, ...] = (3, 3, 3)
    pixel_max: float = 1.0
    lstm_activation: str = "tanh"
    lstm_inner_activation: str = "hard_sigmoid"
    layer_loss_weights: tuple[float, ...] = (1.0, 0.0, 0.0)
    nt: int = 10
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        for name in ("stack_sizes", "r_stack_sizes", "a_filt_sizes", "ahat_filt_sizes", "r_filt_sizes",
                     "layer_loss_weights"):
            setattr(self, name, tuple(getattr(self, name)))
        if isinstance(self.features, dict):
            self.features = FeatureConfig(**self.features)
        self.validate()

    @property
    def n_layers(self) -> int:
        """Number of PredNet layers."""
        return len(self.stack_sizes)

    def time_loss_weights(self) -> list[float]:
        """Weights of the time steps in the loss: 0 for the first, ``1 / (nt - 1)`` for the others."""
        return [0.0] + [1.0 / (self.nt - 1)] * (self.nt - 1)

    def validate(self) -> None:
        """Raise ``ValueError`` on inconsistent settings."""
        n = self.n_layers
        if n < 1:
            raise ValueError(f"stack_sizes must not be empty. Received: stack_sizes={self.stack_sizes}")
        checks = {"r_stack_sizes": n, "ahat_filt_sizes": n, "r_filt_sizes": n, "a_filt_sizes": n - 1,
                  "layer_loss_weights": n}
        for name, expected in checks.items():
            if len(getattr(self, name)) != expected:
                raise ValueError(
                    f"{name} must have {expected} values for {n} layers. Received: {name}={getattr(self, name)}"
                )
        if self.channels != self.stack_sizes[0]:
            raise ValueError(
                f"channels must equal stack_sizes[0]. Received: channels={self.channels}, "
                f"stack_sizes={self.stack_sizes}"
            )
        factor = 2 ** (n - 1)
        if self.height % factor or self.width % factor:
            raise ValueError(
                f"height and width must be divisible by 2**(n_layers-1)={factor}. "
                f"Received: height={self.height}, width={self.width}"
            )
        if self.nt < 2:
            raise ValueError(f"nt must be at least 2. Received: nt={self.nt}")
        self.features.validate(self.height, self.width)

    def cell_kwargs(self, output_mode: str = "error") -> dict[str, Any]:
        """Keyword arguments for :class:`vigil.model.prednet.PredNetCell`."""
        return {
            "stack_sizes": list(self.stack_sizes),
            "r_stack_sizes": list(self.r_stack_sizes),
            "a_filt_sizes": list(self.a_filt_sizes),
            "ahat_filt_sizes": list(self.ahat_filt_sizes),
            "r_filt_sizes": list(self.r_filt_sizes),
            "pixel_max": self.pixel_max,
            "lstm_activation": self.lstm_activation,
            "lstm_inner_activation": self.lstm_inner_activation,
            "output_mode": output_mode,
        }

