"""What ``vigil train`` needs to know about each architecture: its training model, loss, data and baselines.

:func:`trainer_for` returns a :class:`Trainer` for an architecture name of :mod:`vigil.model.architectures`.
The training pipeline (:mod:`vigil.model.train`) is the same for all of them: data, callbacks (the collapse
guard of :mod:`vigil.model.collapse` included), calibration and the model card.

Two training objectives (``TrainSettings.objective``):

* ``"default"``: each architecture's own loss (PredNet: the paper's mean layer-0 error units, MAE against zeros;
  the autoencoder: MSE of the window). On sparse, mostly black frames the median pixel is black, so an L1 loss
  is smallest for an empty frame until the model knows where the objects are; PredNet's ``ReLU`` prediction
  then dies (outputs exactly 0, no gradient) and never recovers.
* ``"sparse"``: the predicted (PredNet, steps 1..T-1) or reconstructed frames against the true ones, with a
  squared error whose foreground pixels (``> FG_THRESHOLD``) weigh ``1 + fg_weight``: the mean-seeking L2
  keeps predictions positive where an object may be, and the weight puts the objects on the loss's scale.
  The same cell weights are trained (PredNet's prediction mode shares its cell with the error mode), so the
  model directory and the streaming step do not change.
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
        loss: Keras loss of the compiled training model (a name or a ``keras.ops`` function).
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
    loss: Any
    target: str
    build: Callable[[Any], Any]
    core: Callable[[Any], Any]
    strides: Callable[[Any], tuple[int, ...]]
    with_nt: Callable[[Any, int], Any]
    outputs: Callable[[Any, Any], Callable[[np.ndarray], np.ndarray]]
    baselines: Callable[[np.ndarray, Any], dict[str, float]]
    required: tuple[str, ...] = ("constant_frame",)


FG_THRESHOLD = 0.1
"""Pixels brighter than this (frames scaled to [0, 1]) count as foreground for the ``sparse`` objective."""


def sparse_loss(fg_weight: float, skip_first: bool) -> Callable[[Any, Any], Any]:
    """Foreground-weighted squared error ``(B, T, H, W, C)`` -> ``(B,)`` (``keras.ops``), step 0 left out when
    ``skip_first`` (PredNet predicts it from an empty state)."""
    from keras import ops

    def loss(y_true: Any, y_pred: Any) -> Any:
        if skip_first:
            y_true, y_pred = y_true[:, 1:], y_pred[:, 1:]
        weight = 1.0 + fg_weight * ops.cast(y_true > FG_THRESHOLD, y_pred.dtype)
        return ops.mean(weight * ops.square(y_pred - y_true), axis=(1, 2, 3, 4))

    loss.__name__ = "sparse_mse"
    return loss


def sparse_baselines(frames: np.ndarray, fg_weight: float, skip_first: bool) -> dict[str, float]:
    """The ``sparse`` loss of trivial predictions: an empty frame, the mean pixel, and (for next-frame
    prediction) a copy of the previous frame.

    Example:
        >>> x = np.zeros((1, 3, 2, 2, 1), np.float32); x[:, 1:] = 0.5
        >>> sparse_baselines(x, 1.0, True)
        {'constant_frame': 0.0, 'previous_frame': 0.25}
    """
    x = frames.astype(np.float64)
    target = x[:, 1:] if skip_first else x
    weight = 1.0 + fg_weight * (target > FG_THRESHOLD)

    def value(pred: Any) -> float:
        return float((weight * (pred - target) ** 2).mean())

    constant = min(value(0.0), value(float(target.mean())))
    out = {"constant_frame": constant}
    if skip_first:
        out["previous_frame"] = value(x[:, :-1])
    return out


SPARSE_ARCHS = ("prednet", "convlstm-ae")
"""Architectures with a ``sparse`` objective (:func:`with_objective`)."""


def with_objective(trainer: Trainer, objective: str, fg_weight: float) -> Trainer:
    """``trainer`` with the ``sparse`` objective (``"default"`` returns it unchanged)."""
    if objective == "default":
        return trainer
    if objective != "sparse":
        raise ValueError(f"objective must be 'default' or 'sparse'. Received: objective={objective!r}")
    if fg_weight < 0:
        raise ValueError(f"fg_weight must be >= 0. Received: fg_weight={fg_weight}")
    if trainer.arch == "prednet":
        from vigil.model.prednet import build_sequence_model

        return dataclasses.replace(
            trainer, loss=sparse_loss(fg_weight, True), target="input",
            build=lambda config: build_sequence_model(config, "prediction", nt=config.nt),
            outputs=lambda model, config: (lambda frames: np.asarray(model.predict_on_batch(frames))[:, 1:]),
            baselines=lambda frames, config: sparse_baselines(frames, fg_weight, True))
    if trainer.arch == "convlstm-ae":
        return dataclasses.replace(trainer, loss=sparse_loss(fg_weight, False),
                                   baselines=lambda frames, config: sparse_baselines(frames, fg_weight, False))
    raise ValueError(f"objective 'sparse' is not available for {trainer.arch}.")


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


def _inpaint() -> Trainer:
    from vigil.model.inpaint import trainer

    return trainer()


def trainer_for(arch: str) -> Trainer:
    """The training hooks of architecture ``arch`` (raises like :func:`~vigil.model.architectures.get_architecture`)."""
    from vigil.model.architectures import get_architecture

    get_architecture(arch)  # unknown / not-yet-available names raise here, with the list of names
    return {"prednet": _prednet, "convlstm-ae": _convlstm_ae, "inpaint": _inpaint}[arch]()
