"""ConvLSTM autoencoder with a regularity score (Hasan et al. 2016; Chong & Tay 2017), Keras 3, ``keras.ops`` only.

The model reconstructs a window of ``T`` frames: a spatial encoder (per frame: conv 5x5 stride 2, conv 3x3
stride 2, each followed by layer normalisation and ReLU), a temporal encoder-decoder of ConvLSTMs
(``lstm_filters``, 16-8-16 by default, each followed by layer normalisation) over the ``T`` encoded frames, and a
deconvolutional decoder (transposed convs stride 2 back to the frame, sigmoid output scaled to
``pixel_max``). Training minimises the mean squared reconstruction error of the whole window.

Streaming (:meth:`ConvLSTMAutoencoder.stream_step`): a camera's state is its last ``T - 1`` frames (uint8)
and a ``started`` flag; each step reconstructs the window ending at the newest frame, and the newest frame's
squared reconstruction error map is the error the features are computed from (as PredNet's prediction error
is). A fresh state fills its window with copies of the camera's first frame.

Example:
    >>> cfg = ConvLSTMAEConfig(height=16, width=24, window=3, enc_filters=(2, 4), lstm_filters=(4, 2, 4))
    >>> ae = build_autoencoder(cfg)
    >>> [tuple(s) for s, _ in ae.state_specs()]
    [(2, 16, 24, 1), (1,)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import keras
from keras import ops

from vigil.model.config import ArchConfig, FeatureConfig
from vigil.model.features import squared_error_map

ARCH = "convlstm-ae"
WEIGHTS_FILE = "convlstm_ae.weights.npz"


@dataclass
class ConvLSTMAEConfig(ArchConfig):
    """Architecture, input size and window of a ConvLSTM autoencoder.

    Attributes:
        height: Model input height (pixels); divisible by 4.
        width: Model input width (pixels); divisible by 4.
        channels: Image channels (1 gray, 3 BGR).
        window: Frames ``T`` of the reconstructed window (the sources use 10).
        enc_filters: Channels of the two strided encoder convs.
        enc_kernels: Kernel sizes of the two encoder convs.
        lstm_filters: Channels of the ConvLSTMs (encoder, bottleneck, decoder).
        lstm_kernel: Kernel size of the ConvLSTMs.
        pixel_max: Largest pixel value of the scaled frames.
        strides: Temporal strides of the training windows (augmentation; 1 = consecutive frames).
        features: Error feature settings (the same as PredNet's).
    """

    ARCH: ClassVar[str] = ARCH

    height: int = 120
    width: int = 180
    channels: int = 1
    window: int = 8
    enc_filters: tuple[int, ...] = (16, 32)
    enc_kernels: tuple[int, ...] = (5, 3)
    lstm_filters: tuple[int, ...] = (16, 8, 16)
    lstm_kernel: int = 3
    pixel_max: float = 1.0
    strides: tuple[int, ...] = (1, 2, 3)
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        for name in ("enc_filters", "enc_kernels", "lstm_filters", "strides"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        if isinstance(self.features, dict):
            self.features = FeatureConfig(**self.features)
        self.validate()

    @property
    def nt(self) -> int:
        """Frames per training sequence (the window), the name the training pipeline uses."""
        return self.window

    def validate(self) -> None:
        """Raise ``ValueError`` on inconsistent settings."""
        if self.height % 4 or self.width % 4 or min(self.height, self.width) < 8:
            raise ValueError(f"height and width must be multiples of 4 and at least 8. "
                             f"Received: height={self.height}, width={self.width}")
        if len(self.enc_filters) != 2 or len(self.enc_kernels) != 2:
            raise ValueError(f"enc_filters and enc_kernels need 2 values. "
                             f"Received: enc_filters={self.enc_filters}, enc_kernels={self.enc_kernels}")
        if not self.lstm_filters or min(self.lstm_filters) < 1 or min(self.enc_filters) < 1:
            raise ValueError(f"lstm_filters must be positive channel counts. Received: {self.lstm_filters}")
        if self.window < 2:
            raise ValueError(f"window must be at least 2. Received: window={self.window}")
        if not self.strides or min(self.strides) < 1:
            raise ValueError(f"strides must be positive. Received: strides={self.strides}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={self.channels}")
        self.features.validate(self.height, self.width)

    def layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`ConvLSTMAutoencoder`."""
        return {"window": self.window, "enc_filters": list(self.enc_filters), "enc_kernels": list(self.enc_kernels),
                "lstm_filters": list(self.lstm_filters), "lstm_kernel": self.lstm_kernel,
                "pixel_max": self.pixel_max}

    def flops_per_frame(self) -> int:
        """Multiply-adds x 2 of one streaming step (the whole window through the encoder and ConvLSTMs, the
        newest frame through the decoder), counting convolutions only.

        Example:
            >>> round(ConvLSTMAEConfig().flops_per_frame() / 1e6)
            1190
        """
        h, w, c = self.input_shape
        (e1, e2), (k1, k2) = self.enc_filters, self.enc_kernels
        h2, w2, h4, w4 = h // 2, w // 2, h // 4, w // 4
        enc = h2 * w2 * e1 * k1 * k1 * c + h4 * w4 * e2 * k2 * k2 * e1
        lstm, prev = 0, e2
        for f in self.lstm_filters:
            lstm += h4 * w4 * 4 * f * self.lstm_kernel**2 * (prev + f)
            prev = f
        dec = h4 * w4 * k2 * k2 * prev * e1 + h2 * w2 * k1 * k1 * e1 * c  # transposed convs: input positions
        return 2 * (self.window * (enc + lstm) + dec)


@keras.saving.register_keras_serializable(package="vigil")
class ConvLSTMAutoencoder(keras.layers.Layer):
    """Spatial conv encoder, ConvLSTM encoder-decoder, deconv decoder over windows ``(B, T, H, W, C)``.

    Args:
        window: Frames ``T`` per window (the streaming state keeps ``T - 1``).
        enc_filters: Channels of the two strided encoder convs.
        enc_kernels: Their kernel sizes.
        lstm_filters: Channels of the ConvLSTMs.
        lstm_kernel: Kernel size of the ConvLSTMs.
        pixel_max: Output scale (sigmoid times ``pixel_max``).
        **kwargs: Base ``Layer`` arguments.
    """

    def __init__(self, window: int, enc_filters: list[int], enc_kernels: list[int], lstm_filters: list[int],
                 lstm_kernel: int = 3, pixel_max: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if window < 2 or len(enc_filters) != 2 or len(enc_kernels) != 2 or not lstm_filters:
            raise ValueError(f"Need window >= 2, two encoder convs and at least one ConvLSTM. Received: window={window}, "
                             f"enc_filters={enc_filters}, enc_kernels={enc_kernels}, lstm_filters={lstm_filters}")
        self.window = int(window)
        self.enc_filters = [int(v) for v in enc_filters]
        self.enc_kernels = [int(v) for v in enc_kernels]
        self.lstm_filters = [int(v) for v in lstm_filters]
        self.lstm_kernel = int(lstm_kernel)
        self.pixel_max = float(pixel_max)
        self.frame_shape: tuple[int, int, int] | None = None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Create the sublayers for windows of shape ``(B, T, H, W, C)``."""
        h, w, c = (int(v) for v in input_shape[-3:])
        if h % 4 or w % 4:
            raise ValueError(f"Frames must have H and W divisible by 4. Received: input_shape={input_shape}")
        self.frame_shape = (h, w, c)
        self.encoder = self._build_encoder(h, w, c)
        self.lstms, self.lstm_norms = [], []
        prev = self.enc_filters[-1]
        for i, f in enumerate(self.lstm_filters):
            lstm = keras.layers.ConvLSTM2D(f, self.lstm_kernel, padding="same", return_sequences=True, name=f"lstm_{i}")
            lstm.build((None, None, h // 4, w // 4, prev))
            norm = keras.layers.LayerNormalization(name=f"lstm_norm_{i}")
            norm.build((None, None, h // 4, w // 4, f))
            self.lstms.append(lstm)
            self.lstm_norms.append(norm)
            prev = f
        self.decoder = self._build_decoder(h, w, c, prev)
        self.built = True

    def _build_encoder(self, h: int, w: int, c: int) -> list[keras.layers.Layer]:
        layers, prev = [], c
        for i, (f, k) in enumerate(zip(self.enc_filters, self.enc_kernels, strict=True)):
            conv = keras.layers.Conv2D(f, k, strides=2, padding="same", name=f"enc_conv_{i}")
            conv.build((None, h // 2**i, w // 2**i, prev))
            norm = keras.layers.LayerNormalization(name=f"enc_norm_{i}")
            norm.build((None, h // 2 ** (i + 1), w // 2 ** (i + 1), f))
            layers += [conv, norm]
            prev = f
        return layers

    def _build_decoder(self, h: int, w: int, c: int, prev: int) -> list[keras.layers.Layer]:
        up = keras.layers.Conv2DTranspose(self.enc_filters[0], self.enc_kernels[1], strides=2, padding="same",
                                          activation="relu", name="dec_deconv_0")
        up.build((None, h // 4, w // 4, prev))
        out = keras.layers.Conv2DTranspose(c, self.enc_kernels[0], strides=2, padding="same",
                                           activation="sigmoid", name="dec_deconv_1")
        out.build((None, h // 2, w // 2, self.enc_filters[0]))
        return [up, out]

    def encode(self, frames: Any) -> Any:
        """The temporal code of a window: ``(B, T, H, W, C)`` -> ``(B, T, H/4, W/4, lstm_filters[-1])``."""
        shape = ops.shape(frames)
        h, w, c = self.frame_shape
        x = ops.reshape(frames, (-1, h, w, c))
        for i in range(0, len(self.encoder), 2):
            x = ops.relu(self.encoder[i + 1](self.encoder[i](x)))
        x = ops.reshape(x, (shape[0], shape[1], h // 4, w // 4, self.enc_filters[-1]))
        for lstm, norm in zip(self.lstms, self.lstm_norms, strict=True):
            x = norm(lstm(x))
        return x

    def decode(self, code: Any) -> Any:
        """Frames from codes ``(N, H/4, W/4, ch)`` -> ``(N, H, W, C)`` in ``[0, pixel_max]``."""
        return self.decoder[1](self.decoder[0](code)) * self.pixel_max

    def call(self, frames: Any, last_only: bool = False) -> Any:
        """Reconstruct a window ``(B, T, H, W, C)``; with ``last_only`` only its newest frame ``(B, H, W, C)``."""
        code = self.encode(frames)
        if last_only:
            return self.decode(code[:, -1])
        shape = ops.shape(code)
        flat = ops.reshape(code, (-1, *code.shape[2:]))
        return ops.reshape(self.decode(flat), (shape[0], shape[1], *self.frame_shape))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """The input window's shape."""
        return tuple(input_shape)

    def state_specs(self) -> list[tuple[tuple[int, ...], str]]:
        """Per-camera ``(shape, dtype)`` of the streaming states: the last ``T - 1`` frames, the started flag."""
        if self.frame_shape is None:
            raise ValueError("The autoencoder must be built before its state shapes are known.")
        return [((self.window - 1, *self.frame_shape), "uint8"), ((1,), "float32")]

    def stream_step(self, frames: Any, states: list[Any]) -> tuple[Any, Any, list[Any]]:
        """One streaming step: ``frames`` ``(B, H, W, C)`` uint8 and ``[past (B, T-1, H, W, C) uint8,
        started (B, 1)]`` -> ``(reconstruction, squared error map (B, H, W, 1), new states)``."""
        past, started = states
        current = ops.expand_dims(frames, 1)
        fresh = ops.reshape(started, (-1, 1, 1, 1, 1)) < 0.5
        past = ops.where(fresh, ops.repeat(current, self.window - 1, axis=1), past)
        full = ops.concatenate([past, current], axis=1)
        x = ops.cast(full, "float32") * (self.pixel_max / 255.0)
        recon = self(x, last_only=True)
        return recon, squared_error_map(recon, x[:, -1]), [full[:, 1:], ops.ones_like(started)]

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for serialisation."""
        config = super().get_config()
        config.update({"window": self.window, "enc_filters": self.enc_filters, "enc_kernels": self.enc_kernels,
                       "lstm_filters": self.lstm_filters, "lstm_kernel": self.lstm_kernel, "pixel_max": self.pixel_max})
        return config


def build_autoencoder(config: ConvLSTMAEConfig) -> ConvLSTMAutoencoder:
    """A built :class:`ConvLSTMAutoencoder` for ``config``."""
    ae = ConvLSTMAutoencoder(**config.layer_kwargs(), name="convlstm_ae")
    ae.build((None, config.window, *config.input_shape))
    return ae


def build_training_model(config: ConvLSTMAEConfig) -> keras.Model:
    """``(B, T, H, W, C)`` float in ``[0, pixel_max]`` -> its reconstruction (trained with MSE against the input)."""
    frames = keras.Input((config.window, *config.input_shape), name="frames")
    return keras.Model(frames, build_autoencoder(config)(frames), name="convlstm_ae_train")


def get_autoencoder(model: keras.Model | ConvLSTMAutoencoder) -> ConvLSTMAutoencoder:
    """The :class:`ConvLSTMAutoencoder` inside a model from :func:`build_training_model` (or itself)."""
    if isinstance(model, ConvLSTMAutoencoder):
        return model
    return model.get_layer("convlstm_ae")
