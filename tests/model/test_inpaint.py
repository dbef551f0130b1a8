"""Masked-frame inpainting with convolutional attention (``--arch inpaint``): config, masks, streaming, training."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from inpaint_backend_runner import compute
from model_testutils import run_on_jax

from vigil.model.inpaint import InpaintConfig, build_training_model, get_inpainter, shift_masks
from vigil.model.streaming import CONFIG_FILE, StreamingPredictor

RUNNER = Path(__file__).with_name("inpaint_backend_runner.py")


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


def _save_model_dir(path: Path, config: InpaintConfig, core) -> None:  # noqa: ANN001
    """Write a model directory (config and weights, no card) of an inpainting core."""
    path.mkdir(parents=True, exist_ok=True)
    config.save(path / CONFIG_FILE)
    predictor = StreamingPredictor(config, core, "inpaint-test", "unsaved")
    predictor.arch.save_weights(core, path / predictor.arch.weights_file)


def _weights(core) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {w.path: np.array(w) for w in core.weights}


def _scores(core, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The NLL maps and expected frames of ``core`` on float windows (every shift decoded, eagerly)."""
    return tuple(np.asarray(keras.ops.convert_to_numpy(a)) for a in core.score_window(windows))


def test_a_model_trained_one_step_survives_save_and_load(tmp_path):
    keras.utils.set_random_seed(4)
    config = tiny()
    model = build_training_model(config)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mae")
    video = squares(8, seed=4)
    x = video.astype("float32") / 255.0
    windows = np.stack([x[i : i + 3] for i in range(6)])
    core = get_inpainter(model)
    initial, (_, initial_mean) = _weights(core), _scores(core, windows)
    model.fit(windows, np.zeros((6, 1), "float32"), batch_size=6, epochs=1, verbose=0)  # one step
    trained, (nll, mean) = _weights(core), _scores(core, windows)
    assert sum(not np.array_equal(initial[k], trained[k]) for k in trained) == len(trained)  # the step moved all
    assert np.abs(mean - initial_mean).max() > 1e-3  # ... and the outputs, far beyond the tolerances below
    _save_model_dir(tmp_path, config, core)
    loaded = StreamingPredictor.load(tmp_path)
    assert loaded.config == config and loaded.arch.name == "inpaint" and loaded.model_id == f"inpaint-{tmp_path.name}"
    assert loaded.cell.get_config() == core.get_config()
    after = _weights(loaded.cell)
    assert list(after) == list(trained)
    for key, value in trained.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    # The loaded model's streaming step on frames 0..7 = the trained model's scoring of the windows ending at 2..7.
    loaded.motion = False
    state = loaded.initial_state()
    for t in range(len(video)):
        result = loaded.step(video[t : t + 1], [state])
        state = result.new_states[0]
        if t >= 2:
            np.testing.assert_allclose(result.predictions[0], mean[t - 2], atol=2e-6)
            assert result.features.mse[0] == pytest.approx(float(nll[t - 2].mean()), rel=1e-5)
    np.testing.assert_array_equal(state[0], video[-2:])


def test_tensorflow_and_jax_agree(tmp_path):
    assert keras.backend.backend() == "tensorflow"
    config = tiny()
    predictor = StreamingPredictor.build_untrained(config, seed=2)
    rng = np.random.default_rng(2)  # random normal weights, so that the outputs vary with the input
    predictor.cell.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in predictor.cell.get_weights()])
    _save_model_dir(tmp_path, config, predictor.cell)
    np.save(tmp_path / "video.npy", squares(5, seed=2))
    jax_out = run_on_jax(RUNNER, tmp_path)
    tf_out = compute(tmp_path)
    assert set(jax_out) == set(tf_out) and tf_out["preds"].std() > 0.005 and tf_out["heatmaps"].std() > 0.05
    np.testing.assert_array_equal(jax_out["state_past"], tf_out["state_past"])  # the last frames, uint8
    np.testing.assert_array_equal(jax_out["state_started"], tf_out["state_started"])
    # float32 on two backends (measured on x86 CPU: 2.4e-7 absolute on the expected frames, 2e-7 relative on the
    # NLL): the expected frames (in [0, 1]) to 1e-5 absolute; the NLL heat maps (nats, about 5 to 6 here) and the
    # features (mse, psnr, patch_max of the NLL map) to 5e-5 relative.
    np.testing.assert_allclose(jax_out["preds"], tf_out["preds"], rtol=0, atol=1e-5, err_msg="preds")
    for key in ("feats", "heatmaps"):
        np.testing.assert_allclose(jax_out[key], tf_out[key], rtol=5e-5, atol=1e-6, err_msg=key)


def test_the_moving_mnist_last_frame_shortcut_equals_stepping_every_frame(tmp_path):
    """``mmnist_eval.last_frame_errors`` steps only the last frame of an inpainter from the state it would
    have after the others; the NLL map equals stepping every frame through the worker's step."""
    from vigil.model.mmnist_eval import last_frame_errors, own_error_map

    predictor = StreamingPredictor.build_untrained(tiny(), seed=4)
    predictor.motion = False
    _save_model_dir(tmp_path, predictor.config, predictor.cell)
    sequences = np.stack([squares(6, seed=s)[..., 0] for s in range(3)])
    shortcut = last_frame_errors(tmp_path, sequences, progress=False)

    states = [predictor.initial_state() for _ in sequences]
    for t in range(sequences.shape[1] - 1):
        states = predictor.step(sequences[:, t, ..., None], states).new_states
    stepped = own_error_map(predictor, sequences[:, -1, ..., None], [s[:-1] for s in states])
    last = predictor.step(sequences[:, -1, ..., None], states)
    assert shortcut.shape == (3, 16, 24)
    np.testing.assert_allclose(shortcut, stepped, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(shortcut.mean(axis=(1, 2)), last.features.mse, rtol=1e-4)
