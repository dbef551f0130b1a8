"""Masked-frame inpainting with convolutional attention (``--arch inpaint``): config, masks, streaming, training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from vigil.model.inpaint import InpaintConfig, build_training_model, shift_masks
from vigil.model.streaming import CONFIG_FILE, StreamingPredictor


def tiny(**overrides) -> InpaintConfig:  # noqa: ANN003
    kwargs = {"height": 16, "width": 24, "context": 2, "grid": (2, 2), "enc_filters": (4, 4), "lstm_filters": 4,
              "attn_hidden": 4, "dec_filters": (4, 4), "shift_batch": 2,
              "features": {"patch_size": 4, "patch_stride": 2, "heatmap_stride": 4}}
    return InpaintConfig(**(kwargs | overrides))


def squares(n: int, seed: int = 0, h: int = 16, w: int = 24) -> np.ndarray:
    """``n`` frames (n, h, w, 1) uint8 of a bright square moving right by 1 px per frame on a dark background."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 20, size=(n, h, w, 1)).astype(np.uint8)
    y = int(rng.integers(2, h - 6))
    for t in range(n):
        x = (2 + t) % (w - 4)
        video[t, y : y + 4, x : x + 4] = 220
    return video


def test_config_round_trip_and_validation(tmp_path):
    config = tiny()
    assert InpaintConfig.from_dict(config.to_dict()) == config
    config.save(tmp_path / CONFIG_FILE)
    assert InpaintConfig.load(tmp_path / CONFIG_FILE) == config
    assert config.to_dict()["arch"] == "inpaint"
    assert InpaintConfig().mask_fraction == pytest.approx(0.95)
    for bad, match in (({"height": 18}, "multiples of 4"), ({"attn_kernel": 2}, "odd"), ({"context": 0}, "context"),
                       ({"shift_batch": 9}, "shift_batch"), ({"channels": 2}, "channels")):
        with pytest.raises(ValueError, match=match):
            tiny(**bad)


def test_the_fixed_shifts_show_every_pixel_exactly_once_and_hide_95_percent():
    gy, gx = InpaintConfig().grid
    masks = np.asarray(shift_masks((gy, gx), np.arange(gy * gx), 64, 96))[..., 0]
    np.testing.assert_array_equal(masks.sum(axis=0), np.ones((64, 96)))
    np.testing.assert_allclose(1.0 - masks.mean(axis=(1, 2)), 0.95, atol=0.003)  # 96 is not a multiple of 5


def test_streaming_equals_scoring_each_window():
    config = tiny()
    predictor = StreamingPredictor.build_untrained(config, seed=3)
    predictor.motion = False
    rng = np.random.default_rng(3)
    predictor.cell.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in predictor.cell.get_weights()])
    video = squares(5, seed=1)
    state = predictor.initial_state()
    x = video.astype("float32") / 255.0
    for t in range(len(video)):
        result = predictor.step(video[t : t + 1], [state])
        state = result.new_states[0]
        # The window ending at frame t; a fresh state fills the frames before the first with the first frame.
        window = x[[max(0, t - 2 + k) for k in range(3)]][None]
        nll, mean = (np.asarray(a) for a in predictor.cell.score_window(window))
        np.testing.assert_allclose(result.predictions[0], mean[0], atol=2e-5)
        assert np.all(nll > 0) and np.isfinite(result.features.mse[0])
    assert result.heatmaps.shape == (1, *config.heatmap_shape)


def test_an_untrained_model_is_uniform_and_short_training_lowers_the_loss():
    keras.utils.set_random_seed(0)
    config = tiny()
    model = build_training_model(config)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mae")
    video = squares(40, seed=2).astype("float32") / 255.0
    windows = np.stack([video[i : i + 3] for i in range(0, 36, 2)])
    zeros = np.zeros((len(windows), 1), "float32")
    first = float(model.evaluate(windows, zeros, verbose=0))
    assert first == pytest.approx(np.log(256), rel=0.05), "an untrained decoder is near uniform over 256 values"
    model.fit(windows, zeros, epochs=15, batch_size=6, verbose=0)
    assert float(model.evaluate(windows, zeros, verbose=0)) < 0.8 * first
