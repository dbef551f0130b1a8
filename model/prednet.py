"""PredNet (Lotter, Kreiman & Cox, 2016) as a Keras 3 recurrent cell, written with ``keras.ops`` only.

Per layer ``l`` the cell keeps representation units ``R_l`` (a convolutional LSTM with cell state
``C_l``) and error units ``E_l``. One step does a top-down pass, updating ``R_l`` from
``E_l(t-1)``, ``R_l(t-1)`` and the upsampled ``R_{l+1}(t)``, then a bottom-up pass: the prediction
``Ahat_l = ReLU(conv(R_l))`` (clipped at ``pixel_max`` on layer 0), the target ``A_l`` (the frame on
layer 0, ``maxpool(ReLU(conv(E_{l-1})))`` above) and the errors
``E_l = [ReLU(A_l - Ahat_l), ReLU(Ahat_l - A_l)]``.

States are ``[R_0..R_{L-1}, C_0..C_{L-1}, E_0..E_{L-1}]``, each ``(B, H / 2**l, W / 2**l, ch)``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from vigil.model.config import OUTPUT_MODES, PredNetConfig

log = logging.getLogger(__name__)


def _upsample2(x: Any) -> Any:
    """Nearest-neighbour 2x upsampling of a ``(B, H, W, C)`` tensor."""
    _, h, w, c = x.shape
    x = ops.expand_dims(ops.expand_dims(x, 2), 4) * ops.ones((1, 1, 2, 1, 2, 1), dtype=x.dtype)
    return ops.reshape(x, (-1, 2 * h, 2 * w, c))


@keras.saving.register_keras_serializable(package="vigil")
class PredNetCell(keras.layers.Layer):
    """One time step of PredNet, shaped like Keras' ``ConvLSTMCell``.

    Args:
        stack_sizes: Channels of ``A_l`` / ``Ahat_l`` per layer; ``stack_sizes[0]`` = image channels.
        r_stack_sizes: Channels of ``R_l`` per layer.
        a_filt_sizes: Kernel sizes of the ``A`` convs (one fewer than layers).
        ahat_filt_sizes: Kernel sizes of the ``Ahat`` convs.
        r_filt_sizes: Kernel sizes of the convolutional LSTMs.
        pixel_max: Clip value of the frame prediction.
        lstm_activation: Candidate/output activation of the LSTMs.
        lstm_inner_activation: Gate activation of the LSTMs.
        output_mode: ``"prediction"`` (the predicted frame, ``(B, H, W, C)``), ``"error"`` (mean of
            each layer's error units, ``(B, n_layers)``) or ``"all"`` (flattened prediction followed by
            the layer errors, ``(B, H*W*C + n_layers)``).
        **kwargs: Base ``Layer`` arguments.
    """

    def __init__(
        self,
        stack_sizes: list[int],
        r_stack_sizes: list[int],
        a_filt_sizes: list[int],
        ahat_filt_sizes: list[int],
        r_filt_sizes: list[int],
        pixel_max: float = 1.0,
        lstm_activation: str = "tanh",
        lstm_inner_activation: str = "hard_sigmoid",
        output_mode: str = "error",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        n = len(stack_sizes)
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}. Received: output_mode={output_mode!r}")
        lengths = {"r_stack_sizes": (r_stack_sizes, n), "ahat_filt_sizes": (ahat_filt_sizes, n),
                   "r_filt_sizes": (r_filt_sizes, n), "a_filt_sizes": (a_filt_sizes, n - 1)}
        for name, (values, expected) in lengths.items():
            if len(values) != expected:
                raise ValueError(f"{name} must have {expected} values. Received: {name}={values}")
        self.stack_sizes = list(stack_sizes)
        self.r_stack_sizes = list(r_stack_sizes)
        self.a_filt_sizes = list(a_filt_sizes)
        self.ahat_filt_sizes = list(ahat_filt_sizes)
        self.r_filt_sizes = list(r_filt_sizes)
        self.pixel_max = float(pixel_max)
        self.lstm_activation = keras.activations.get(lstm_activation)
        self.lstm_inner_activation = keras.activations.get(lstm_inner_activation)
        self.output_mode = output_mode
        self.nb_layers = n
        # Channels of each state; the spatial sizes are fixed in build().
        self.state_size = self.r_stack_sizes + self.r_stack_sizes + [2 * s for s in self.stack_sizes]
        self.frame_shape: tuple[int, int, int] | None = None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Create the convolutions for frames of shape ``input_shape = (B, H, W, C)``."""
        h, w, c = input_shape[1:]
        factor = 2 ** (self.nb_layers - 1)
        if c != self.stack_sizes[0] or h % factor or w % factor:
            raise ValueError(
                f"Input must be (B, H, W, {self.stack_sizes[0]}) with H, W divisible by {factor}. "
                f"Received: input_shape={input_shape}"
            )
        self.frame_shape = (int(h), int(w), int(c))
        self.r_convs, self.ahat_convs, self.a_convs = [], [], []
        for lay in range(self.nb_layers):
            self._build_layer(lay, h // 2**lay, w // 2**lay)
        self.built = True

    def _build_layer(self, lay: int, h: int, w: int) -> None:
        r_in = 2 * self.stack_sizes[lay] + self.r_stack_sizes[lay]
        if lay < self.nb_layers - 1:
            r_in += self.r_stack_sizes[lay + 1]
        r_conv = keras.layers.Conv2D(4 * self.r_stack_sizes[lay], self.r_filt_sizes[lay], padding="same",
                                     name=f"r_conv_{lay}")
        r_conv.build((None, h, w, r_in))
        ahat_conv = keras.layers.Conv2D(self.stack_sizes[lay], self.ahat_filt_sizes[lay], padding="same",
                                        activation="relu", name=f"ahat_conv_{lay}")
        ahat_conv.build((None, h, w, self.r_stack_sizes[lay]))
        self.r_convs.append(r_conv)
        self.ahat_convs.append(ahat_conv)
        if lay < self.nb_layers - 1:
            a_conv = keras.layers.Conv2D(self.stack_sizes[lay + 1], self.a_filt_sizes[lay], padding="same",
                                         activation="relu", name=f"a_conv_{lay}")
            a_conv.build((None, h, w, 2 * self.stack_sizes[lay]))
            self.a_convs.append(a_conv)

    def state_shapes(self) -> list[tuple[int, int, int]]:
        """Per-camera shapes ``(h, w, ch)`` of the states (no batch dimension); needs ``build``."""
        if self.frame_shape is None:
            raise ValueError("The cell must be built before its state shapes are known.")
        h, w, _ = self.frame_shape
        sizes = [(h // 2 ** (i % self.nb_layers), w // 2 ** (i % self.nb_layers)) for i in range(3 * self.nb_layers)]
        return [(hh, ww, ch) for (hh, ww), ch in zip(sizes, self.state_size, strict=True)]

    def get_initial_state(self, batch_size: int | None = None) -> list[Any]:
        """Zero states for ``batch_size`` streams."""
        return [ops.zeros((batch_size, *shape), dtype=self.compute_dtype) for shape in self.state_shapes()]

    def _top_down(self, states: list[Any]) -> tuple[list[Any], list[Any]]:
        """Update every ``R_l`` / ``C_l`` from the top layer down."""
        n = self.nb_layers
        r_prev, c_prev, e_prev = states[:n], states[n:2 * n], states[2 * n:3 * n]
        r_new: list[Any] = [None] * n
        c_new: list[Any] = [None] * n
        for lay in reversed(range(n)):
            parts = [e_prev[lay], r_prev[lay]]
            if lay < n - 1:
                parts.append(_upsample2(r_new[lay + 1]))
            z = self.r_convs[lay](ops.concatenate(parts, axis=-1))
            i, f, cand, o = ops.split(z, 4, axis=-1)
            c_new[lay] = (self.lstm_inner_activation(f) * c_prev[lay]
                          + self.lstm_inner_activation(i) * self.lstm_activation(cand))
            r_new[lay] = self.lstm_inner_activation(o) * self.lstm_activation(c_new[lay])
        return r_new, c_new

    def _bottom_up(self, frame: Any, r_new: list[Any]) -> tuple[Any, list[Any]]:
        """Predictions, targets and error units from the bottom layer up."""
        target = frame
        errors = []
        prediction = None
        for lay in range(self.nb_layers):
            ahat = self.ahat_convs[lay](r_new[lay])
            if lay == 0:
                ahat = ops.minimum(ahat, self.pixel_max)
                prediction = ahat
            err = ops.concatenate([ops.relu(target - ahat), ops.relu(ahat - target)], axis=-1)
            errors.append(err)
            if lay < self.nb_layers - 1:
                target = ops.max_pool(self.a_convs[lay](err), pool_size=2, strides=2, padding="valid")
        return prediction, errors

    def call(self, inputs: Any, states: list[Any], training: bool = False) -> tuple[Any, list[Any]]:
        """One step: ``inputs`` is the frame ``(B, H, W, C)``; returns ``(output, new_states)``."""
        r_new, c_new = self._top_down(list(states))
        prediction, errors = self._bottom_up(inputs, r_new)
        layer_errors = ops.stack([ops.mean(e, axis=(1, 2, 3)) for e in errors], axis=-1)
        if self.output_mode == "prediction":
            output = prediction
        elif self.output_mode == "error":
            output = layer_errors
        else:
            flat = ops.reshape(prediction, (ops.shape(prediction)[0], -1))
            output = ops.concatenate([flat, ops.cast(layer_errors, flat.dtype)], axis=-1)
        return output, r_new + c_new + errors

    def step_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Shape of the step output for a frame batch of ``input_shape`` (symbolic calls trace ``call``)."""
        batch = input_shape[0]
        if self.output_mode == "prediction":
            return tuple(input_shape)
        if self.output_mode == "error":
            return (batch, self.nb_layers)
        return (batch, int(np.prod(input_shape[1:])) + self.nb_layers)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for serialisation."""
        config = super().get_config()
        config.update({
            "stack_sizes": self.stack_sizes,
            "r_stack_sizes": self.r_stack_sizes,
            "a_filt_sizes": self.a_filt_sizes,
            "ahat_filt_sizes": self.ahat_filt_sizes,
            "r_filt_sizes": self.r_filt_sizes,
            "pixel_max": self.pixel_max,
            "lstm_activation": keras.activations.serialize(self.lstm_activation),
            "lstm_inner_activation": keras.activations.serialize(self.lstm_inner_activation),
            "output_mode": self.output_mode,
        })
        return config


@keras.saving.register_keras_serializable(package="vigil")
class PredNetRNN(keras.layers.RNN):
    """``keras.layers.RNN`` over a :class:`PredNetCell`, with image-shaped output shapes."""

    def compute_output_shape(self, sequences_shape: tuple, initial_state_shape: Any = None) -> Any:
        """``(B, T, *cell_output)`` (or ``(B, *cell_output)`` without ``return_sequences``)."""
        step_shape = (sequences_shape[0],) + tuple(sequences_shape[2:])
        out = self.cell.step_output_shape(step_shape)
        if self.return_sequences:
            out = (out[0], sequences_shape[1], *out[1:])
        if self.return_state:
            raise ValueError("PredNetRNN does not support return_state=True; step the cell instead.")
        return out


@keras.saving.register_keras_serializable(package="vigil")
class WeightedError(keras.layers.Layer):
    """Weighted sum of PredNet layer errors over layers and time steps: ``(B, T, L) -> (B, 1)``.

    Args:
        layer_weights: Weight of each layer.
        time_weights: Weight of each time step.
        **kwargs: Base ``Layer`` arguments.
    """

    def __init__(self, layer_weights: list[float], time_weights: list[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layer_weights = [float(v) for v in layer_weights]
        self.time_weights = [float(v) for v in time_weights]

    def call(self, errors: Any) -> Any:
        """Collapse ``errors`` of shape ``(B, T, L)``."""
        lw = ops.convert_to_tensor(np.asarray(self.layer_weights, dtype="float32"))
        tw = ops.convert_to_tensor(np.asarray(self.time_weights, dtype="float32"))
        per_time = ops.sum(ops.cast(errors, "float32") * lw, axis=-1)
        return ops.sum(per_time * tw, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """``(B, 1)``."""
        return (input_shape[0], 1)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for serialisation."""
        config = super().get_config()
        config.update({"layer_weights": self.layer_weights, "time_weights": self.time_weights})
        return config


def build_cell(config: PredNetConfig, output_mode: str = "error") -> PredNetCell:
    """A built :class:`PredNetCell` for ``config``."""
    cell = PredNetCell(**config.cell_kwargs(output_mode), name="prednet_cell")
    cell.build((None, *config.input_shape))
    return cell


def build_sequence_model(config: PredNetConfig, output_mode: str = "error", nt: int | None = None) -> keras.Model:
    """PredNet over sequences: ``(B, T, H, W, C)`` float in [0, 1] -> per-step outputs."""
    frames = keras.Input((nt, *config.input_shape), name="frames")
    rnn = PredNetRNN(build_cell(config, output_mode), return_sequences=True, name="prednet")
    return keras.Model(frames, rnn(frames), name=f"prednet_{output_mode}")


def build_training_model(config: PredNetConfig) -> keras.Model:
    """The training model of the paper: weighted layer/time error, trained with MAE against zeros."""
    frames = keras.Input((config.nt, *config.input_shape), name="frames")
    rnn = PredNetRNN(build_cell(config, "error"), return_sequences=True, name="prednet")
    loss = WeightedError(list(config.layer_loss_weights), config.time_loss_weights(), name="weighted_error")
    return keras.Model(frames, loss(rnn(frames)), name="prednet_train")


def get_cell(model: keras.Model) -> PredNetCell:
    """The :class:`PredNetCell` inside a model from :func:`build_training_model` or a bare cell."""
    if isinstance(model, PredNetCell):
        return model
    return model.get_layer("prednet").cell


def save_cell_weights(cell: PredNetCell, path: str | os.PathLike) -> None:
    """Write the cell's weights to an ``.npz`` file keyed by order, with their names."""
    arrays = {f"w{i:03d}": np.asarray(ops.convert_to_numpy(w)) for i, w in enumerate(cell.weights)}
    names = np.array([w.path.split("/", 1)[-1] for w in cell.weights])
    np.savez(Path(path), names=names, **arrays)


def load_cell_weights(cell: PredNetCell, path: str | os.PathLike) -> None:
    """Load weights written by :func:`save_cell_weights` into a built ``cell`` (checks names/shapes)."""
    with np.load(Path(path)) as data:
        names = [str(n) for n in data["names"]]
        values = [data[f"w{i:03d}"] for i in range(len(names))]
    if len(values) != len(cell.weights):
        raise ValueError(f"Weight file has {len(values)} arrays, the cell {len(cell.weights)}. Received: {path}")
    for var, name, value in zip(cell.weights, names, values, strict=True):
        if tuple(var.shape) != value.shape or not var.path.endswith(name):
            raise ValueError(f"Weight mismatch: {var.path} {tuple(var.shape)} vs {name} {value.shape} in {path}")
        var.assign(value)
