"""The sparse training objective, the learning-rate warm-up, the collapse advice, `vigil train`'s options for them,
and the Moving MNIST validation set the score feature is chosen on."""

from __future__ import annotations

from pathlib import Path

import av
import keras
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from vigil.model import cli as model_cli
from vigil.model import moving_mnist
from vigil.model.collapse import ADVICE, TrainingCollapsedError, check_baselines
from vigil.model.train import TrainSettings, make_callbacks, warmup_callback
from vigil.model.trainers import FG_THRESHOLD, sparse_baselines, sparse_loss

ADVISED = "vigil train --objective sparse --warmup-steps 100"


def _loss(fn, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:  # noqa: ANN001
    return np.asarray(keras.ops.convert_to_numpy(fn(y_true, y_pred)), np.float64)


def _pair() -> tuple[np.ndarray, np.ndarray]:
    """Two windows ``(2, 2, 1, 2, 1)``: the first predicted by a flat 0.25, the second perfectly."""
    y_true = np.array([[[[[0.0], [0.5]]], [[[0.05], [1.0]]]]] * 2, np.float32)
    y_pred = np.full_like(y_true, 0.25)
    y_pred[1] = y_true[1]
    return y_true, y_pred


def test_sparse_loss_weights_foreground_pixels_by_hand():
    y_true, y_pred = _pair()
    # Squared errors: step 0 -> 0.0625 (0.0, background), 0.0625 (0.5, foreground);
    #                 step 1 -> 0.04 (0.05, background), 0.5625 (1.0, foreground). Foreground weight 1 + 3.
    np.testing.assert_allclose(_loss(sparse_loss(3.0, False), y_true, y_pred),
                               [(0.0625 + 4 * 0.0625 + 0.04 + 4 * 0.5625) / 4, 0.0], rtol=1e-6)
    np.testing.assert_allclose(_loss(sparse_loss(3.0, True), y_true, y_pred), [(0.04 + 4 * 0.5625) / 2, 0.0],
                               rtol=1e-6)  # step 0 (predicted from an empty state) is left out
    assert 0.05 < FG_THRESHOLD < 0.5  # the hand computation's split into background and foreground


def test_sparse_loss_with_no_foreground_weight_is_plain_mse_also_compiled():
    rng = np.random.default_rng(0)
    y_true = (rng.random((3, 4, 8, 8, 1)) ** 4).astype(np.float32)  # mostly dark, some bright pixels
    y_pred = rng.random((3, 4, 8, 8, 1)).astype(np.float32)
    mse = ((y_pred - y_true) ** 2).mean(axis=(1, 2, 3, 4))
    np.testing.assert_allclose(_loss(sparse_loss(0.0, False), y_true, y_pred), mse, rtol=1e-5)
    np.testing.assert_allclose(_loss(sparse_loss(0.0, True), y_true, y_pred),
                               ((y_pred - y_true)[:, 1:] ** 2).mean(axis=(1, 2, 3, 4)), rtol=1e-5)
    assert np.all(_loss(sparse_loss(4.0, False), y_true, y_pred) > mse)
    # As Keras uses it: compiled into a model (an identity here), the batch mean of the per-window losses.
    inputs = keras.Input((4, 8, 8, 1))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    model.compile(loss=sparse_loss(4.0, True))
    expected = _loss(sparse_loss(4.0, True), y_true, y_pred).mean()
    assert float(model.evaluate(y_pred, y_true, batch_size=3, verbose=0)) == pytest.approx(expected, rel=1e-5)


def _dot_video() -> np.ndarray:
    """``(1, 3, 2, 2, 1)``: an empty frame, then a 0.8 dot at (0, 0) that moves to (0, 1)."""
    frames = np.zeros((1, 3, 2, 2, 1), np.float32)
    frames[0, 1, 0, 0] = frames[0, 2, 0, 1] = 0.8
    return frames


def test_sparse_baselines_on_a_hand_made_video():
    frames = _dot_video()
    # Next-frame prediction (steps 1, 2; weight 2 on the dots): black 2 * 2 * 0.64 / 8 = 0.32; the mean pixel 0.2:
    # (2 * 2 * 0.36 + 6 * 0.04) / 8 = 0.21; the previous frame: (2 * 0.64 + 0.64 + 2 * 0.64) / 8 = 0.4.
    base = sparse_baselines(frames, 1.0, True)
    assert base == pytest.approx({"constant_frame": 0.21, "previous_frame": 0.4})
    # The numpy baselines and the Keras loss agree: predictions [anything, frame 0, frame 1] copy the previous frame.
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    assert _loss(sparse_loss(1.0, True), frames, previous)[0] == pytest.approx(0.4, rel=1e-6)
    # Reconstruction (all 3 frames, mean 2/15): (2 * 2 * (2/3)^2 + 10 * (2/15)^2) / 12 = 22/135, below black's 2.56/12.
    assert sparse_baselines(frames, 1.0, False) == pytest.approx({"constant_frame": 22 / 135})


def test_a_model_collapsed_to_black_fails_on_sparse_frames_with_the_advice():
    rng = np.random.default_rng(1)
    frames = np.zeros((4, 5, 16, 16, 1), np.float32)
    for b in range(4):
        y, x = rng.integers(0, 12, 2)
        for t in range(5):
            frames[b, t, y:y + 3, (x + t) % 14:(x + t) % 14 + 3] = 0.9
    black = float(_loss(sparse_loss(4.0, True), frames, np.zeros_like(frames)).mean())
    base = sparse_baselines(frames, 4.0, True)
    assert base["constant_frame"] < black  # a small loss, yet predicting the mean pixel does better
    with pytest.raises(TrainingCollapsedError, match="constant_frame") as err:
        check_baselines(black, base, ["constant_frame"])
    assert ADVICE in str(err.value) and ADVISED in str(err.value)


class _LearningRates(keras.callbacks.Callback):
    """The optimizer's learning rate as each batch starts (after the callbacks before this one have set it)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.values.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def test_warmup_rises_linearly_then_holds_and_the_drop_still_applies(tmp_path):
    (tmp_path / "w").mkdir()
    settings = TrainSettings(data=tmp_path, out=tmp_path / "m", work_dir=tmp_path / "w", lr=0.01, lr_drop_epoch=2,
                             warmup_steps=4)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(settings.lr), loss="mse")
    x = np.random.default_rng(0).random((12, 3)).astype(np.float32)
    rates = _LearningRates()
    model.fit(x, x[:, :1], batch_size=4, epochs=3, validation_data=(x, x[:, :1]), verbose=0,
              callbacks=[*make_callbacks(settings), rates])
    # 3 batches per epoch: 4 warm-up batches (epoch 0 and the first of epoch 1), then lr, then lr / 10 from epoch 2.
    np.testing.assert_allclose(rates.values, [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001],
                               rtol=1e-6)
    without = TrainSettings(data=tmp_path, out=tmp_path / "m", work_dir=tmp_path / "w")
    assert "WarmUp" not in {type(c).__name__ for c in make_callbacks(without)}


def test_a_resumed_warmup_continues_from_the_optimizers_step_count():
    """Training resumed after 2 of 4 warm-up batches (BackupAndRestore restores the optimizer) goes on at 3/4."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(2)
    x = np.random.default_rng(0).random((12, 3)).astype(np.float32)
    rates = _LearningRates()
    model.fit(x, x[:, :1], batch_size=4, epochs=1, verbose=0, callbacks=[warmup_callback(0.01, 4), rates])
    np.testing.assert_allclose(rates.values, [0.0075, 0.01, 0.01], rtol=1e-6)


def _app() -> typer.Typer:
    app, bench = typer.Typer(), typer.Typer()
    model_cli.register(app, bench)
    return app


def _text(output: str) -> str:
    """CLI output without rich's box characters and line wrapping."""
    return " ".join(output.replace("│", " ").split())


def test_vigil_train_help_lists_the_objective_options_and_bad_values_fail():
    runner = CliRunner()
    help_text = _text(runner.invoke(_app(), ["train", "--help"]).output)
    for option in ("--objective", "--fg-weight", "--warmup-steps", "default|sparse"):
        assert option in help_text, option
    bad = runner.invoke(_app(), ["train", "--data", "x", "--objective", "l1"])
    assert bad.exit_code == 2 and "Invalid value for '--objective'" in _text(bad.stderr)
    assert "'l1' is not one of 'default', 'sparse'" in _text(bad.stderr)
    for args, message in ((["--warmup-steps", "-1"], "'--warmup-steps'"), (["--fg-weight", "-1"], "'--fg-weight'"),
                          (["--fg-weight", "2"], "--fg-weight applies to --objective sparse only"),
                          (["--arch", "inpaint", "--objective", "sparse"], "available for prednet, convlstm-ae")):
        result = runner.invoke(_app(), ["train", "--data", "x", *args])
        assert result.exit_code == 2 and message in _text(result.stderr), (args, result.output)
    # fine-tuning: the model's own architecture decides, so an inpainter cannot take the sparse objective either
    inpainter = str(Path(__file__).parents[2] / "model" / "weights" / "ped2-inpaint")
    for init_from, message in ((inpainter, "available for prednet, convlstm-ae"), ("nowhere", "not a model directory")):
        result = runner.invoke(_app(), ["train", "--data", "x", "--init-from", init_from, "--objective", "sparse"])
        assert result.exit_code == 2 and message in _text(result.stderr), (init_from, result.output)


def test_vigil_train_passes_the_objective_into_the_settings(tmp_path, monkeypatch):
    import vigil.model.train as train_module

    seen: list[TrainSettings] = []

    def spy(config, settings: TrainSettings) -> dict:  # noqa: ANN001
        seen.append(settings)
        return {"training": {"best_epoch": 1}, "calibration": {"n_warmup": 2}}

    monkeypatch.setattr(train_module, "train", spy)
    base = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--work-dir", str(tmp_path / "w")]
    for extra in ([], ["--objective", "sparse"], ["--objective", "SPARSE", "--fg-weight", "2.5", "--warmup-steps", "7"]):
        result = CliRunner().invoke(_app(), [*base, *extra])
        assert result.exit_code == 0, result.output
    assert [(s.objective, s.fg_weight, s.warmup_steps) for s in seen] == [
        ("default", 0.0, 0), ("sparse", 4.0, 0), ("sparse", 2.5, 7)]


def _write_dot_videos(folder: Path, n: int = 3, frames: int = 12) -> None:
    """``n`` lossless 16x24 videos of a 2x2 dot moving right over a black background."""
    folder.mkdir(parents=True)
    for i in range(n):
        rng = np.random.default_rng(i)
        y, x = int(rng.integers(2, 12)), int(rng.integers(0, 8))
        with av.open(str(folder / f"c{i}.mkv"), "w") as container:
            stream = container.add_stream("ffv1", rate=10)
            stream.width, stream.height, stream.pix_fmt = 24, 16, "gray"
            for t in range(frames):
                frame = np.zeros((16, 24), np.uint8)
                frame[y:y + 2, x + t:x + t + 2] = 200
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
            container.mux(stream.encode())


def test_vigil_train_on_sparse_video_catches_a_non_learning_model_with_the_advice(tmp_path):
    _write_dot_videos(tmp_path / "videos")
    keras.backend.clear_session()
    result = CliRunner().invoke(_app(), [
        "train", "--data", str(tmp_path / "videos"), "--out", str(tmp_path / "model"), "--work-dir",
        str(tmp_path / "work"), "--height", "16", "--width", "24", "--stack-sizes", "1,4,8", "--r-stack-sizes",
        "2,4,8", "--nt", "5", "--epochs", "1", "--batch-size", "2", "--steps-per-epoch", "2", "--n-val", "1",
        "--lr", "0", "--objective", "sparse", "--warmup-steps", "2"])  # lr 0: the model cannot learn
    assert result.exit_code == 3, result.output
    stderr = _text(result.stderr)
    assert "no better than the trivial predictor(s) constant_frame" in stderr and ADVISED in stderr
    assert not (tmp_path / "model").exists()


def test_mmnist_validation_is_deterministic_and_uses_train_pool_digits_only(monkeypatch):
    chosen: list[int] = []
    original = moving_mnist.make_sequence

    class Recorder:
        """The digit images, recording which ones a sequence takes."""

        def __init__(self, digits: np.ndarray) -> None:
            self.digits = digits

        def __getitem__(self, index: int) -> np.ndarray:
            chosen.append(int(index))
            return self.digits[index]

    monkeypatch.setattr(moving_mnist, "make_sequence",
                        lambda rng, digits, pool, n_digits=2: original(rng, Recorder(digits), pool, n_digits))
    val = moving_mnist.make_validation(seed=3, n_normal=6, n_temporal=3, n_spatial=3)
    monkeypatch.undo()
    train_pool, test_pool = moving_mnist.digit_pools(len(moving_mnist.digit_images()))
    assert len(chosen) == 2 * 12 and set(chosen) <= set(train_pool.tolist())
    assert not set(chosen) & set(test_pool.tolist()) and not set(train_pool.tolist()) & set(test_pool.tolist())
    again = moving_mnist.make_validation(seed=3, n_normal=6, n_temporal=3, n_spatial=3)
    for key in ("val", "val_labels", "val_masks"):
        np.testing.assert_array_equal(val[key], again[key])  # the recording changed nothing either
    assert val["val"].shape == (12, 20, 64, 64) and val["val_labels"].tolist() == [0] * 6 + [1] * 3 + [2] * 3
    np.testing.assert_array_equal(val["val"][6:9, -1], val["val"][6:9, 0])  # temporal: last frame = first
    assert not np.array_equal(moving_mnist.make_validation(seed=4, n_normal=6, n_temporal=3, n_spatial=3)["val"],
                              val["val"])
    data = moving_mnist.make_dataset(seed=3, n_train=12, n_normal=6, n_temporal=3, n_spatial=3)
    for other in (data["train"], data["test"]):  # its own random stream: no sequence of the data set recurs
        assert not any(np.array_equal(v, o) for v in val["val"] for o in other)
