"""Training on tiny synthetic video: the loss goes down, freezing holds, the pipeline writes a model dir."""

from __future__ import annotations

import json

import av
import keras
import numpy as np
from model_testutils import moving_square_video, tiny_config

from vigil.model.data import Clip, make_sequence_dataset, motion_crop_origins, read_video, sequence_starts
from vigil.model.prednet import get_cell
from vigil.model.replay import model_warmup
from vigil.model.streaming import StreamingPredictor
from vigil.model.train import TrainSettings, build_model, train


def _clips(n: int = 4, frames: int = 20) -> list[Clip]:
    return [Clip(f"c{i}", moving_square_video(frames, seed=i)) for i in range(n)]


def test_sequences_stay_inside_clips():
    clips = [Clip("a", np.zeros((7, 16, 24, 1), np.uint8)), Clip("b", np.zeros((4, 16, 24, 1), np.uint8))]
    assert sequence_starts(clips, nt=5, stride=1) == [(0, 0), (0, 1), (0, 2)]
    data = make_sequence_dataset(clips, nt=5, batch_size=2)
    x, y = data[0]
    assert x.shape == (2, 5, 16, 24, 1) and x.dtype == np.float32 and y.shape == (2, 1)


def test_motion_crops_follow_the_moving_object():
    video = np.full((6, 32, 48, 1), 20, np.uint8)
    for t in range(6):  # a square moving right along rows 20..23
        video[t, 20:24, 30 + t:34 + t] = 220
    rng = np.random.default_rng(0)
    origins = [motion_crop_origins(video, (8, 8), rng, motion_share=1.0) for _ in range(50)]
    for top, left in origins:  # every window covers part of the motion
        assert top <= 23 and top + 8 > 20 and left <= 38 and left + 8 > 30
    uniform = {motion_crop_origins(video, (8, 8), rng, motion_share=0.0) for _ in range(50)}
    assert len(uniform) > 10 and all(0 <= t <= 24 and 0 <= left <= 40 for t, left in uniform)
    x, _ = make_sequence_dataset([Clip("a", video)], nt=4, batch_size=3, crop=(8, 16))[0]
    assert x.shape == (3, 4, 8, 16, 1)


def test_crop_trained_model_runs_on_whole_frames(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        _write_video(videos / f"clip{i}.mkv", moving_square_video(24, seed=i))
    settings = TrainSettings(data=videos, out=tmp_path / "model", work_dir=tmp_path / "work", epochs=1,
                             steps_per_epoch=1, n_val=1, crop=(8, 16), guard=False)
    card = train(tiny_config(), settings)
    assert card["training"]["crop"] == [8, 16] and card["config"]["height"] == 16
    predictor = StreamingPredictor.load(tmp_path / "model")
    assert predictor.input_shape == (16, 24, 1)
    result = predictor.step(moving_square_video(1), [predictor.initial_state()])
    assert result.predictions.shape == (1, 16, 24, 1)


def test_short_training_lowers_loss(tmp_path):
    config = tiny_config()
    settings = TrainSettings(data=tmp_path, out=tmp_path / "m", work_dir=tmp_path / "w", lr=3e-3)
    model = build_model(config, settings)
    data = make_sequence_dataset(_clips(), config.nt, batch_size=8, stride=2, shuffle=False)
    before = model.evaluate(data, verbose=0)
    model.fit(data, epochs=8, verbose=0)
    after = model.evaluate(data, verbose=0)
    assert after < 0.8 * before, (before, after)


def test_frozen_layers_do_not_change(tmp_path):
    config = tiny_config()
    settings = TrainSettings(data=tmp_path, out=tmp_path / "m", work_dir=tmp_path / "w", freeze=[0])
    model = build_model(config, settings)
    cell = get_cell(model)
    frozen = [np.array(w) for w in cell.r_convs[0].weights]
    free = [np.array(w) for w in cell.r_convs[1].weights]
    model.fit(make_sequence_dataset(_clips(2), config.nt, batch_size=4), epochs=1, verbose=0)
    for before, after in zip(frozen, cell.r_convs[0].weights, strict=True):
        np.testing.assert_array_equal(before, np.array(after))
    assert any(not np.array_equal(b, np.array(a)) for b, a in zip(free, cell.r_convs[1].weights, strict=True))


def _write_video(path, frames: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "gray"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f[:, :, 0], format="gray")))
        container.mux(stream.encode())


def test_train_pipeline_writes_model_dir_and_resumes(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        _write_video(videos / f"clip{i}.mkv", moving_square_video(24, seed=i))
    np.testing.assert_array_equal(read_video(videos / "clip0.mkv", 16, 24, 1), moving_square_video(24, seed=0))
    keras.backend.clear_session()
    settings = TrainSettings(data=videos, out=tmp_path / "model", work_dir=tmp_path / "work", epochs=1,
                             steps_per_epoch=1, n_val=1, model_id="prednet-test", command="vigil train ...",
                             guard=False)
    card = train(tiny_config(), settings)
    assert card["training"]["epochs_run"] == 1 and card["data"]["val_clips"] == ["clip2"]
    assert card["calibration"]["n_warmup"] >= 1
    assert set(card["calibration"]["feature_stats"]) == {"mse", "psnr", "patch_max", "motion_max", "fused"}
    # the worker's warm-up is measured on the training clips, as `vigil calibrate` does (no 10-frame default)
    locations = card["calibration"]["locations"]
    assert 1 <= locations["warmup_frames"] <= 10 and len(locations["warmup_thresholds"]) == 10
    assert model_warmup(card) == locations["warmup_frames"]
    predictor = StreamingPredictor.load(tmp_path / "model")
    assert predictor.model_id == "prednet-test"
    assert json.loads((tmp_path / "model" / "model_card.json").read_text())["command"] == "vigil train ..."
    assert "## Reproduce" in (tmp_path / "model" / "MODEL_CARD.md").read_text()
    # Resume: the backup in work/ makes a rerun with more epochs continue at epoch 2.
    settings.epochs = 2
    card = train(tiny_config(), settings)
    assert card["training"]["epochs_run"] == 2 and len(card["training"]["val_loss"]) == 2
