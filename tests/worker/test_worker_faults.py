"""The worker under faults and hostile producers, without Kafka (issue #15): one record's failure costs that
record only, future capture times, bounded camera state, two ingests of one camera, clock skew."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from test_worker_logic import H, W, clip, decode_scores, frame_record
from worker_fake_predictor import FakePredictor, PoisonedPredictor

from vigil.services.worker.core import EngineConfig, WorkerEngine
from vigil.services.worker.guards import CameraLabels
from vigil.services.worker.registry import ModelRegistry
from vigil.services.worker.state import ResetReason, StreamStateStore
from vigil.shared.kafka import KafkaRecord
from vigil.shared.schemas import DeadLetter


def engine_with(tmp_path: Path, predictor: type = FakePredictor, **config: object) -> WorkerEngine:
    default = FakePredictor.write(tmp_path / "m", height=H, width=W, version="1")
    registry = ModelRegistry(predictor.load, default, None)
    return WorkerEngine(registry, StreamStateStore(1, 2), EngineConfig(**config))


def letters(result) -> list[DeadLetter]:  # noqa: ANN001
    return [DeadLetter.decode(o.value) for o in result.dead_letters]


WHITE = np.full((H, W, 1), 255, np.uint8)


def test_a_frame_that_breaks_the_model_costs_only_that_frame(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, PoisonedPredictor)
    cams = [("c0", clip(0, 1)[0]), ("c1", clip(1, 1)[0]), ("bad", WHITE), ("c2", clip(2, 1)[0]), ("c3", clip(3, 1)[0])]
    result = engine.process([frame_record(cam, 0, img, offset=i) for i, (cam, img) in enumerate(cams)])
    assert sorted(s.camera_id for s in decode_scores(result)) == ["c0", "c1", "c2", "c3"]
    (letter,) = letters(result)
    assert letter.camera_id == "bad" and "model step failed on this frame" in letter.error
    assert "NaN" in letter.error and result.errors == 1 and "bad" not in engine.store
    more = engine.process([frame_record("c0", 1, clip(0, 2)[1], offset=5), frame_record("bad", 1, clip(9, 1)[0], offset=6)])
    assert sorted(s.camera_id for s in decode_scores(more)) == ["bad", "c0"]


def test_an_unexpected_error_on_one_record_costs_that_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_with(tmp_path)
    real = engine.models.key_for
    monkeypatch.setattr(engine.models, "key_for", lambda cam: (_ for _ in ()).throw(KeyError(cam)) if cam == "x"
                        else real(cam))  # fmt: skip
    result = engine.process([frame_record("a", 0, clip(0, 1)[0]), frame_record("x", 0, clip(1, 1)[0]),
                             frame_record("b", 0, clip(2, 1)[0])])  # fmt: skip
    assert sorted(s.camera_id for s in decode_scores(result)) == ["a", "b"]
    (letter,) = letters(result)
    assert letter.error.startswith("worker error: KeyError") and result.errors == 1


def test_capture_time_far_in_the_future_is_dead_lettered(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, max_future_skew_s=3600)
    ahead = time.time_ns() + 2 * 3600 * 10**9
    result = engine.process([frame_record("a", 0, clip(0, 1)[0], capture_ns=ahead), frame_record("a", 1, clip(0, 2)[1])])
    assert [s.seq for s in decode_scores(result)] == [1]
    (letter,) = letters(result)
    assert "ahead of this worker's clock" in letter.error and "NTP" in letter.error
    assert result.refused == {"future": 1}


def test_camera_allow_list_refuses_unknown_ids(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, allowed_cameras=frozenset({"lobby"}))
    result = engine.process([frame_record("lobby", 0, clip(0, 1)[0]), frame_record("forged", 0, clip(1, 1)[0])])
    assert [s.camera_id for s in decode_scores(result)] == ["lobby"]
    assert result.refused == {"not_allowed": 1} and "VIGIL_WORKER_ALLOWED_CAMERAS" in letters(result)[0].error
    assert engine.store.cameras() == ["lobby"]


def test_camera_state_is_capped_and_idle_cameras_are_evicted(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, max_cameras=3, idle_evict_s=100)
    result = engine.process([frame_record(f"f{i}", 0, clip(i, 1)[0]) for i in range(5)])
    assert len(decode_scores(result)) == 3 and result.refused == {"camera_limit": 2} and len(engine.store) == 3
    assert "VIGIL_WORKER_MAX_CAMERAS" in letters(result)[0].error
    for cam in ("f0", "f1"):  # two cameras go quiet for longer than idle_evict_s
        engine.store.get(cam).last_seen -= 200
    result = engine.process([frame_record("new", 0, clip(7, 1)[0])])
    assert [s.camera_id for s in decode_scores(result)] == ["new"]
    assert sorted(engine.store.cameras()) == ["f2", "new"]


def test_metric_labels_per_camera_are_bounded() -> None:
    labels = CameraLabels(frozenset(), top_n=3)
    assert len({labels.label(f"forged-{i}") for i in range(1000)}) == 4  # 3 cameras + "other"
    allow = CameraLabels(frozenset({"lobby"}), top_n=3)
    assert {allow.label("lobby"), allow.label("x"), allow.label("y")} == {"lobby", "other"}


def test_two_ingests_of_one_camera_keep_the_newest_session(tmp_path: Path) -> None:
    """Sessions alternate (a rolling update left two ingests running): no reset per frame, old frames skipped."""
    engine = engine_with(tmp_path, session_stick_s=5)
    f = clip(0, 12)
    recs = [frame_record("cam", 100 + i, f[i], session=1000 if i % 2 == 0 else 2000) for i in range(8)]
    result = engine.process(recs[:4])
    result2 = engine.process(recs[4:])
    scores = decode_scores(result) + decode_scores(result2)
    assert [s.session for s in scores] == [1000, 2000, 2000, 2000, 2000]  # the first frame came before any other
    assert engine.store.resets[ResetReason.SESSION] == 1  # once, not on every frame
    assert result.conflicts == {"cam": (2000, 1000)} and result2.skipped[("superseded", "cam")].count == 2
    engine.store.get("cam").last_seen -= 10  # the newer ingest stopped: the older one is followed again
    back = decode_scores(engine.process([frame_record("cam", 200, f[9], session=1000)]))
    assert [(s.session, s.warmup) for s in back] == [(1000, True)]


def test_stale_frames_are_counted_per_reason_with_their_range(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, staleness_s=1.0)
    old = time.time_ns() - 30 * 10**9
    recs = [frame_record("cam", i, clip(0, 5)[i], capture_ns=old, partition=1, offset=50 + i) for i in range(4)]
    result = engine.process([*recs, frame_record("cam", 4, clip(0, 5)[4], partition=1, offset=54)])
    skipped = result.skipped[("stale", "cam")]
    assert (skipped.count, skipped.first_seq, skipped.last_seq, skipped.first_offset) == (4, 0, 3, 50)
    assert [s.seq for s in decode_scores(result)] == [4]


def test_clock_skew_is_measured_per_camera(tmp_path: Path) -> None:
    engine = engine_with(tmp_path)
    now = time.time_ns()
    engine.process([frame_record("behind", i, clip(0, 3)[i], capture_ns=now - 8 * 10**9) for i in range(3)] +
                   [frame_record("ok", 0, clip(1, 1)[0], capture_ns=now)], received_ns=now)  # fmt: skip
    skew = engine.skew.take()
    assert skew["behind"].min_ns == 8 * 10**9 and skew["behind"].frames == 3 and skew["ok"].min_ns == 0
    assert engine.skew.take() == {}


def test_oversized_key_and_value_still_give_a_dead_letter_within_the_limit(tmp_path: Path) -> None:
    engine = engine_with(tmp_path)
    engine.max_record_bytes = 200_000
    rec = KafkaRecord("frames", 0, 1, b"k" * 500_000, b"\x00" * 600_000)
    result = engine.process([rec])
    (out,) = result.dead_letters
    assert len(out.key) + len(out.value) <= 200_000 and "truncated" in DeadLetter.decode(out.value).error
