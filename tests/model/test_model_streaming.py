"""The streaming step API: shapes, padding to buckets, and equality with the unrolled sequence."""

from __future__ import annotations

import numpy as np
import pytest
from model_testutils import moving_square_video, tiny_config

from vigil.model.features import FrameFeatures
from vigil.model.prednet import build_sequence_model, get_cell
from vigil.model.streaming import StreamingPredictor, bucket_size


@pytest.fixture(scope="module")
def predictor() -> StreamingPredictor:
    return StreamingPredictor.build_untrained(tiny_config(), seed=1)


def test_step_shapes_and_features(predictor):
    frames = np.stack([moving_square_video(1, seed=s)[0] for s in range(3)])
    result = predictor.step(frames, [predictor.initial_state() for _ in range(3)])
    assert result.predictions.shape == (3, 16, 24, 1) and result.predictions.dtype == np.float32
    assert result.predictions.min() >= 0.0 and result.predictions.max() <= 1.0
    assert result.heatmaps.shape == (3, *predictor.heatmap_shape) == (3, 4, 6)
    feats = result.features
    assert isinstance(feats, FrameFeatures) and len(feats) == 3
    for value in feats.as_dict().values():
        assert value.shape == (3,) and value.dtype == np.float32
    err = np.mean((result.predictions - frames / 255.0) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(feats.mse, err, rtol=1e-4)
    np.testing.assert_allclose(feats.psnr, 10 * np.log10(1 / err), rtol=1e-4)
    assert np.all(feats.patch_max >= feats.mse - 1e-7)
    assert [a.shape for a in result.new_states[0]] == [a.shape for a in predictor.initial_state()]


def test_step_over_time_equals_unrolled_sequence(predictor):
    video = moving_square_video(7, seed=3)
    seq = build_sequence_model(predictor.config, "prediction", nt=7)
    get_cell(seq).set_weights(predictor.cell.get_weights())
    unrolled = np.asarray(seq(video[None].astype("float32") / 255.0))[0]
    state = predictor.initial_state()
    for t in range(len(video)):
        result = predictor.step(video[t:t + 1], [state])
        state = result.new_states[0]
        np.testing.assert_allclose(result.predictions[0], unrolled[t], rtol=1e-5, atol=1e-6)


def test_batch_padding_does_not_mix_cameras(predictor):
    videos = [moving_square_video(3, seed=s) for s in range(5)]  # 5 cameras: padded to the 6-bucket
    states = [predictor.initial_state() for _ in videos]
    single = [predictor.initial_state() for _ in videos]
    for t in range(3):
        batched = predictor.step(np.stack([v[t] for v in videos]), states)
        states = batched.new_states
        for i, v in enumerate(videos):
            alone = predictor.step(v[t:t + 1], [single[i]])
            single[i] = alone.new_states[0]
            np.testing.assert_allclose(batched.predictions[i], alone.predictions[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(batched.features.patch_max[i], alone.features.patch_max[0], rtol=1e-4)


def test_more_than_64_cameras(predictor):
    frames = np.zeros((65, 16, 24, 1), np.uint8)
    result = predictor.step(frames, [predictor.initial_state()] * 65)
    assert result.predictions.shape[0] == 65 and len(result.new_states) == 65 and len(result.features) == 65


def test_bad_inputs_raise(predictor):
    with pytest.raises(ValueError, match="uint8"):
        predictor.step(np.zeros((1, 16, 24, 1), np.float32), [predictor.initial_state()])
    with pytest.raises(ValueError, match="one state per frame"):
        predictor.step(np.zeros((2, 16, 24, 1), np.uint8), [predictor.initial_state()])
    with pytest.raises(ValueError, match="state"):
        predictor.step(np.zeros((1, 16, 24, 1), np.uint8), [predictor.initial_state()[:-1]])


def test_buckets():
    assert [bucket_size(n) for n in (1, 2, 3, 5, 7, 9, 16, 17, 25, 33, 64)] == [1, 2, 3, 6, 8, 12, 16, 24, 32, 48, 64]
    assert all(bucket_size(n) <= 1.5 * n for n in range(1, 65))  # padded by at most half
    with pytest.raises(ValueError):
        bucket_size(65)


def test_default_model_loads():
    from vigil.model.streaming import DEFAULT_MODEL_DIR

    predictor = StreamingPredictor.load(DEFAULT_MODEL_DIR)
    assert predictor.model_id == "prednet-ped2"
    assert predictor.input_shape == (120, 180, 1) and predictor.heatmap_shape == (15, 22)
    assert "calibration" in predictor.card


def test_frame_features_record():
    names = FrameFeatures.names()
    assert names == ("mse", "psnr", "patch_max", "motion_max")  # also the keys in model cards and CSV files
    f = FrameFeatures.from_mapping({n: np.arange(3) + i for i, n in enumerate(names)})
    assert len(f) == 3 and f.psnr.dtype == np.float32 and f.frame(2) == {"mse": 2.0, "psnr": 3.0, "patch_max": 4.0,
                                                                        "motion_max": 5.0}
    both = FrameFeatures.concat([f, f[1:]])
    assert len(both) == 5 and both.motion_max.tolist() == [3, 4, 5, 4, 5]
    again = FrameFeatures.from_mapping(both.as_dict())
    assert all(np.array_equal(getattr(again, n), getattr(both, n)) for n in names)
    assert FrameFeatures.names(source="prednet") == ("mse", "psnr", "patch_max")
    assert FrameFeatures.names(scope="patch") == ("patch_max", "motion_max")
    assert FrameFeatures.info("psnr").anomaly_sign == -1.0 and FrameFeatures.info("psnr").unit == "dB"
    with pytest.raises(ValueError, match=r"\(N,\)"):
        FrameFeatures(mse=np.zeros(2), psnr=np.zeros(3), patch_max=np.zeros(2), motion_max=np.zeros(2))
