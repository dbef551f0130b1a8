"""`VIGIL_WORKER_MOTION` with the packaged Ped2 model (real TensorFlow step, no Kafka)."""

from __future__ import annotations

import numpy as np
import pytest
from test_worker_logic import decode_scores, frame_record

from vigil.services.worker.settings import WorkerSettings
from vigil.services.worker.transport import build_engine


@pytest.mark.parametrize("motion", [True, False])
def test_motion_setting_decides_whether_scores_carry_motion(monkeypatch: pytest.MonkeyPatch, motion: bool) -> None:
    monkeypatch.setenv("VIGIL_WORKER_MOTION", str(motion).lower())
    engine = build_engine(WorkerSettings())
    assert [slot.predictor.motion for slot in engine.models.slots()] == [motion]
    img = np.zeros((120, 180, 1), np.uint8)
    img[40:80, 50:90, 0] = np.random.default_rng(0).integers(60, 255, (40, 40))
    scores = [s for seq in range(3) for s in decode_scores(engine.process([frame_record("m", seq, np.roll(img, 3 * seq, axis=1))]))]
    speeds = [s.features.motion_max for s in scores]
    assert speeds[0] == 0.0  # no previous frame
    assert (all(v > 1.0 for v in speeds[1:]) if motion else speeds[1:] == [0.0, 0.0]), speeds
