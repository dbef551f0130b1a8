"""The ConvLSTM autoencoder, the architecture registry behind the streaming predictor, and the collapse guard."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from convlstm_backend_runner import compute
from model_testutils import moving_square_video, run_on_jax, tiny_config

from vigil.model.architectures import arch_of_dir, get_architecture, names
from vigil.model.collapse import TrainingCollapsedError, check_baselines, make_guard
from vigil.model.config import PredNetConfig
from vigil.model.convlstm_ae import ConvLSTMAEConfig, build_autoencoder, build_training_model
from vigil.model.data import Clip, make_sequence_dataset
from vigil.model.streaming import CONFIG_FILE, StreamingPredictor
from vigil.model.trainers import ae_baselines, prednet_baselines, trainer_for

RUNNER = Path(__file__).with_name("convlstm_backend_runner.py")


def tiny_ae(**overrides) -> ConvLSTMAEConfig:
    """A 3-frame autoencoder on 16x24 gray frames."""
    kwargs = {"height": 16, "width": 24, "window": 3, "enc_filters": (4, 4), "lstm_filters": (4, 2, 4),
              "features": {"patch_size": 4, "patch_stride": 2, "heatmap_stride": 4}}
    return ConvLSTMAEConfig(**(kwargs | overrides))


def _save_model_dir(path: Path, config, seed: int = 0, noisy: bool = True) -> StreamingPredictor:
    """Write a model directory of ``config``'s architecture with random weights; return its predictor."""
    keras.utils.set_random_seed(seed)
    predictor = StreamingPredictor.build_untrained(config, seed=seed)
    if noisy:  # random normal weights, so that outputs vary with the input
        rng = np.random.default_rng(seed)
        predictor.cell.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in predictor.cell.get_weights()])
    path.mkdir(parents=True, exist_ok=True)
    config.save(path / CONFIG_FILE)
    predictor.arch.save_weights(predictor.cell, path / predictor.arch.weights_file)
    return predictor


def test_config_round_trip_and_validation(tmp_path):
    config = tiny_ae()
    assert config.to_dict()["arch"] == "convlstm-ae"
    assert ConvLSTMAEConfig.from_dict(config.to_dict()) == config
    config.save(tmp_path / "c.json")
    assert ConvLSTMAEConfig.load(tmp_path / "c.json") == config
    for bad in ({"height": 18}, {"window": 1}, {"strides": ()}, {"enc_filters": (4,)}):
        with pytest.raises(ValueError, match="Received"):
            tiny_ae(**bad)
    with pytest.raises(ValueError, match="Unknown"):
        ConvLSTMAEConfig.from_dict({**config.to_dict(), "nope": 1})
    with pytest.raises(ValueError, match="arch"):
        ConvLSTMAEConfig.from_dict(tiny_config().to_dict())
    with pytest.raises(ValueError, match="arch"):
        PredNetConfig.from_dict(config.to_dict())
    legacy = {k: v for k, v in tiny_config().to_dict().items() if k != "arch"}  # written before the registry
    assert PredNetConfig.from_dict(legacy) == tiny_config()


def test_shapes_and_layer_config():
    config = tiny_ae()
    model = build_training_model(config)
    x = np.random.default_rng(0).random((2, 3, 16, 24, 1)).astype("float32")
    y = np.asarray(model(x))
    assert y.shape == x.shape and y.min() >= 0.0 and y.max() <= 1.0
    ae = build_autoencoder(config)
    assert np.asarray(ae(x, last_only=True)).shape == (2, 16, 24, 1)
    assert ae.state_specs() == [((2, 16, 24, 1), "uint8"), ((1,), "float32")]
    clone = type(ae).from_config(ae.get_config())
    assert clone.get_config() == ae.get_config()


def test_streaming_equals_the_batch_reconstruction_of_each_window():
    config = tiny_ae()
    predictor = StreamingPredictor.build_untrained(config, seed=3)
    predictor.motion = False
    rng = np.random.default_rng(3)
    predictor.cell.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in predictor.cell.get_weights()])
    video = moving_square_video(7, seed=1)
    state = predictor.initial_state()
    assert [a.dtype for a in state] == [np.uint8, np.float32, np.uint8]
    assert predictor.state_nbytes() == 2 * 16 * 24 + 4 + 16 * 24
    x = video.astype("float32") / 255.0
    for t in range(len(video)):
        result = predictor.step(video[t:t + 1], [state])
        state = result.new_states[0]
        # The window ending at frame t; a fresh state fills the frames before the first with the first frame.
        window = x[[max(0, t - 2 + k) for k in range(3)]][None]
        expected = np.asarray(predictor.cell(window))[0, -1]
        np.testing.assert_allclose(result.predictions[0], expected, atol=2e-5)
        np.testing.assert_allclose(result.features.mse[0], np.mean((expected - x[t]) ** 2), rtol=1e-4, atol=1e-7)
        np.testing.assert_array_equal(state[0], video[[max(0, t - 1 + k) for k in range(2)]])
    assert result.heatmaps.shape == (1, *config.heatmap_shape) and state[1][0] == 1.0


def test_batched_cameras_do_not_mix():
    predictor = StreamingPredictor.build_untrained(tiny_ae(), seed=0)
    predictor.motion = False
    videos = [moving_square_video(4, seed=s) for s in range(3)]
    alone = []
    for v in videos:
        st = predictor.initial_state()
        for f in v:
            out = predictor.step(f[None], [st])
            st = out.new_states[0]
        alone.append(out.predictions[0])
    states = [predictor.initial_state() for _ in videos]
    for t in range(4):
        out = predictor.step(np.stack([v[t] for v in videos]), states)
        states = out.new_states
    np.testing.assert_allclose(out.predictions, np.stack(alone), atol=2e-5)


def test_registry_dispatch_and_model_dirs(tmp_path):
    assert names() == ("prednet", "convlstm-ae", "inpaint")
    assert get_architecture("inpaint").weights_file == "inpaint.weights.npz"  # available since issue 14
    with pytest.raises(ValueError, match="Unknown architecture"):
        get_architecture("vae")
    _save_model_dir(tmp_path / "ae", tiny_ae())
    _save_model_dir(tmp_path / "pn", tiny_config(), noisy=False)
    (tmp_path / "pn" / CONFIG_FILE).write_text(json.dumps({k: v for k, v in tiny_config().to_dict().items()
                                                           if k != "arch"}))  # a directory written before "arch"
    assert (arch_of_dir(tmp_path / "ae"), arch_of_dir(tmp_path / "pn")) == ("convlstm-ae", "prednet")
    ae, pn = StreamingPredictor.load(tmp_path / "ae"), StreamingPredictor.load(tmp_path / "pn")
    assert (ae.arch.name, pn.arch.name, ae.model_id) == ("convlstm-ae", "prednet", "convlstm-ae-ae")
    (tmp_path / "ae" / "prednet.weights.npz").write_bytes(b"")  # a stray file of another arch is not read
    assert StreamingPredictor.load(tmp_path / "ae").model_version == ae.model_version
    (tmp_path / "ae" / "convlstm_ae.weights.npz").unlink()
    with pytest.raises(FileNotFoundError, match="convlstm_ae.weights.npz"):
        StreamingPredictor.load(tmp_path / "ae")


def test_worker_registry_serves_two_architectures(tmp_path):
    from vigil.services.worker.registry import ModelRegistry

    _save_model_dir(tmp_path / "pn", tiny_config())
    _save_model_dir(tmp_path / "ae", tiny_ae())
    registry = ModelRegistry(StreamingPredictor.load, tmp_path / "pn", {"cam-ae": tmp_path / "ae"})
    frame = moving_square_video(1)
    archs = {}
    for cam in ("cam-pn", "cam-ae"):
        predictor = registry.slot(registry.key_for(cam)).predictor
        out = predictor.step(frame, [predictor.initial_state()])
        assert out.features.mse.shape == (1,) and out.heatmaps.shape == (1, 4, 6)
        archs[cam] = predictor.arch.name
    assert archs == {"cam-pn": "prednet", "cam-ae": "convlstm-ae"}


def test_tensorflow_and_jax_agree(tmp_path):
    assert keras.backend.backend() == "tensorflow"
    _save_model_dir(tmp_path, tiny_ae(), seed=2)
    np.save(tmp_path / "video.npy", moving_square_video(5, seed=2))
    jax_out = run_on_jax(RUNNER, tmp_path)
    tf_out = compute(tmp_path)
    assert tf_out["preds"].std() > 0.01
    np.testing.assert_allclose(tf_out["preds"][-1], tf_out["batch"][-1], atol=2e-5)
    for key, value in tf_out.items():
        np.testing.assert_allclose(jax_out[key], value, rtol=2e-4, atol=3e-5, err_msg=key)


def test_short_training_lowers_the_loss_with_strided_windows():
    config = tiny_ae()
    clips = [Clip(f"c{i}", moving_square_video(20, seed=i)) for i in range(3)]
    data = make_sequence_dataset(clips, config.window, 8, strides=(1, 2, 3), shuffle=False, target="input",
                                 max_batches=4)
    x, y = data[0]
    assert x.shape == (8, 3, 16, 24, 1) and y is x
    trainer = trainer_for("convlstm-ae")
    keras.utils.set_random_seed(0)
    model = trainer.build(config)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=trainer.loss)
    before = model.evaluate(data, verbose=0)
    model.fit(data, epochs=5, verbose=0)
    after = model.evaluate(data, verbose=0)
    assert after < 0.7 * before, (before, after)


def test_collapse_guard_fires_on_a_constant_predictor():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(6)(keras.layers.Lambda(lambda v: v * 0.0)(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x = np.random.default_rng(0).random((64, 6)).astype("float32")
    guard = make_guard(lambda: float(np.std(model.predict_on_batch(x[:16]))), float(np.std(x)), monitor="loss")
    history = model.fit(x, x, epochs=10, batch_size=16, callbacks=[guard], verbose=0)
    assert guard.reason is not None and "constant" in guard.reason
    assert len(history.history["loss"]) == 2  # stopped after the second constant epoch


def test_collapse_guard_fires_on_a_flat_loss_and_not_on_learning():
    losses = iter([0.0244] * 10)
    guard = make_guard(lambda: 1.0, 1.0, monitor="loss")
    guard.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    for epoch in range(5):
        guard.on_epoch_end(epoch, {"loss": next(losses)})
        if guard.reason:
            break
    assert epoch == 3 and "not moved" in guard.reason and guard.model.stop_training
    learning = make_guard(lambda: 1.0, 1.0, monitor="loss")
    learning.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    for epoch, loss in enumerate([0.05, 0.04, 0.035, 0.033, 0.032]):
        learning.on_epoch_end(epoch, {"loss": loss})
    assert learning.reason is None


def test_trivial_baselines():
    frames = np.zeros((2, 4, 8, 8, 1), np.float32)
    frames[:, :, 2:4, 2:4] = 1.0  # a static square: copying the previous frame is perfect
    pn = prednet_baselines(frames, tiny_config())
    assert pn["previous_frame"] == 0.0 and pn["constant_frame"] == pytest.approx(4 / 64 / 2)
    assert ae_baselines(frames, tiny_ae())["constant_frame"] == pytest.approx(frames.var())
    with pytest.raises(TrainingCollapsedError, match="constant_frame"):
        check_baselines(0.1, {"constant_frame": 0.05}, ["constant_frame"])
