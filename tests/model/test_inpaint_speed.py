"""The fast inference path of the inpainting model (``--arch inpaint``) computes what the plain one computed.

``score_window`` scores the windows one after another, ``shift_batch`` shifts at a time, with the NLL as
``logsumexp`` minus the true value's logit and the expected intensity from the same ``exp`` pass. The reference
below is the plain formulation it replaced (all windows of a shift chunk decoded together, ``log_softmax`` and
``softmax`` tensors of the logits' size), kept here to check that the results stay equal in float32.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from vigil.model.inpaint import (
    LEVELS,
    InpaintConfig,
    build_inpainter,
    nll_and_mean,
    pixel_nll,
    shift_masks,
)
from vigil.model.streaming import StreamingPredictor


def expected_value(logits, pixel_max: float):  # noqa: ANN001, ANN201
    """The plain expected intensity ``(N, H, W, C)`` of the per-pixel distributions (a ``softmax`` tensor)."""
    levels = ops.arange(LEVELS, dtype="float32") * (pixel_max / (LEVELS - 1))
    return ops.sum(ops.softmax(logits, axis=-1) * levels, axis=-1)


def tiny(**overrides) -> InpaintConfig:  # noqa: ANN003
    """A small config; the 2 x 3 grid with ``shift_batch`` 4 leaves a last chunk of 2 shifts."""
    kwargs = {"height": 16, "width": 24, "context": 2, "grid": (2, 3), "enc_filters": (4, 4), "lstm_filters": 4,
              "attn_hidden": 4, "dec_filters": (4, 4), "shift_batch": 4,
              "features": {"patch_size": 4, "patch_stride": 2, "heatmap_stride": 4}}
    return InpaintConfig(**(kwargs | overrides))


def random_core(config: InpaintConfig, seed: int):  # noqa: ANN201
    """A built core with random normal weights (so that the distributions are far from uniform)."""
    keras.utils.set_random_seed(seed)
    core = build_inpainter(config)
    rng = np.random.default_rng(seed)
    core.set_weights([rng.normal(0, 0.4, w.shape).astype("float32") for w in core.get_weights()])
    return core


def reference_nll(logits: np.ndarray, frame: np.ndarray, pixel_max: float = 1.0) -> np.ndarray:
    """``-log_softmax(logits)[true value]`` in float64 numpy."""
    x = logits.astype(np.float64)
    logp = x - x.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    target = np.clip(np.round(frame * (255.0 / pixel_max)), 0, LEVELS - 1).astype(np.int64)
    return -np.take_along_axis(logp, target[..., None], axis=-1)[..., 0]


def reference_score_window(core, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The plain formulation: each shift chunk decoded for all windows at once, log-softmax and softmax tensors."""
    h, w, c = core.frame_shape
    features = core.encode_context(window[:, :-1])
    frame, last = window[:, -1], window[:, -2]
    total_nll, total_mean = 0.0, 0.0
    for start in range(0, core.n_shifts, core.shift_batch):
        shifts = np.arange(start, min(start + core.shift_batch, core.n_shifts), dtype="int32")
        s = len(shifts)
        mask = shift_masks(core.grid, shifts, h, w)
        masks = ops.reshape(ops.zeros_like(frame[:, None, :, :, :1]) + mask[None], (-1, h, w, 1))
        frames = ops.repeat(frame, s, axis=0)
        logits = core.decode(ops.repeat(features, s, axis=0), ops.repeat(last, s, axis=0), frames, masks)
        target = ops.cast(ops.clip(ops.round(frames * (255.0 / core.pixel_max)), 0, LEVELS - 1), "int32")
        nll = -ops.take_along_axis(ops.log_softmax(logits, axis=-1), target[..., None], axis=-1)[..., 0]
        nll = ops.reshape(ops.mean(nll, axis=-1), (-1, s, h, w, 1))
        mean = ops.reshape(expected_value(logits, core.pixel_max), (-1, s, h, w, c))
        hidden = ops.reshape(1.0 - masks, (-1, s, h, w, 1))
        total_nll = total_nll + ops.sum(nll * hidden, axis=1)
        total_mean = total_mean + ops.sum(mean * hidden, axis=1)
    return tuple(np.asarray(ops.convert_to_numpy(t)) / (core.n_shifts - 1) for t in (total_nll, total_mean))


def test_pixel_nll_is_the_log_softmax_of_the_true_value():
    rng = np.random.default_rng(0)
    logits = (rng.normal(0, 8, (2, 3, 4, 2, LEVELS)) + 40).astype("float32")  # large and spread: needs the max
    frame = rng.integers(0, 256, (2, 3, 4, 2)).astype("float32") / 255.0
    expected = reference_nll(logits, frame)
    np.testing.assert_allclose(np.asarray(pixel_nll(logits, frame, 1.0)), expected, rtol=1e-5, atol=2e-5)
    nll, mean = (np.asarray(a) for a in nll_and_mean(logits, frame, 1.0))
    np.testing.assert_allclose(nll, expected, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(mean, np.asarray(expected_value(logits, 1.0)), rtol=0, atol=1e-6)
    assert expected.std() > 1.0  # the values differ enough for the comparison to mean something


def test_the_training_loss_and_its_gradient_are_unchanged():
    """``pixel_nll`` (training) against ``-log_softmax`` gathered, on the gradient too."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    logits = tf.constant(rng.normal(0, 3, (2, 4, 5, 1, LEVELS)).astype("float32"))
    frame = rng.integers(0, 256, (2, 4, 5, 1)).astype("float32") / 255.0
    target = tf.constant(np.round(frame * 255).astype("int32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        new = tf.reduce_sum(pixel_nll(logits, frame, 1.0) ** 2)
        picked = tf.gather(tf.nn.log_softmax(logits), target[..., None], batch_dims=4)[..., 0]
        old = tf.reduce_sum((-picked) ** 2)
    np.testing.assert_allclose(float(new), float(old), rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(new, logits).numpy(), tape.gradient(old, logits).numpy(), atol=1e-5)


@pytest.mark.parametrize("shift_batch", [1, 4, 6])
def test_score_window_equals_the_plain_batched_formulation(shift_batch):
    config = tiny(shift_batch=shift_batch)
    core = random_core(config, seed=shift_batch)
    window = np.random.default_rng(shift_batch).random((3, config.nt, *config.input_shape)).astype("float32")
    nll, mean = (np.asarray(ops.convert_to_numpy(a)) for a in core.score_window(window))
    ref_nll, ref_mean = reference_score_window(core, window)
    assert nll.shape == (3, 16, 24, 1) and mean.shape == (3, 16, 24, 1)
    assert ref_nll.std() > 0.05 and ref_mean.std() > 0.003  # random weights: broad distributions, means near 0.5
    np.testing.assert_allclose(nll, ref_nll, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-6)
    one = np.asarray(ops.convert_to_numpy(core.score_window(window[1:2])[0]))
    np.testing.assert_allclose(one[0], nll[1], rtol=1e-6, atol=1e-6)  # windows do not mix


def test_the_compiled_streaming_step_of_five_cameras_equals_the_reference():
    """Five cameras (padded to the bucket of 6) through the compiled step, against the reference per window."""
    config = tiny()
    predictor = StreamingPredictor(config, random_core(config, seed=7), "inpaint-test", "untrained")
    predictor.motion = False
    video = np.random.default_rng(7).integers(0, 256, (4, 5, *config.input_shape), dtype=np.uint8)  # (T, B, ...)
    states = [predictor.initial_state() for _ in range(5)]
    x = video.astype("float32") / 255.0
    for t in range(len(video)):
        result = predictor.step(video[t], states)
        states = result.new_states
        window = np.stack([x[max(0, t - config.context + k)] for k in range(config.nt)], axis=1)  # (B, K + 1, ...)
        ref_nll, ref_mean = reference_score_window(predictor.cell, window)
        np.testing.assert_allclose(result.predictions, ref_mean, rtol=0, atol=2e-6)
        np.testing.assert_allclose(result.features.mse, ref_nll.mean(axis=(1, 2, 3)), rtol=1e-5)
