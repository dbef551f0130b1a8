"""Integration tests of `vigil worker` against the real Kafka (`make up`): workers run as subprocesses."""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from worker_fake_predictor import FakePredictor
from worker_harness import (
    TopicReader,
    WorkerEnv,
    make_tiny_model,
    ped2_clips,
    produce_frames,
    start_worker,
    wait_for,
)

from vigil.model.features import FrameFeatures
from vigil.shared.kafka import make_producer
from vigil.shared.schemas import DeadLetter, FrameMessage, ScoreMessage

pytestmark = pytest.mark.integration
REAL_PREDICTOR = "vigil.model.streaming:StreamingPredictor"


def scores_of(reader: TopicReader) -> list[ScoreMessage]:
    return [ScoreMessage.decode(r.value) for r in reader.records]


def test_six_ped2_cameras_one_score_per_frame_equal_to_offline(
    kafka_settings, topic_settings, unique_name, ped2_dir, tmp_path: Path  # noqa: ANN001
) -> None:
    """Six Ped2 clips in, one score per frame out, per-camera order, features = offline run of the same model."""
    from vigil.model.inference import run_clips
    from vigil.model.streaming import StreamingPredictor

    model_dir = make_tiny_model(tmp_path / "model")
    predictor = StreamingPredictor.load(model_dir)
    n_frames, warmup = 40, 5
    cameras = {f"ped2-{i + 1:03d}": c for i, c in enumerate(ped2_clips(ped2_dir, 6, n_frames, predictor.input_shape))}
    env = WorkerEnv(topic_settings, unique_name("worker"), model_dir, REAL_PREDICTOR,
                    extra={"VIGIL_WORKER_WARMUP_FRAMES": str(warmup), "VIGIL_WORKER_MAX_BATCH": "16"})  # fmt: skip
    producer = make_producer(kafka_settings)
    reader = TopicReader(kafka_settings, topic_settings.scores)
    sent = produce_frames(producer, topic_settings.frames, cameras, 0, n_frames // 2)  # a backlog before start
    worker = start_worker(env, tmp_path, "w1")
    try:
        wait_for(lambda: len(reader.poll()) >= sent, 120, f"{sent} scores of the backlog", [worker])
        sent += produce_frames(producer, topic_settings.frames, cameras, n_frames // 2, n_frames)  # live
        wait_for(lambda: len(reader.poll()) >= sent, 60, f"{sent} scores", [worker])
        time.sleep(1.0)
        reader.poll()
        assert worker.proc.poll() is None, worker.log()[-2000:]
    finally:
        worker.stop()
        reader.close()
        producer.close()

    scores = scores_of(reader)
    assert len(scores) == sent == 6 * n_frames, "exactly one score per frame (no rebalance, no duplicates)"
    reference = run_clips(predictor, cameras, batch=6, progress=False)
    partitions = defaultdict(set)
    for rec in reader.records:
        partitions[rec.key.decode()].add(rec.partition)
    for cam in cameras:
        mine = [s for s in scores if s.camera_id == cam]
        assert [s.seq for s in mine] == list(range(n_frames)), f"{cam}: order"
        assert len(partitions[cam]) == 1, f"{cam}: scores on one partition"
        assert [s.warmup for s in mine] == [True] * warmup + [False] * (n_frames - warmup)
        assert {(s.model_id, s.model_version) for s in mine} == {(predictor.model_id, predictor.model_version)}
        for feat in FrameFeatures.names(source="prednet"):
            got = np.array([getattr(s.features, feat) for s in mine])
            np.testing.assert_allclose(got, getattr(reference[cam].features, feat), rtol=2e-3, atol=1e-5, err_msg=f"{cam} {feat}")
        heat = mine[-1].heatmap()
        assert heat is not None and heat.shape == predictor.heatmap_shape
        last = mine[-1]  # log maps: half a ratio step (10**(5/255) = 1.046) off at most; linear: half of 1/255
        tol = ({"rtol": 0.024, "atol": last.heatmap_scale * 1e-5 + 1e-7} if last.heatmap_encoding == "log"
               else {"atol": last.heatmap_scale / 255 + 1e-5})  # fmt: skip
        np.testing.assert_allclose(heat, reference[cam].heatmaps[-1], **tol)
    assert all(s.latency_ms >= 0 and s.processed_ns >= s.capture_ns for s in scores)


def test_poison_messages_go_to_the_dlq_and_the_worker_keeps_running(
    kafka_settings, topic_settings, unique_name, tmp_path: Path  # noqa: ANN001
) -> None:
    model_dir = FakePredictor.write(tmp_path / "model", height=8, width=12, version="1")
    env = WorkerEnv(topic_settings, unique_name("worker"), model_dir)
    producer = make_producer(kafka_settings)
    scores, dlq = TopicReader(kafka_settings, topic_settings.scores), TopicReader(kafka_settings, topic_settings.dlq)
    good = FrameMessage.from_pixels("cam-ok", seq=0, pts=0, capture_ns=time.time_ns(), image=np.zeros((8, 12, 1), np.uint8))
    wrong_version = bytearray(good.encode())
    wrong_version[3] += 1
    from vigil.shared.schemas import ErrorFeatures

    score = ScoreMessage(camera_id="cam-ok", seq=0, capture_ns=1, processed_ns=2, model_id="m", model_version="1",
                         warmup=False, features=ErrorFeatures(mse=0, psnr=0, patch_max=0), latency_ms=0)  # fmt: skip
    wrong_size = FrameMessage.from_pixels("cam-ok", seq=1, pts=0, capture_ns=1, image=np.zeros((9, 12, 1), np.uint8))
    poison = {b"garbage": b"\x13\x37 definitely not a frame", b"version": bytes(wrong_version),
              b"size": wrong_size.encode(), b"score": score.encode()}  # fmt: skip
    worker = start_worker(env, tmp_path, "w1")
    try:
        for key, value in poison.items():
            producer.send(topic_settings.frames, key=key, value=value)
        produce_frames(producer, topic_settings.frames, {"cam-ok": np.zeros((3, 8, 12, 1), np.uint8)})
        wait_for(lambda: len(dlq.poll()) >= 4 and len(scores.poll()) >= 3, 60, "4 dead letters, 3 scores", [worker])
        produce_frames(producer, topic_settings.frames, {"cam-ok": np.zeros((6, 8, 12, 1), np.uint8)}, start=3)
        wait_for(lambda: len(scores.poll()) >= 6, 30, "scores after the poison", [worker])
        assert worker.proc.poll() is None, "worker died"
    finally:
        worker.stop()
        producer.close()
        scores.close()
        dlq.close()
    letters = {r.key: DeadLetter.decode(r.value) for r in dlq.records}
    assert set(letters) == set(poison)
    reasons = {b"garbage": "magic", b"version": "version", b"size": "takes (8, 12, 1)", b"score": "ScoreMessage"}
    for key, letter in letters.items():
        assert reasons[key] in letter.error, letter.error
        assert letter.payload == poison[key] and letter.source_topic == topic_settings.frames and letter.offset >= 0
    assert [s.seq for s in scores_of(scores)] == list(range(6))


# --------------------------------------------------------------------------------------------------
# failover
# --------------------------------------------------------------------------------------------------
def cameras_covering(partitions: int, per_partition: int = 2) -> list[str]:
    """Camera ids whose keys hash (murmur2, like every Kafka client) onto every partition."""
    from kafka.partitioner.default import murmur2

    chosen: dict[int, list[str]] = defaultdict(list)
    for i in range(1000):
        cam = f"cam-{i:02d}"
        p = (murmur2(cam.encode()) & 0x7FFFFFFF) % partitions
        if len(chosen[p]) < per_partition:
            chosen[p].append(cam)
        if sum(map(len, chosen.values())) == partitions * per_partition:
            break
    return sorted(c for cams in chosen.values() for c in cams)


def assigned_partitions(log: str) -> set[int] | None:
    found = re.findall(r"partitions assigned: \[([\d, ]*)\]", log)
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else None


class LiveProducer(threading.Thread):
    """Produces every camera's next frame at ``fps`` until stopped; remembers the last seq sent."""

    def __init__(self, producer, topic: str, cameras: list[str], fps: float) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.producer, self.topic, self.cameras, self.fps = producer, topic, cameras, fps
        self.sent = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        img = np.zeros((8, 12, 1), np.uint8)
        while not self.stop_event.is_set():
            for cam in self.cameras:
                img[:] = self.sent % 251
                msg = FrameMessage.from_pixels(cam, seq=self.sent, pts=self.sent / self.fps,
                                               capture_ns=time.time_ns(), image=img)  # fmt: skip
                self.producer.send(self.topic, key=cam.encode(), value=msg.encode())
            self.sent += 1
            time.sleep(1 / self.fps)
        self.producer.flush()


def test_killing_one_of_two_workers_moves_its_cameras(
    kafka_settings, topic_settings, unique_name, tmp_path: Path  # noqa: ANN001
) -> None:
    """SIGKILL one worker mid-stream: its cameras resume on the other with warmup; nothing is lost."""
    warmup = 3
    model_dir = FakePredictor.write(tmp_path / "model", height=8, width=12, version="1")
    env = WorkerEnv(topic_settings, unique_name("worker"), model_dir,
                    extra={"VIGIL_WORKER_WARMUP_FRAMES": str(warmup), "VIGIL_WORKER_MAX_SEQ_GAP": "1000"})  # fmt: skip
    cameras = cameras_covering(topic_settings.partitions)
    w1, w2 = start_worker(env, tmp_path, "w1"), start_worker(env, tmp_path, "w2")
    reader = TopicReader(kafka_settings, topic_settings.scores)
    live = LiveProducer(make_producer(kafka_settings), topic_settings.frames, cameras, fps=10)
    try:
        def split() -> bool:
            a, b = assigned_partitions(w1.log()), assigned_partitions(w2.log())
            return bool(a and b) and a | b == set(range(topic_settings.partitions)) and not a & b

        wait_for(split, 60, "both workers to share the partitions", [w1, w2])
        live.start()
        wait_for(lambda: live.sent >= 30, 30, "3 s of frames")
        moved = assigned_partitions(w2.log())
        w2.kill()
        killed_at = live.sent
        wait_for(lambda: assigned_partitions(w1.log()) == set(range(topic_settings.partitions)), 45,
                 "w1 to take over every partition", [w1, w2])  # fmt: skip
        wait_for(lambda: live.sent >= killed_at + 30, 30, "3 s more frames after the rebalance")
        live.stop_event.set()
        live.join(10)
        last = live.sent - 1

        def complete() -> bool:
            seen = {(s.camera_id, s.seq) for s in (ScoreMessage.decode(r.value) for r in reader.poll())}
            return all((c, q) in seen for c in cameras for q in range(last + 1))

        wait_for(complete, 60, "a score for every frame", [w1])
        assert w1.proc.poll() is None
    finally:
        live.stop_event.set()
        w1.stop()
        w2.stop()
        reader.close()
    scores = scores_of(reader)
    from kafka.partitioner.default import murmur2

    moved_cams = {c for c in cameras if (murmur2(c.encode()) & 0x7FFFFFFF) % topic_settings.partitions in moved}
    assert moved_cams and moved_cams != set(cameras)
    by_cam: dict[str, list[ScoreMessage]] = defaultdict(list)
    for s in scores:
        by_cam[s.camera_id].append(s)
    for cam in cameras:
        seqs = [s.seq for s in by_cam[cam]]
        assert set(seqs) == set(range(last + 1)), f"{cam}: frames lost"
        late_warmup = [s.seq for s in by_cam[cam] if s.warmup and s.seq >= warmup]
        if cam in moved_cams:
            assert late_warmup, f"{cam} moved to w1 but shows no warmup frames after the move"
            resumed = late_warmup[0]
            assert resumed <= killed_at + 1, (cam, resumed, killed_at)
        else:
            assert seqs == list(range(last + 1)), f"{cam} stayed on w1: no gaps, no duplicates"
            assert not late_warmup
    duplicates = len(scores) - len(cameras) * (last + 1)
    print(f"failover: {len(scores)} scores, {duplicates} at-least-once duplicates, moved {sorted(moved_cams)}")


def test_model_hot_swap_without_restart(kafka_settings, topic_settings, unique_name, tmp_path: Path) -> None:  # noqa: ANN001
    """Rewriting the model directory swaps the model in a running worker and restarts states (warmup)."""
    import json

    model_dir = FakePredictor.write(tmp_path / "model", height=8, width=12, version="1")
    env = WorkerEnv(topic_settings, unique_name("worker"), model_dir, extra={"VIGIL_WORKER_WARMUP_FRAMES": "2"})
    producer = make_producer(kafka_settings)
    reader = TopicReader(kafka_settings, topic_settings.scores)
    clip = {"cam-swap": np.zeros((40, 8, 12, 1), np.uint8)}
    worker = start_worker(env, tmp_path, "w1")
    try:
        produce_frames(producer, topic_settings.frames, clip, 0, 5)
        wait_for(lambda: len(reader.poll()) >= 5, 60, "5 scores from model version 1", [worker])
        (model_dir / "fake.json").write_text(json.dumps({"height": 8, "width": 12, "version": "2"}))
        wait_for(lambda: "swapped" in worker.log(), 30, "the model swap", [worker])
        produce_frames(producer, topic_settings.frames, clip, 5, 10)
        wait_for(lambda: len(reader.poll()) >= 10, 30, "5 scores from model version 2", [worker])
    finally:
        worker.stop()
        producer.close()
        reader.close()
    got = [(s.seq, s.model_version, s.warmup) for s in scores_of(reader)]
    assert got == [(0, "1", True), (1, "1", True), (2, "1", False), (3, "1", False), (4, "1", False),
                   (5, "2", True), (6, "2", True), (7, "2", False), (8, "2", False), (9, "2", False)]  # fmt: skip


def test_a_mixed_site_runs_two_architectures_side_by_side(kafka_settings, topic_settings, unique_name,
                                                          tmp_path: Path) -> None:  # noqa: ANN001
    """Three cameras whose `model:` entries name a PredNet, a ConvLSTM autoencoder and a masked-frame inpainter:
    one worker, one batch loop, each camera scored by its own architecture (real Kafka, real models)."""
    from vigil.model.convlstm_ae import ConvLSTMAEConfig
    from vigil.model.inpaint import InpaintConfig
    from vigil.model.streaming import CONFIG_FILE, StreamingPredictor

    prednet = make_tiny_model(tmp_path / "prednet")
    ae_dir = tmp_path / "ae"
    ae_dir.mkdir()
    config = ConvLSTMAEConfig(height=32, width=48, window=3, enc_filters=(4, 4), lstm_filters=(4, 2, 4))
    ae = StreamingPredictor.build_untrained(config, seed=1)
    config.save(ae_dir / CONFIG_FILE)
    ae.arch.save_weights(ae.cell, ae_dir / ae.arch.weights_file)
    inpaint_dir = tmp_path / "inpaint"
    inpaint_dir.mkdir()
    icfg = InpaintConfig(height=32, width=48, context=2, enc_filters=(4, 4), lstm_filters=4, attn_hidden=4,
                         dec_filters=(4, 4), features={"patch_size": 4, "patch_stride": 2, "heatmap_stride": 4})
    inp = StreamingPredictor.build_untrained(icfg, seed=2)
    icfg.save(inpaint_dir / CONFIG_FILE)
    inp.arch.save_weights(inp.cell, inpaint_dir / inp.arch.weights_file)
    cams = {"mix-prednet": prednet, "mix-ae": ae_dir, "mix-inpaint": inpaint_dir}
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text("cameras:\n" + "".join(f"  - {{id: {c}, url: 'rtsp://127.0.0.1:1/{c}', model: '{d}'}}\n"
                                              for c, d in cams.items()))  # fmt: skip
    env = WorkerEnv(topic_settings, unique_name("worker"), prednet, predictor=REAL_PREDICTOR,
                    extra={"VIGIL_CAMERAS_FILE": str(cameras)})  # fmt: skip
    producer = make_producer(kafka_settings)
    reader = TopicReader(kafka_settings, topic_settings.scores)
    rng = np.random.default_rng(0)
    clips = {c: rng.integers(0, 255, (12, 32, 48, 1), dtype=np.uint8) for c in cams}
    worker = start_worker(env, tmp_path, "mixed")
    try:
        produce_frames(producer, topic_settings.frames, clips, 0, 12)
        wait_for(lambda: len(reader.poll()) >= 36, 180, "12 scores from each camera", [worker])
    finally:
        worker.stop()
        producer.close()
        reader.close()
    by_cam: dict[str, set[str]] = defaultdict(set)
    for s in scores_of(reader):
        by_cam[s.camera_id].add(s.model_id)
        assert np.isfinite(s.features.mse) and s.features.mse >= 0
    assert by_cam["mix-prednet"] == {"prednet-untrained"} or all("prednet" in m for m in by_cam["mix-prednet"]), by_cam
    assert all(m.startswith("convlstm-ae") for m in by_cam["mix-ae"]), by_cam
    assert by_cam["mix-inpaint"] and all(m.startswith("inpaint") for m in by_cam["mix-inpaint"]), by_cam


def test_a_worker_on_the_onnx_runtime_scores_like_keras(kafka_settings, topic_settings, unique_name, ped2_dir,
                                                        tmp_path: Path) -> None:  # noqa: ANN001
    """``VIGIL_WORKER_RUNTIME=onnx``: the worker exports the model on the fly and its scores of real Kafka frames
    equal the Keras offline run of the same model (the tolerance of docs/runtimes.md)."""
    from vigil.model.inference import run_clips
    from vigil.model.streaming import StreamingPredictor

    model_dir = make_tiny_model(tmp_path / "model")
    predictor = StreamingPredictor.load(model_dir)
    n_frames = 16
    cameras = {f"onnx-{i + 1}": c for i, c in enumerate(ped2_clips(ped2_dir, 2, n_frames, predictor.input_shape))}
    env = WorkerEnv(topic_settings, unique_name("worker"), model_dir, REAL_PREDICTOR,
                    extra={"VIGIL_WORKER_RUNTIME": "onnx", "VIGIL_WORKER_WARMUP_FRAMES": "2",
                           "VIGIL_WORKER_RUNTIME_EXPORT_ROOT": str(tmp_path / "export")})  # fmt: skip
    producer = make_producer(kafka_settings)
    reader = TopicReader(kafka_settings, topic_settings.scores)
    sent = produce_frames(producer, topic_settings.frames, cameras, 0, n_frames)
    worker = start_worker(env, tmp_path, "onnx")
    try:
        wait_for(lambda: len(reader.poll()) >= sent, 180, f"{sent} scores", [worker])
        log_text = worker.log()
    finally:
        worker.stop()
        producer.close()
        reader.close()
    assert "steps on the onnx runtime" in log_text, log_text[-2000:]
    assert any((tmp_path / "export").rglob("*.onnx")), "the export the worker made"
    reference = run_clips(predictor, cameras, batch=2, progress=False)
    for cam in cameras:
        mine = [s for s in scores_of(reader) if s.camera_id == cam]
        assert [s.seq for s in mine] == list(range(n_frames)), f"{cam}: order"
        for feat in FrameFeatures.names(source="prednet"):
            got = np.array([getattr(s.features, feat) for s in mine])
            np.testing.assert_allclose(got, getattr(reference[cam].features, feat), rtol=2e-3, atol=1e-5,
                                       err_msg=f"{cam} {feat}")
