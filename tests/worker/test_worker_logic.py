"""Unit tests of the worker's batching, state store, engine and model hot swap (no Kafka)."""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
from worker_fake_predictor import MOTION, FakePredictor, offline_features

from vigil.services.worker.batching import plan_steps, plan_waves
from vigil.services.worker.core import EngineConfig, WorkerEngine
from vigil.services.worker.registry import DEFAULT_KEY, ModelRegistry, fingerprint
from vigil.services.worker.state import ResetReason, StreamStateStore
from vigil.shared.kafka import KafkaRecord
from vigil.shared.schemas import SCHEMA_VERSION, DeadLetter, ErrorFeatures, FrameMessage, ScoreMessage

H, W = 8, 12


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def clip(camera: int, n: int) -> np.ndarray:
    """A deterministic (n, H, W, 1) uint8 clip, different per camera."""
    rng = np.random.default_rng(camera)
    return rng.integers(0, 256, size=(n, H, W, 1), dtype=np.uint8)


_offsets = itertools.count()


def frame_record(cam: str, seq: int, img: np.ndarray, *, partition: int = 0, offset: int | None = None,
                 session: int = 0, capture_ns: int | None = None) -> KafkaRecord:  # fmt: skip
    msg = FrameMessage.from_pixels(cam, seq=seq, pts=seq / 10, capture_ns=capture_ns or time.time_ns(),
                                   image=img, session=session)  # fmt: skip
    return KafkaRecord("frames", partition, next(_offsets) if offset is None else offset, cam.encode(), msg.encode())


def make_engine(tmp_path: Path, *, warmup: int = 2, gap: int = 2, staleness: float = 0.0,
                overrides: dict[str, Path] | None = None, max_step: int | None = None,
                step_delay_s: float = 0.0) -> WorkerEngine:  # fmt: skip
    default = FakePredictor.write(tmp_path / "default", height=H, width=W, version="1", step_delay_s=step_delay_s)
    registry = ModelRegistry(FakePredictor.load, default, overrides)
    return WorkerEngine(registry, StreamStateStore(warmup, gap), EngineConfig(staleness_s=staleness, max_step=max_step))


def decode_scores(result) -> list[ScoreMessage]:  # noqa: ANN001
    return [ScoreMessage.decode(o.value) for o in result.scores]


def interleave(n_cams: int, n_frames: int, seed: int = 0) -> list[tuple[int, int]]:
    """A random interleaving of (camera, frame index) that keeps each camera's order."""
    rng = random.Random(seed)
    pending = {c: 0 for c in range(n_cams)}
    order = []
    while pending:
        c = rng.choice(sorted(pending))
        order.append((c, pending[c]))
        pending[c] += 1
        if pending[c] == n_frames:
            del pending[c]
    return order


# ------------------------------------------------------------------------------------------------
# batching
# ------------------------------------------------------------------------------------------------
def test_waves_keep_each_camera_in_order_and_cover_every_position() -> None:
    cams = [f"c{c}" for c, _ in interleave(5, 7, seed=3)]
    waves = plan_waves(cams)
    assert sorted(p for w in waves for p in w) == list(range(len(cams)))
    for w in waves:
        assert len({cams[p] for p in w}) == len(w), "a wave holds one frame per camera"
    flat = [p for w in waves for p in w]
    for cam in set(cams):
        mine = [p for p in flat if cams[p] == cam]
        assert mine == sorted(mine)


def test_steps_split_by_model_and_size() -> None:
    cams = ["a", "b", "c", "d", "a"]
    steps = plan_steps(cams, ["m", "m", "x", "m", "m"], max_step=2)
    assert [(s.model_key, s.positions) for s in steps] == [("m", (0, 1)), ("m", (3,)), ("x", (2,)), ("m", (4,))]
    with pytest.raises(ValueError, match="max_step"):
        plan_steps(cams, ["m"] * 5, max_step=0)


# ------------------------------------------------------------------------------------------------
# state store
# ------------------------------------------------------------------------------------------------
def test_reset_rules_and_warmup_count() -> None:
    store = StreamStateStore(warmup_frames=2, max_seq_gap=1)
    init = lambda: [np.zeros(1)]  # noqa: E731

    def feed(seq: int, session: int = 0, token: int = 1) -> tuple[ResetReason | None, bool]:
        st, why = store.prepare("cam", partition=3, seq=seq, session=session, model_token=token, initial_state=init)
        return why, store.advance(st, seq=seq, new_state=[np.ones(1)])

    assert [feed(s) for s in (0, 1, 2, 4)] == [(ResetReason.NEW, True), (None, True), (None, False), (None, False)]
    assert feed(6 + 1) == (ResetReason.GAP, True)  # two missing > max gap 1
    assert feed(3) == (ResetReason.REWIND, True)
    assert feed(4, session=1) == (ResetReason.SESSION, True)
    assert feed(5, session=1, token=2) == (ResetReason.MODEL, True)
    assert feed(6, session=1, token=2) == (None, True)
    assert feed(7, session=1, token=2) == (None, False)
    assert store.drop_partitions([1, 2]) == [] and "cam" in store
    assert store.drop_partitions([3]) == ["cam"] and len(store) == 0


# ------------------------------------------------------------------------------------------------
# engine
# ------------------------------------------------------------------------------------------------
def test_batched_steps_equal_offline_steps_per_camera(tmp_path: Path) -> None:
    """Six cameras, random interleaving, random batch cuts: each camera's features = its offline run."""
    engine = make_engine(tmp_path, warmup=3)
    n_cams, n_frames = 6, 12
    clips = {c: clip(c, n_frames) for c in range(n_cams)}
    records = [frame_record(f"cam-{c}", i, clips[c][i], partition=c % 4, offset=k)
               for k, (c, i) in enumerate(interleave(n_cams, n_frames))]  # fmt: skip
    scores: list[ScoreMessage] = []
    rng = random.Random(1)
    pos = 0
    while pos < len(records):
        size = rng.randint(1, 16)
        scores += decode_scores(engine.process(records[pos : pos + size]))
        pos += size
    assert len(scores) == len(records)
    reference = FakePredictor(height=H, width=W)
    for c in range(n_cams):
        mine = [s for s in scores if s.camera_id == f"cam-{c}"]
        assert [s.seq for s in mine] == list(range(n_frames))
        assert [s.warmup for s in mine] == [True] * 3 + [False] * (n_frames - 3)
        want = offline_features(reference, clips[c])
        got = {k: np.array([getattr(s.features, k) for s in mine]) for k in want}
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
        assert all(s.model_id == "fake-prev-frame" and s.model_version == "1" for s in mine)
        assert mine[-1].heatmap().shape == reference.heatmap_shape


def test_several_frames_of_one_camera_in_one_batch_are_stepped_in_order(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    frames = clip(0, 5)
    result = engine.process([frame_record("solo", i, frames[i], offset=i) for i in range(5)] +
                            [frame_record("other", 0, clip(1, 1)[0], offset=5)])  # fmt: skip
    assert result.step_sizes == [2, 1, 1, 1, 1]
    got = [s.features.mse for s in decode_scores(result) if s.camera_id == "solo"]
    np.testing.assert_allclose(got, offline_features(FakePredictor(height=H, width=W), frames)["mse"], rtol=1e-6)


def test_max_step_limits_the_batched_step(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, max_step=4)
    result = engine.process([frame_record(f"c{c}", 0, clip(c, 1)[0]) for c in range(10)])
    assert result.step_sizes == [4, 4, 2] and len(result.scores) == 10


def test_gap_and_session_change_reset_state_and_flag_warmup(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, warmup=1, gap=2)
    f = clip(0, 20)
    seqs = [(0, 0), (1, 0), (4, 0), (8, 0), (9, 0), (2, 1), (3, 1)]  # gap 2 ok, gap 3 resets, session resets
    scores = decode_scores(engine.process([frame_record("cam", s, f[i], session=ss) for i, (s, ss) in enumerate(seqs)]))
    assert [s.warmup for s in scores] == [True, False, False, True, False, True, False]
    assert engine.store.resets[ResetReason.GAP] == 1 and engine.store.resets[ResetReason.SESSION] == 1


def test_stale_frames_are_skipped_and_counted(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, staleness=1.0)
    old = time.time_ns() - 5 * 10**9
    recs = [frame_record("cam", 0, clip(0, 1)[0], capture_ns=old), frame_record("cam", 1, clip(0, 2)[1])]
    result = engine.process(recs)
    assert result.stale == {"cam": 1}
    assert [s.seq for s in decode_scores(result)] == [1]


def test_frames_turning_stale_while_earlier_waves_run_are_skipped(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, staleness=0.25, step_delay_s=0.15)
    f = clip(0, 4)
    result = engine.process([frame_record("cam", i, f[i]) for i in range(4)])  # 4 waves of 0.15 s
    assert [s.seq for s in decode_scores(result)] == [0, 1]
    assert result.stale == {"cam": 2}


def poison_records() -> dict[str, KafkaRecord]:
    good = FrameMessage.from_pixels("cam-p", seq=0, pts=0, capture_ns=1, image=clip(0, 1)[0]).encode()
    wrong_version = bytearray(good)
    wrong_version[3] = SCHEMA_VERSION + 1
    wrong_size = FrameMessage.from_pixels("cam-p", seq=1, pts=0, capture_ns=1, image=np.zeros((H + 2, W, 1), np.uint8))
    score = ScoreMessage(camera_id="cam-p", seq=0, capture_ns=1, processed_ns=2, model_id="m", model_version="1",
                         warmup=False, features=ErrorFeatures(mse=0, psnr=0, patch_max=0), latency_ms=1)  # fmt: skip
    values = {
        "garbage": b"\x00\xffnot a frame at all",
        "truncated": good[:20],
        "wrong_version": bytes(wrong_version),
        "wrong_size": wrong_size.encode(),
        "score_on_frames": score.encode(),
    }
    return {name: KafkaRecord("frames", 1, i, b"cam-p", v) for i, (name, v) in enumerate(values.items())}


def test_poison_records_become_dead_letters_with_reason(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    poison = poison_records()
    good = frame_record("cam-ok", 0, clip(2, 1)[0])
    result = engine.process([*poison.values(), good])
    assert [s.camera_id for s in decode_scores(result)] == ["cam-ok"]
    letters = {d.offset: d for d in (DeadLetter.decode(o.value) for o in result.dead_letters)}
    assert len(letters) == len(poison)
    expect = {"garbage": "magic", "truncated": "bytes", "wrong_version": "version 2 is not supported",
              "wrong_size": "takes (8, 12, 1)", "score_on_frames": "ScoreMessage"}  # fmt: skip
    for name, rec in poison.items():
        letter = letters[rec.offset]
        assert expect[name] in letter.error, (name, letter.error)
        assert letter.payload == rec.value and letter.source_topic == "frames" and letter.service == "worker"


def test_camera_override_model(tmp_path: Path) -> None:
    special = FakePredictor.write(tmp_path / "cam-9", height=H, width=W, version="tuned-9")
    engine = make_engine(tmp_path, overrides={"cam-9": special})
    scores = decode_scores(engine.process([frame_record(c, 0, clip(1, 1)[0]) for c in ("cam-1", "cam-9", "cam-2")]))
    assert {s.camera_id: s.model_version for s in scores} == {"cam-1": "1", "cam-9": "tuned-9", "cam-2": "1"}


def test_hot_swap_waits_for_a_settled_directory_and_resets_states(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, warmup=1)
    f = clip(0, 6)
    assert [s.warmup for s in decode_scores(engine.process([frame_record("cam", i, f[i]) for i in range(2)]))] == [True, False]
    assert engine.models.poll() == []
    model_dir = tmp_path / "default"
    (model_dir / "fake.json").write_text(json.dumps({"height": H, "width": W, "version": "2"}))
    os.utime(model_dir / "fake.json", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert engine.models.poll() == [], "first sight of a change only arms the swap"
    assert engine.models.poll() == [DEFAULT_KEY]
    assert engine.models.poll() == []
    scores = decode_scores(engine.process([frame_record("cam", i, f[i]) for i in range(2, 4)]))
    assert [(s.model_version, s.warmup) for s in scores] == [("2", True), ("2", False)]
    assert engine.store.resets[ResetReason.MODEL] == 1


def test_a_broken_model_directory_keeps_the_old_model(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    (tmp_path / "default" / "fake.json").write_text("{not json")
    assert engine.models.poll() == [] and engine.models.poll() == []
    assert engine.models.slot(DEFAULT_KEY).predictor.model_version == "1"
    assert fingerprint(tmp_path / "missing") == ()


def test_drop_partitions_restarts_the_cameras_there(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, warmup=1)
    f = clip(0, 4)
    engine.process([frame_record("a", 0, f[0], partition=0), frame_record("b", 0, f[0], partition=1)])
    assert engine.drop_partitions([1]) == ["b"]
    scores = decode_scores(engine.process([frame_record("a", 1, f[1], partition=0), frame_record("b", 1, f[1], partition=1)]))
    assert {s.camera_id: s.warmup for s in scores} == {"a": False, "b": True}


def test_records_replayed_on_a_kept_partition_are_skipped(tmp_path: Path) -> None:
    """After a rebalance Kafka replays from the committed offset; scored frames are not stepped twice."""
    engine = make_engine(tmp_path, warmup=1)
    f = clip(0, 6)
    recs = [frame_record("cam", i, f[i], partition=2, offset=100 + i) for i in range(6)]
    engine.process(recs[:4])
    result = engine.process(recs[2:])  # replay of offsets 102, 103
    assert result.replayed == 2
    assert [(s.seq, s.warmup) for s in decode_scores(result)] == [(4, False), (5, False)]
    engine.drop_partitions([2])  # a partition that left and came back is processed from scratch
    assert [(s.seq, s.warmup) for s in decode_scores(engine.process(recs[4:]))] == [(4, True), (5, False)]



def test_motion_is_per_frame_across_gaps_and_absent_after_a_reset(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, warmup=0, gap=5)
    f = clip(0, 12)
    seqs = (0, 1, 4, 11)  # a kept state across a gap of 3, then a reset (gap 7 > 5)
    scores = [s for q in seqs for s in decode_scores(engine.process([frame_record("a", q, f[q])]))]
    assert [s.features.motion_max for s in scores] == [0.0, MOTION, pytest.approx(MOTION / 3), 0.0]
