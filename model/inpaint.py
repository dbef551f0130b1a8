"""Masked-frame inpainting with convolutional attention (after "VPN-inspired masked-frame inpainting for video
anomaly detection"), Keras 3, ``keras.ops`` only.

The frame to score is hidden behind a regular grid that shows one pixel in every ``grid[0] x grid[1]`` cell
(4 x 5 by default: 95 % masked), at a shift ``(dy, dx)`` inside the cell. The model inpaints it from

* the **context**: the ``context`` previous frames, each through a small strided conv encoder, then one
  ConvLSTM over them (restarted at every window) and layer normalisation;
* a **convolutional attention**: a small meta-network (two convs) looks at the concatenated ConvLSTM outputs of
  the context window and the encoded masked frame and outputs, at every location, an input-dependent filter
  over a ``attn_kernel x attn_kernel`` neighbourhood of every context frame (softmax-normalised: an attention
  over space and time); the filter is applied to the concatenated ConvLSTM outputs;
* the masked frame itself (visible pixels and the mask, ``C + 1`` channels), at full and half resolution, and the
  newest context frame at full resolution (a skip, so that the static background need not pass the ConvLSTM).

The decoder outputs 256 logits per pixel and channel: a distribution over the intensities. The score of a
frame is the mean negative log-likelihood (nats) of its true pixel values; the per-pixel NLL is its error map.
Training draws one random shift per window and averages the NLL over the masked pixels
(:class:`RandomShifts`). At inference every one of the ``grid[0] * grid[1]`` shifts is decoded
(``shift_batch`` at a time, one window after another): the shifts' visible pixels tile the frame exactly once,
and each pixel's NLL is the mean over the shifts that mask it (``logsumexp`` minus the true value's logit; the
expected intensity comes from the same ``exp`` pass). Streaming (:meth:`MaskedInpainter.stream_step`) keeps a
camera's last ``context`` frames (uint8) and a ``started`` flag; a fresh state fills them with the first frame.

Example:
    >>> cfg = InpaintConfig(height=16, width=24, context=2, enc_filters=(4, 4), lstm_filters=4, attn_hidden=4,
    ...                     dec_filters=(4, 4), features={"patch_size": 4, "patch_stride": 2, "heatmap_stride": 4})
    >>> core = build_inpainter(cfg)
    >>> [tuple(s) for s, _ in core.state_specs()], cfg.n_shifts, cfg.mask_fraction
    ([(2, 16, 24, 1), (1,)], 20, 0.95)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import keras
import numpy as np
from keras import ops

from vigil.model.config import ArchConfig, FeatureConfig

ARCH = "inpaint"
WEIGHTS_FILE = "inpaint.weights.npz"
LEVELS = 256
"""Intensity levels of the per-pixel distribution (8-bit video)."""


@dataclass
class InpaintConfig(ArchConfig):
    """Architecture, input size, context and masking of a masked-frame inpainting model.

    Attributes:
        height: Model input height (pixels); divisible by 4.
        width: Model input width (pixels); divisible by 4.
        channels: Image channels (1 gray, 3 BGR); each gets its own 256-way distribution.
        context: Previous frames the ConvLSTM encodes (a training window is ``context + 1`` frames).
        grid: ``(gy, gx)`` cell of the mask: one visible pixel per cell, ``1 - 1 / (gy * gx)`` masked.
        enc_filters: Channels of the two strided convs (context frames and masked frame alike).
        lstm_filters: Channels of the ConvLSTM over the context.
        lstm_kernel: Its kernel size.
        attn_hidden: Channels of the attention meta-network's hidden conv.
        attn_kernel: Side of the neighbourhood the attention filters span (odd).
        dec_filters: Channels of the decoder convs at half and full resolution.
        shift_batch: Shifts decoded together at inference (memory: ``shift_batch`` decoder passes at once; the
            windows of a batch are scored one after another).
        pixel_max: Largest pixel value of the scaled frames.
        features: Error feature settings (the same as PredNet's).
    """

    ARCH: ClassVar[str] = ARCH

    height: int = 64
    width: int = 96
    channels: int = 1
    context: int = 4
    grid: tuple[int, int] = (4, 5)
    enc_filters: tuple[int, int] = (16, 16)
    lstm_filters: int = 16
    lstm_kernel: int = 3
    attn_hidden: int = 16
    attn_kernel: int = 3
    dec_filters: tuple[int, int] = (16, 8)
    shift_batch: int = 5
    pixel_max: float = 1.0
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        for name in ("grid", "enc_filters", "dec_filters"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        if isinstance(self.features, dict):
            self.features = FeatureConfig(**self.features)
        self.validate()

    @property
    def nt(self) -> int:
        """Frames per training window (context plus the scored frame), the name the training pipeline uses."""
        return self.context + 1

    @property
    def n_shifts(self) -> int:
        """Shifts of the mask grid (all of them are decoded at inference)."""
        return self.grid[0] * self.grid[1]

    @property
    def mask_fraction(self) -> float:
        """Share of the pixels hidden by one mask."""
        return round(1.0 - 1.0 / self.n_shifts, 6)

    def validate(self) -> None:
        """Raise ``ValueError`` on inconsistent settings."""
        if self.height % 4 or self.width % 4 or min(self.height, self.width) < 8:
            raise ValueError(f"height and width must be multiples of 4 and at least 8. "
                             f"Received: height={self.height}, width={self.width}")
        if self.context < 1:
            raise ValueError(f"context must be at least 1. Received: context={self.context}")
        if len(self.grid) != 2 or min(self.grid) < 1 or self.n_shifts < 2:
            raise ValueError(f"grid must be two positive sides with at least 2 cells. Received: grid={self.grid}")
        if len(self.enc_filters) != 2 or len(self.dec_filters) != 2:
            raise ValueError(f"enc_filters and dec_filters need 2 values. "
                             f"Received: enc_filters={self.enc_filters}, dec_filters={self.dec_filters}")
        sizes = (*self.enc_filters, *self.dec_filters, self.lstm_filters, self.attn_hidden, self.lstm_kernel)
        if min(sizes) < 1:
            raise ValueError(f"channel counts and kernels must be positive. Received: {sizes}")
        if self.attn_kernel < 1 or self.attn_kernel % 2 == 0:
            raise ValueError(f"attn_kernel must be odd and positive. Received: attn_kernel={self.attn_kernel}")
        if not 1 <= self.shift_batch <= self.n_shifts:
            raise ValueError(f"shift_batch must be in [1, {self.n_shifts}]. Received: shift_batch={self.shift_batch}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={self.channels}")
        self.features.validate(self.height, self.width)

    def layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`MaskedInpainter`."""
        return {"context": self.context, "grid": list(self.grid), "enc_filters": list(self.enc_filters),
                "lstm_filters": self.lstm_filters, "lstm_kernel": self.lstm_kernel, "attn_hidden": self.attn_hidden,
                "attn_kernel": self.attn_kernel, "dec_filters": list(self.dec_filters),
                "shift_batch": self.shift_batch, "pixel_max": self.pixel_max}

    def flops_per_frame(self) -> int:
        """Multiply-adds x 2 of one streaming step (the context through the encoder and the ConvLSTM once, every
        shift through the masked-frame encoder, the attention and the decoder), counting convolutions only.

        Example:
            >>> round(InpaintConfig().flops_per_frame() / 1e6)
            1577
        """
        h, w, c = self.input_shape
        (e1, e2), (d1, d2), lf, k = self.enc_filters, self.dec_filters, self.lstm_filters, self.attn_kernel
        h2w2, h4w4 = (h // 2) * (w // 2), (h // 4) * (w // 4)
        enc = h2w2 * 9 * c * e1 + h4w4 * 9 * e1 * e2
        lstm = h4w4 * 4 * lf * self.lstm_kernel**2 * (e2 + lf)
        query = h2w2 * 9 * (c + 1) * e1 + h4w4 * 9 * e1 * e2
        attn = h4w4 * 9 * (self.context * lf + e2) * self.attn_hidden + h4w4 * self.attn_hidden * self.context * k * k
        attn += h4w4 * self.context * k * k * lf
        dec = h2w2 * 9 * (lf + e2 + e1) * d1 + h * w * 9 * (d1 + 2 * c + 1) * d2 + h * w * d2 * c * LEVELS
        return 2 * (self.context * (enc + lstm) + self.n_shifts * (query + attn + dec))


def shift_masks(grid: tuple[int, int], shifts: Any, height: int, width: int) -> Any:
    """Visibility masks ``(N, H, W, 1)`` float32 (1 = visible) of shift indices ``shifts`` ``(N,)`` int.

    Shift ``s`` shows the pixels ``(y, x)`` with ``y = s // gx (mod gy)`` and ``x = s % gx (mod gx)``: one per
    ``gy x gx`` cell; the ``gy * gx`` shifts together show every pixel exactly once.

    Example:
        >>> m = np.asarray(shift_masks((2, 2), np.array([0, 3]), 2, 4))[..., 0]
        >>> m.astype(int).tolist()
        [[[1, 0, 1, 0], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 1, 0, 1]]]
    """
    gy, gx = grid
    shifts = ops.cast(shifts, "int32")
    dy, dx = shifts // gx, shifts % gx
    ys = ops.arange(height, dtype="int32")[None, :] - dy[:, None]
    xs = ops.arange(width, dtype="int32")[None, :] - dx[:, None]
    my = ops.cast(ops.equal(ys % gy, 0), "float32")
    mx = ops.cast(ops.equal(xs % gx, 0), "float32")
    return (my[:, :, None] * mx[:, None, :])[..., None]


def _true_logit(logits: Any, frame: Any, pixel_max: float) -> Any:
    """The logit ``(N, H, W, C)`` of each pixel's true 8-bit value (``frame`` in ``[0, pixel_max]``)."""
    target = ops.cast(ops.clip(ops.round(frame * (255.0 / pixel_max)), 0, LEVELS - 1), "int32")
    return ops.take_along_axis(logits, target[..., None], axis=-1)[..., 0]


def pixel_nll(logits: Any, frame: Any, pixel_max: float) -> Any:
    """Negative log-likelihood (nats) ``(N, H, W, C)`` of the true 8-bit values of ``frame`` (in ``[0,
    pixel_max]``) under ``logits`` ``(N, H, W, C, 256)``: ``logsumexp(logits) - logits[true value]``, the
    log-softmax of the true value without a log-softmax tensor of the logits' size.

    Example:
        >>> logits = np.log(np.array([[[[[0.5, 0.25, 0.25] + [1e-30] * 253]]]], "float32"))
        >>> round(float(np.asarray(pixel_nll(logits, np.full((1, 1, 1, 1), 1 / 255, "float32"), 1.0))[0, 0, 0, 0]), 4)
        1.3863
    """
    return ops.logsumexp(logits, axis=-1) - _true_logit(logits, frame, pixel_max)


def nll_and_mean(logits: Any, frame: Any, pixel_max: float) -> tuple[Any, Any]:
    """:func:`pixel_nll` and the expected intensity in ``[0, pixel_max]`` ``(N, H, W, C)`` each, from one pass of ``exp`` over the
    logits: ``exp(logits - max)`` times ``[1, level]`` (a matmul) gives the partition sum and the expected
    intensity's numerator at once (inference: the stabilising maximum is not differentiated)."""
    top = ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True))
    levels = ops.arange(LEVELS, dtype="float32") * (pixel_max / (LEVELS - 1))
    sums = ops.matmul(ops.exp(logits - top), ops.stack([ops.ones_like(levels), levels], axis=-1))
    return top[..., 0] + ops.log(sums[..., 0]) - _true_logit(logits, frame, pixel_max), sums[..., 1] / sums[..., 0]


def _up2(x: Any) -> Any:
    """Nearest-neighbour x2 upsampling of ``(N, h, w, ch)``."""
    return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)


@keras.saving.register_keras_serializable(package="vigil")
class MaskedInpainter(keras.layers.Layer):
    """Context ConvLSTM, convolutional attention and an inpainting decoder over windows ``(B, K + 1, H, W, C)``.

    Args:
        context: Previous frames ``K`` per window.
        grid: ``(gy, gx)`` cell of the mask grid.
        enc_filters: Channels of the two strided encoder convs.
        lstm_filters: Channels of the ConvLSTM.
        lstm_kernel: Its kernel size.
        attn_hidden: Hidden channels of the attention meta-network.
        attn_kernel: Neighbourhood side of the attention filters (odd).
        dec_filters: Decoder channels at half and full resolution.
        shift_batch: Shifts decoded at once by :meth:`score_window`.
        pixel_max: Scale of the input frames.
        **kwargs: Base ``Layer`` arguments.
    """

    def __init__(self, context: int, grid: list[int], enc_filters: list[int], lstm_filters: int,
                 lstm_kernel: int = 3, attn_hidden: int = 16, attn_kernel: int = 3, dec_filters: list[int] = (16, 8),
                 shift_batch: int = 5, pixel_max: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if context < 1 or len(grid) != 2 or len(enc_filters) != 2 or len(dec_filters) != 2 or attn_kernel % 2 == 0:
            raise ValueError(f"Need context >= 1, a 2-sided grid, two encoder and decoder convs and an odd attention "
                             f"kernel. Received: context={context}, grid={grid}, enc_filters={enc_filters}, "
                             f"dec_filters={dec_filters}, attn_kernel={attn_kernel}")
        self.context, self.grid = int(context), [int(v) for v in grid]
        self.enc_filters, self.dec_filters = [int(v) for v in enc_filters], [int(v) for v in dec_filters]
        self.lstm_filters, self.lstm_kernel = int(lstm_filters), int(lstm_kernel)
        self.attn_hidden, self.attn_kernel = int(attn_hidden), int(attn_kernel)
        self.shift_batch, self.pixel_max = int(shift_batch), float(pixel_max)
        self.frame_shape: tuple[int, int, int] | None = None

    @property
    def n_shifts(self) -> int:
        """Shifts of the mask grid."""
        return self.grid[0] * self.grid[1]

    def _conv(self, name: str, filters: int, kernel: int, in_shape: tuple[int, ...], strides: int = 1,
              activation: str | None = "relu") -> keras.layers.Conv2D:
        conv = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", activation=activation, name=name)
        conv.build((None, *in_shape))
        return conv

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Create the sublayers for windows of shape ``(B, K + 1, H, W, C)``."""
        h, w, c = (int(v) for v in input_shape[-3:])
        if h % 4 or w % 4:
            raise ValueError(f"Frames must have H and W divisible by 4. Received: input_shape={input_shape}")
        self.frame_shape = (h, w, c)
        (e1, e2), (d1, d2), lf = self.enc_filters, self.dec_filters, self.lstm_filters
        h2, w2, h4, w4 = h // 2, w // 2, h // 4, w // 4
        self.enc = [self._conv("enc_conv_0", e1, 3, (h, w, c), 2), self._conv("enc_conv_1", e2, 3, (h2, w2, e1), 2)]
        self.lstm = keras.layers.ConvLSTM2D(lf, self.lstm_kernel, padding="same", return_sequences=True, name="lstm")
        self.lstm.build((None, self.context, h4, w4, e2))
        self.lstm_norm = keras.layers.LayerNormalization(name="lstm_norm")
        self.lstm_norm.build((None, self.context, h4, w4, lf))
        self.query = [self._conv("query_conv_0", e1, 3, (h, w, c + 1), 2),
                      self._conv("query_conv_1", e2, 3, (h2, w2, e1), 2)]
        taps = self.context * self.attn_kernel**2
        self.meta = [self._conv("meta_conv_0", self.attn_hidden, 3, (h4, w4, self.context * lf + e2)),
                     self._conv("meta_conv_1", taps, 1, (h4, w4, self.attn_hidden), activation=None)]
        self.dec = [self._conv("dec_conv_0", d1, 3, (h2, w2, lf + e2 + e1)),
                    self._conv("dec_conv_1", d2, 3, (h, w, d1 + 2 * c + 1)),
                    self._conv("dec_logits", c * LEVELS, 1, (h, w, d2), activation=None)]
        self.built = True

    def encode_context(self, context: Any) -> Any:
        """ConvLSTM outputs of the context frames ``(B, K, H, W, C)``, concatenated: ``(B, H/4, W/4, K * lstm)``."""
        h, w, c = self.frame_shape
        x = ops.reshape(context, (-1, h, w, c))
        x = self.enc[1](self.enc[0](x))
        x = ops.reshape(x, (-1, self.context, h // 4, w // 4, self.enc_filters[1]))
        x = self.lstm_norm(self.lstm(x))
        return ops.concatenate([x[:, t] for t in range(self.context)], axis=-1)

    def attend(self, features: Any, query: Any) -> Any:
        """The convolutional attention: input-dependent filters over the context outputs ``(N, h, w, K * lstm)``,
        from the meta-network on them and the masked frame's code ``query``; ``(N, h, w, lstm)``."""
        k, lf, r = self.attn_kernel, self.lstm_filters, self.attn_kernel // 2
        weights = ops.softmax(self.meta[1](self.meta[0](ops.concatenate([features, query], axis=-1))), axis=-1)
        padded = ops.pad(features, ((0, 0), (r, r), (r, r), (0, 0)))
        h, w = features.shape[1], features.shape[2]
        out, tap = 0.0, 0
        for t in range(self.context):
            for i in range(k):
                for j in range(k):
                    patch = padded[:, i:i + h, j:j + w, t * lf:(t + 1) * lf]
                    out = out + weights[..., tap:tap + 1] * patch
                    tap += 1
        return out

    def decode(self, features: Any, last: Any, frame: Any, mask: Any) -> Any:
        """Logits ``(N, H, W, C, 256)`` of the frame ``(N, H, W, C)`` seen through ``mask`` ``(N, H, W, 1)``,
        given the context features ``(N, H/4, W/4, K * lstm)`` and the newest context frame ``last``."""
        h, w, c = self.frame_shape
        masked = ops.concatenate([frame * mask, mask], axis=-1)
        q1 = self.query[0](masked)
        q2 = self.query[1](q1)
        attended = self.attend(features, q2)
        x = self.dec[0](ops.concatenate([_up2(ops.concatenate([attended, q2], axis=-1)), q1], axis=-1))
        x = self.dec[1](ops.concatenate([_up2(x), masked, last], axis=-1))
        return ops.reshape(self.dec[2](x), (-1, h, w, c, LEVELS))

    def call(self, window: Any, shifts: Any) -> Any:
        """Training loss of windows ``(B, K + 1, H, W, C)`` (frames in ``[0, pixel_max]``) with one mask shift per
        window (``shifts`` ``(B,)`` int): the mean NLL over the masked pixels, ``(B, 1)``."""
        h, w, c = self.frame_shape
        features = self.encode_context(window[:, :-1])
        frame = window[:, -1]
        mask = shift_masks(self.grid, shifts, h, w)
        nll = ops.mean(pixel_nll(self.decode(features, window[:, -2], frame, mask), frame, self.pixel_max), axis=-1)
        hidden = 1.0 - mask[..., 0]
        return ops.sum(nll * hidden, axis=(1, 2))[:, None] / ops.sum(hidden, axis=(1, 2))[:, None]

    def score_window(self, window: Any) -> tuple[Any, Any]:
        """Inference on windows ``(B, K + 1, H, W, C)``: every shift decoded; per pixel, the mean over the shifts
        that mask it. Returns the NLL map ``(B, H, W, 1)`` (nats) and the expected frame ``(B, H, W, C)``.

        The windows are scored one after another (``ops.map``), ``shift_batch`` shifts at a time, so that the
        largest tensor, the logits, stays at ``shift_batch x H x W x C x 256`` floats (31 MB at 64x96, 5 shifts)
        whatever the number of cameras: in a batch of windows the logits reached hundreds of MB, and on CPU
        writing tensors of that size (fresh pages) took most of the step."""
        features = self.encode_context(window[:, :-1])
        return ops.map(self._score_one, (features, window[:, -2], window[:, -1]))

    def _score_one(self, inputs: tuple[Any, Any, Any]) -> tuple[Any, Any]:
        """:meth:`score_window` of one window: its context features ``(H/4, W/4, K * lstm)``, newest context
        frame and scored frame ``(H, W, C)`` -> NLL map ``(H, W, 1)``, expected frame ``(H, W, C)``."""
        features, last, frame = inputs
        h, w, _ = self.frame_shape
        total_nll, total_mean = 0.0, 0.0
        for start in range(0, self.n_shifts, self.shift_batch):
            shifts = np.arange(start, min(start + self.shift_batch, self.n_shifts), dtype="int32")
            mask = shift_masks(self.grid, shifts, h, w)  # (S, H, W, 1)
            frames = ops.repeat(frame[None], len(shifts), axis=0)
            logits = self.decode(ops.repeat(features[None], len(shifts), axis=0),
                                 ops.repeat(last[None], len(shifts), axis=0), frames, mask)
            nll, mean = nll_and_mean(logits, frames, self.pixel_max)
            hidden = 1.0 - mask
            total_nll = total_nll + ops.sum(ops.mean(nll, axis=-1, keepdims=True) * hidden, axis=0)
            total_mean = total_mean + ops.sum(mean * hidden, axis=0)
        return total_nll / (self.n_shifts - 1), total_mean / (self.n_shifts - 1)

    def compute_output_shape(self, window_shape: tuple, shifts_shape: tuple | None = None) -> tuple:
        """``(B, 1)``: one loss per window."""
        return (window_shape[0], 1)

    def state_specs(self) -> list[tuple[tuple[int, ...], str]]:
        """Per-camera ``(shape, dtype)`` of the streaming states: the last ``K`` frames, the started flag."""
        if self.frame_shape is None:
            raise ValueError("The inpainter must be built before its state shapes are known.")
        return [((self.context, *self.frame_shape), "uint8"), ((1,), "float32")]

    def stream_step(self, frames: Any, states: list[Any]) -> tuple[Any, Any, list[Any]]:
        """One streaming step: ``frames`` ``(B, H, W, C)`` uint8 and ``[past (B, K, H, W, C) uint8, started (B, 1)]``
        -> ``(expected frame, NLL map (B, H, W, 1), new states)``."""
        past, started = states
        current = ops.expand_dims(frames, 1)
        fresh = ops.reshape(started, (-1, 1, 1, 1, 1)) < 0.5
        past = ops.where(fresh, ops.repeat(current, self.context, axis=1), past)
        full = ops.concatenate([past, current], axis=1)
        nll, mean = self.score_window(ops.cast(full, "float32") * (self.pixel_max / 255.0))
        return mean, nll, [full[:, 1:], ops.ones_like(started)]

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for serialisation."""
        config = super().get_config()
        config.update({"context": self.context, "grid": self.grid, "enc_filters": self.enc_filters,
                       "lstm_filters": self.lstm_filters, "lstm_kernel": self.lstm_kernel,
                       "attn_hidden": self.attn_hidden, "attn_kernel": self.attn_kernel,
                       "dec_filters": self.dec_filters, "shift_batch": self.shift_batch, "pixel_max": self.pixel_max})
        return config


@keras.saving.register_keras_serializable(package="vigil")
class RandomShifts(keras.layers.Layer):
    """One mask shift per window ``(B,)`` int32: random while training, ``b mod n_shifts`` otherwise (so that the
    validation loss is the same every epoch).

    Args:
        n_shifts: Shifts of the grid.
        seed: Seed of the random shifts.
        **kwargs: Base ``Layer`` arguments.
    """

    def __init__(self, n_shifts: int, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if n_shifts < 2:
            raise ValueError(f"n_shifts must be at least 2. Received: n_shifts={n_shifts}")
        self.n_shifts, self.seed = int(n_shifts), int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def call(self, window: Any, training: bool | None = None) -> Any:
        """Shift indices for the windows ``(B, ...)``."""
        batch = ops.shape(window)[0]
        if training:
            return keras.random.randint((batch,), 0, self.n_shifts, dtype="int32", seed=self.seed_generator)
        return ops.arange(batch, dtype="int32") % self.n_shifts

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """``(B,)``."""
        return (input_shape[0],)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for serialisation."""
        return {**super().get_config(), "n_shifts": self.n_shifts, "seed": self.seed}


def build_inpainter(config: InpaintConfig) -> MaskedInpainter:
    """A built :class:`MaskedInpainter` for ``config``."""
    core = MaskedInpainter(**config.layer_kwargs(), name="inpainter")
    core.build((None, config.nt, *config.input_shape))
    return core


def build_training_model(config: InpaintConfig) -> keras.Model:
    """``(B, K + 1, H, W, C)`` float in ``[0, pixel_max]`` -> the mean NLL over the masked pixels ``(B, 1)``, one
    random shift per window (trained with MAE against zeros: the output is the loss)."""
    frames = keras.Input((config.nt, *config.input_shape), name="frames")
    shifts = RandomShifts(config.n_shifts, name="random_shifts")(frames)
    return keras.Model(frames, build_inpainter(config)(frames, shifts), name="inpaint_train")


def get_inpainter(model: keras.Model | MaskedInpainter) -> MaskedInpainter:
    """The :class:`MaskedInpainter` inside a model from :func:`build_training_model` (or itself)."""
    if isinstance(model, MaskedInpainter):
        return model
    return model.get_layer("inpainter")


def inpaint_baselines(frames: np.ndarray, config: Any) -> dict[str, float]:
    """The training loss (mean NLL, nats) of the best constant distribution: the entropy of the scored frames'
    intensity histogram (the last frame of each window).

    Example:
        >>> x = np.zeros((2, 2, 1, 2, 1), np.float32); x[0, -1] = 1.0
        >>> round(inpaint_baselines(x, None)["constant_frame"], 4)  # half 0, half 255: ln 2
        0.6931
    """
    values = np.clip(np.round(frames[:, -1].astype(np.float64) * 255.0), 0, LEVELS - 1).astype(np.int64)
    p = np.bincount(values.ravel(), minlength=LEVELS) / values.size
    p = p[p > 0]
    return {"constant_frame": float(-(p * np.log(p)).sum())}


def _outputs(model: Any, config: InpaintConfig) -> Any:
    """``frames (B, K + 1, H, W, C) -> expected scored frames`` with the current weights (collapse probe)."""
    core = get_inpainter(model)
    return lambda frames: np.asarray(ops.convert_to_numpy(core.score_window(ops.convert_to_tensor(frames))[1]))


def architecture() -> Any:
    """The registry entry of :mod:`vigil.model.architectures` for ``"inpaint"``."""
    from vigil.model.architectures import Architecture

    return Architecture(
        name=ARCH, summary="Masked-frame inpainting with convolutional attention (VPN-inspired), per-pixel NLL",
        weights_file=WEIGHTS_FILE, config_type=InpaintConfig, build_core=build_inpainter,
        state_specs=lambda core: core.state_specs(),
        stream_step=lambda core, config, frames, states: core.stream_step(frames, states),
    )  # fmt: skip


def trainer() -> Any:
    """The training hooks of :mod:`vigil.model.trainers` for ``"inpaint"`` (the model outputs its own loss)."""
    from vigil.model.trainers import Trainer

    return Trainer(arch=ARCH, loss="mae", target="zeros", build=build_training_model, core=get_inpainter,
                   strides=lambda config: (1,),
                   with_nt=lambda config, nt: dataclasses.replace(config, context=max(1, nt - 1)),
                   outputs=_outputs, baselines=inpaint_baselines)
