"""The model families behind the one streaming predictor, keyed by the ``"arch"`` of a model directory.

A model directory's ``config.json`` names its architecture in ``"arch"`` (absent: ``"prednet"``, so the
directories written before the registry load unchanged). Each :class:`Architecture` knows how to read its
config, build its core (a built Keras layer), load and save the core's weights, and run one streaming step
with ``keras.ops``: ``frames (B, H, W, C) uint8`` and the cameras' states in, ``(prediction, squared error map
(B, H, W, 1), new states)`` out. :mod:`vigil.model.streaming` wraps that step with the error features, so the
worker, ``vigil evaluate``, ``vigil score``, ``vigil calibrate`` and the scorer work with any registered model.

Example:
    >>> names(), get_architecture("prednet").weights_file
    (('prednet', 'convlstm-ae', 'inpaint'), 'prednet.weights.npz')
    >>> arch_of_dict({"height": 120}), arch_of_dict({"arch": "convlstm-ae"})
    ('prednet', 'convlstm-ae')
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_ARCH = "prednet"
CONFIG_FILE = "config.json"

StateSpec = tuple[tuple[int, ...], str]
"""Per-camera ``(shape without batch dimension, dtype)`` of one state array."""


@dataclass(frozen=True)
class Architecture:
    """One model family.

    Attributes:
        name: The ``"arch"`` value (``vigil train --arch``).
        summary: One line for model cards and help texts.
        weights_file: File name of the core's weights in a model directory.
        config_type: Its config dataclass (``from_dict``, ``load``, ``save``, ``input_shape``, ``features``).
        build_core: ``config -> built core layer`` (random weights).
        state_specs: ``core -> [StateSpec]``.
        stream_step: ``(core, config, frames uint8, states) -> (prediction, error map, new states)`` (``keras.ops``).
    """

    name: str
    summary: str
    weights_file: str
    config_type: type
    build_core: Callable[[Any], Any]
    state_specs: Callable[[Any], list[StateSpec]]
    stream_step: Callable[[Any, Any, Any, list[Any]], tuple[Any, Any, list[Any]]]

    def load_config(self, path: str | os.PathLike) -> Any:
        """The config of a model directory (or a ``config.json`` path)."""
        path = Path(path)
        return self.config_type.load(path / CONFIG_FILE if path.is_dir() else path)

    def load_weights(self, core: Any, path: str | os.PathLike) -> None:
        """Load the core's weights (names and shapes checked)."""
        from vigil.model.prednet import load_cell_weights

        load_cell_weights(core, path)

    def save_weights(self, core: Any, path: str | os.PathLike) -> None:
        """Save the core's weights in order, with their names."""
        from vigil.model.prednet import save_cell_weights

        save_cell_weights(core, path)


class NotYetAvailableError(ValueError):
    """An architecture that is planned (listed) but not implemented yet."""


def _prednet() -> Architecture:
    from vigil.model.config import PredNetConfig
    from vigil.model.prednet import build_cell

    def step(cell: Any, config: PredNetConfig, frames: Any, states: list[Any]) -> tuple[Any, Any, list[Any]]:
        from keras import ops

        from vigil.model.features import squared_error_map

        x = ops.cast(frames, "float32") * (config.pixel_max / 255.0)
        prediction, new_states = cell(x, states)
        return prediction, squared_error_map(prediction, x), list(new_states)

    return Architecture(
        name="prednet", summary="PredNet (Lotter, Kreiman & Cox 2016), next-frame prediction error",
        weights_file="prednet.weights.npz", config_type=PredNetConfig,
        build_core=lambda config: build_cell(config, "prediction"),
        state_specs=lambda cell: [(tuple(s), "float32") for s in cell.state_shapes()], stream_step=step,
    )  # fmt: skip


def _convlstm_ae() -> Architecture:
    from vigil.model import convlstm_ae as ae

    return Architecture(
        name=ae.ARCH, summary="ConvLSTM autoencoder (Hasan et al. 2016; Chong & Tay 2017), window reconstruction error",
        weights_file=ae.WEIGHTS_FILE, config_type=ae.ConvLSTMAEConfig, build_core=ae.build_autoencoder,
        state_specs=lambda core: core.state_specs(),
        stream_step=lambda core, config, frames, states: core.stream_step(frames, states),
    )  # fmt: skip


def _inpaint() -> Architecture:
    from vigil.model.inpaint import architecture

    return architecture()


_FACTORIES: dict[str, Callable[[], Architecture] | None] = {
    "prednet": _prednet,
    "convlstm-ae": _convlstm_ae,
    "inpaint": _inpaint,
}


def names() -> tuple[str, ...]:
    """Every architecture name, the ones not yet available included."""
    return tuple(_FACTORIES)


def get_architecture(name: str) -> Architecture:
    """The architecture called ``name``; ``ValueError`` (:class:`NotYetAvailableError` for planned ones) otherwise."""
    if name not in _FACTORIES:
        raise ValueError(f"Unknown architecture; expected one of {names()}. Received: arch={name!r}")
    factory = _FACTORIES[name]
    if factory is None:
        available = tuple(n for n, f in _FACTORIES.items() if f is not None)
        raise NotYetAvailableError(f"Architecture {name!r} is not available yet (planned, issue 14); "
                              f"use one of {available}.")
    return factory()


def weights_files() -> tuple[str, ...]:
    """The weights file names of every available architecture (without importing Keras).

    Example:
        >>> weights_files()
        ('prednet.weights.npz', 'convlstm_ae.weights.npz', 'inpaint.weights.npz')
    """
    return ("prednet.weights.npz", "convlstm_ae.weights.npz", "inpaint.weights.npz")


def arch_of_dict(data: dict[str, Any]) -> str:
    """The architecture named by a config dict (``"prednet"`` when it names none)."""
    arch = data.get("arch", DEFAULT_ARCH)
    if not isinstance(arch, str):
        raise ValueError(f"config 'arch' must be a string. Received: {arch!r}")
    return arch


def arch_of_dir(model_dir: str | os.PathLike) -> str:
    """The architecture of a model directory, from its ``config.json``."""
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} is not a model directory (no {CONFIG_FILE}).")
    return arch_of_dict(json.loads(path.read_text()))


def arch_of_config(config: Any) -> str:
    """The architecture of a config object (its class's ``ARCH``; PredNet's when it has none)."""
    return str(getattr(type(config), "ARCH", DEFAULT_ARCH))
