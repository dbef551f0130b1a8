"""What ``vigil train`` needs to know about each architecture: its training model, loss, data and baselines.

:func:`trainer_for` returns a :class:`Trainer` for an architecture name of :mod:`vigil.model.architectures`.
The training pipeline (:mod:`vigil.model.train`) is the same for all of them: data, callbacks (the collapse
guard of :mod:`vigil.model.collapse` included), calibration and the model card.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Trainer:
    """Training hooks of one architecture.

    Attributes:
        arch: Architecture name.
        loss: Keras loss of the compiled training model.
        target: ``"zeros"`` (the model outputs its own loss, PredNet) or ``"input"`` (an autoencoder).
        build: ``config -> uncompiled training model``.
        core: ``training model -> core layer`` (what the model directory's weights file holds).
        strides: ``config -> temporal strides of the training windows``.
        with_nt: ``(config, nt) -> config`` with another sequence length (fine-tuning).
        outputs: ``(training model, config) -> f(frames (B, T, H, W, C)) -> model's frames``, for the collapse probe.
        baselines: ``(validation frames (N, T, H, W, C), config) -> {name: loss}`` of trivial predictors.
        required: Baselines the model must beat.
    """

    arch: str
    loss: str
    target: str
    build: Callable[[Any], Any]
    core: Callable[[Any], Any]
    strides: Callable[[Any], tuple[int, ...]]
    with_nt: Callable[[Any, int], Any]
    outputs: Callable[[Any, Any], Callable[[np.ndarray], np.ndarray]]
    baselines: Callable[[np.ndarray, Any], dict[str, float]]
    required: tuple[str, ...] = ("constant_frame",)


def _prednet_outputs(model: Any, config: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Frame predictions of the training model's current weights (copied into a prediction-mode twin)."""
    from vigil.model.prednet import build_sequence_model, get_cell

    twin = build_sequence_model(config, "prediction")

    def predict(frames: np.ndarray) -> np.ndarray:
        get_cell(twin).set_weights(get_cell(model).get_weights())
        return np.asarray(twin.predict_on_batch(frames))[:, 1:]  # step 0 predicts from an empty state

    return predict


def prednet_baselines(frames: np.ndarray, config: Any) -> dict[str, float]:
    """PredNet's training loss (layer-0 error, steps 1..T-1) of trivial predictions: a constant frame (black or
    the median pixel, the better) and a copy of the previous frame. Empty when higher layers are weighted (their
    errors depend on the model).

    Example:
        >>> x = np.zeros((1, 3, 2, 2, 1), np.float32); x[:, 1:] = 0.5
        >>> prednet_baselines(x, type("C", (), {"layer_loss_weights": (1.0, 0.0)})())
        {'constant_frame': 0.0, 'previous_frame': 0.125}
    """
    weights = tuple(config.layer_loss_weights)
    if any(weights[1:]):
        return {}
    target = frames[:, 1:].astype(np.float64)
    median = float(np.median(target))
    constant = min(np.abs(target).mean(), np.abs(target - median).mean()) / 2 * weights[0]
    previous = np.abs(target - frames[:, :-1]).mean() / 2 * weights[0]
    return {"constant_frame": float(constant), "previous_frame": float(previous)}


def ae_baselines(frames: np.ndarray, config: Any) -> dict[str, float]:
    """The autoencoder's loss (MSE over the window) of the best constant frame (the mean pixel).

    Example:
        >>> ae_baselines(np.array([[[[[0.0]]], [[[1.0]]]]]), None)
        {'constant_frame': 0.25}
    """
    return {"constant_frame": float(frames.astype(np.float64).var())}


def _ae_outputs(model: Any, config: Any) -> Callable[[np.ndarray], np.ndarray]:
    return lambda frames: np.asarray(model.predict_on_batch(frames))


def _prednet() -> Trainer:
    from vigil.model.prednet import build_training_model, get_cell

    return Trainer(arch="prednet", loss="mae", target="zeros", build=build_training_model, core=get_cell,
                   strides=lambda config: (1,), with_nt=lambda config, nt: dataclasses.replace(config, nt=nt),
                   outputs=_prednet_outputs, baselines=prednet_baselines)


def _convlstm_ae() -> Trainer:
    from vigil.model.convlstm_ae import build_training_model, get_autoencoder

    return Trainer(arch="convlstm-ae", loss="mse", target="input", build=build_training_model, core=get_autoencoder,
                   strides=lambda config: tuple(config.strides),
                   with_nt=lambda config, nt: dataclasses.replace(config, window=nt),
                   outputs=_ae_outputs, baselines=ae_baselines)


def trainer_for(arch: str) -> Trainer:
    """The training hooks of architecture ``arch`` (raises like :func:`~vigil.model.architectures.get_architecture`)."""
    from vigil.model.architectures import get_architecture

    get_architecture(arch)  # unknown / not-yet-available names raise here, with the list of names
    return {"prednet": _prednet, "convlstm-ae": _convlstm_ae}[arch]()
