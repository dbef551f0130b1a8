"""Optical-flow speed (`motion_max`) and the previous frame kept in each camera's state."""

from __future__ import annotations

import numpy as np
import pytest

from vigil.model.config import PredNetConfig
from vigil.model.motion import motion_max, patch_means
from vigil.model.streaming import StreamingPredictor


def _textured(h: int = 48, w: int = 72, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 1), np.uint8)
    img[12:36, 16:40, 0] = rng.integers(80, 255, (24, 24))
    return img


@pytest.mark.parametrize("shift", [1, 3])
def test_motion_max_measures_the_shift_in_pixels_per_frame(shift):
    prev = _textured()
    frame = np.roll(prev, shift, axis=1)
    speed = motion_max(prev[None], frame[None], patch_size=16, patch_stride=8)[0]
    assert shift * 0.6 < speed < shift * 1.4
    assert motion_max(prev[None], prev[None])[0] < 0.05  # still scene


def test_faster_motion_scores_higher():
    prev = _textured()
    slow, fast = (motion_max(prev[None], np.roll(prev, s, axis=1)[None])[0] for s in (1, 4))
    assert fast > 2 * slow


def test_patch_means_match_a_direct_computation():
    v = np.random.default_rng(1).random((20, 30))
    got = patch_means(v, 4, 2)
    assert got.shape == (9, 14)
    assert np.isclose(got[3, 5], v[6:10, 10:14].mean())


def test_motion_max_rejects_mismatched_frames():
    with pytest.raises(ValueError, match="same shape"):
        motion_max(np.zeros((1, 8, 8, 1), np.uint8), np.zeros((2, 8, 8, 1), np.uint8))


def test_the_state_carries_the_previous_frame():
    p = StreamingPredictor.build_untrained(PredNetConfig(height=48, width=72))
    state = p.initial_state()
    assert state[-1].shape == (48, 72, 1) and state[-1].dtype == np.uint8
    prev, frame = _textured(), np.roll(_textured(), 3, axis=1)
    r1 = p.step(prev[None], [state])
    assert np.array_equal(r1.new_states[0][-1], prev)
    r2 = p.step(frame[None], r1.new_states)
    assert 1.5 < r2.features.motion_max[0] < 4.5
    assert p.state_nbytes() == sum(a.nbytes for a in state)
    with pytest.raises(ValueError, match="previous frame"):
        p.step(frame[None], [state[:-1]])



def test_motion_can_be_switched_off():
    p = StreamingPredictor.build_untrained(PredNetConfig(height=48, width=72))
    p.motion = False
    prev, frame = _textured(), np.roll(_textured(), 3, axis=1)
    out = p.step(frame[None], p.step(prev[None], [p.initial_state()]).new_states)
    assert out.features.motion_max.tolist() == [0.0]
