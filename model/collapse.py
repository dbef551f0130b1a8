"""Training that cannot fail silently: detect a collapsed or non-learning model while it trains.

Two failures look like training but are not: the model collapses to a constant output (e.g. an all-black
frame on mostly black video: the loss is already small there, and stays flat), or the loss simply never
moves. :class:`CollapseGuard` (a Keras callback, used by ``vigil train`` for every architecture) checks after
every epoch:

* **constant output**: the standard deviation of the model's outputs on a fixed validation batch is below
  ``min_std_ratio`` of the frames' own standard deviation;
* **flat loss**: the validation loss has not moved by more than ``flat_rtol`` (relative) over
  ``flat_epochs`` epochs;

and after training, :func:`check_baselines` compares the best validation loss with trivial predictors on
the same validation data (a constant frame; for next-frame prediction also a copy of the previous frame).
A collapse stops training; ``vigil train`` then raises :class:`TrainingCollapsedError` with what happened and
what to try, and writes no model directory.

Example:
    >>> flat_loss([0.0244, 0.0244, 0.0244, 0.0244], epochs=3, rtol=1e-4)
    True
    >>> flat_loss([0.03, 0.025, 0.0244, 0.0243], epochs=3, rtol=1e-4)
    False
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ADVICE = ("What to try: on sparse, mostly black frames (night, thermal, small objects) the sparse objective "
          "with a learning-rate warm-up, `vigil train --objective sparse --warmup-steps 100` (foreground weight "
          "--fg-weight 4 by default; prednet and convlstm-ae; TrainSettings objective='sparse', fg_weight=4, "
          "warmup_steps=100): an L1 loss is smallest for an empty frame and PredNet's ReLU prediction "
          "dies there; otherwise a lower learning rate (--lr 3e-4), motion-centred crops (--crop 64x64) so that "
          "the moving objects are not a tiny share of the loss, more data or more epochs; check that the frames "
          "are not blank (ffprobe / `vigil score` on one video).")


class TrainingCollapsedError(RuntimeError):
    """Training produced a collapsed or non-learning model; the message says what happened and what to try."""


def flat_loss(losses: Sequence[float], epochs: int, rtol: float) -> bool:
    """Whether the last ``epochs + 1`` losses all lie within ``rtol`` (relative) of the last one."""
    if len(losses) <= epochs:
        return False
    tail = np.asarray(losses[-(epochs + 1):], np.float64)
    return bool(np.all(np.abs(tail - tail[-1]) <= rtol * max(abs(tail[-1]), 1e-12)))


def make_guard(probe: Callable[[], float], data_std: float, min_std_ratio: float = 0.02, flat_epochs: int = 3,
               flat_rtol: float = 1e-5, monitor: str = "val_loss", const_epochs: int = 2) -> Any:
    """A :class:`CollapseGuard` callback (Keras imported here).

    Args:
        probe: Returns the standard deviation of the model's outputs on a fixed validation batch (frames).
        data_std: Standard deviation of the validation frames themselves.
        min_std_ratio: Outputs below this share of ``data_std`` count as constant.
        flat_epochs: Epochs over which an unmoving loss counts as not learning.
        flat_rtol: Relative tolerance of "unmoving".
        monitor: The loss to watch (``loss`` when there is no validation).
        const_epochs: Consecutive epochs of constant output that count as a collapse (a freshly initialised
            model may output a near-constant frame for its first epoch).
    """
    import keras

    class CollapseGuard(keras.callbacks.Callback):
        """Stop training when the outputs are constant or the monitored loss does not move."""

        def __init__(self) -> None:
            super().__init__()
            self.reason: str | None = None
            self.losses: list[float] = []
            self.constant = 0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            value = (logs or {}).get(monitor)
            if value is not None:
                self.losses.append(float(value))
            std = float(probe())
            self.constant = self.constant + 1 if std < min_std_ratio * data_std else 0
            if self.constant >= const_epochs:
                self.reason = (f"the model's output is constant after epoch {epoch + 1} (std {std:.3g} against the "
                               f"frames' {data_std:.3g}): it collapsed to one frame")
            elif flat_loss(self.losses, flat_epochs, flat_rtol):
                self.reason = (f"{monitor} has not moved for {flat_epochs} epochs ({self.losses[-1]:.8g}): "
                               f"the model is not learning")
            if self.reason:
                log.error("training stopped: %s", self.reason)
                self.model.stop_training = True

    return CollapseGuard()


def check_baselines(best_val: float, baselines: dict[str, float], required: Sequence[str]) -> dict[str, Any]:
    """Compare the best validation loss with trivial predictors' losses on the same data.

    Args:
        best_val: The model's best validation loss.
        baselines: ``{name: loss}`` of trivial predictors (same loss, same data).
        required: Baselines the model must beat; losing to one raises :class:`TrainingCollapsedError`. The
            others are reported (e.g. copying the previous frame, which an undertrained predictor can lose to).

    Returns:
        ``{"best_val_loss", "baselines", "beats": {name: bool}}`` for the model card.

    Example:
        >>> check_baselines(0.01, {"constant_frame": 0.02, "previous_frame": 0.005}, ["constant_frame"])["beats"]
        {'constant_frame': True, 'previous_frame': False}
    """
    beats = {name: bool(best_val < loss) for name, loss in baselines.items()}
    lost = [n for n in required if n in beats and not beats[n]]
    if lost:
        raise TrainingCollapsedError(f"the best validation loss {best_val:.6g} is no better than the trivial predictor(s) "
                                f"{', '.join(f'{n} ({baselines[n]:.6g})' for n in lost)}: the model learnt nothing "
                                f"a constant output would not. {ADVICE}")
    for name, ok in beats.items():
        if not ok:
            log.warning("the model does not beat the %s baseline (%.6g against %.6g)", name, best_val, baselines[name])
    return {"best_val_loss": float(best_val), "baselines": {k: float(v) for k, v in baselines.items()}, "beats": beats}
