"""Helpers of the worker integration tests: worker subprocesses, frame producers, topic readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


@dataclass
class WorkerProc:
    """A `vigil worker` subprocess and its log file."""

    name: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no leave-group (a crash)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class WorkerEnv:
    """Settings of the worker subprocesses of one test (all fields go to VIGIL_* variables)."""

    topics: object  # TopicSettings
    app_id: str
    model_dir: Path
    predictor: str = "worker_fake_predictor:FakePredictor"
    extra: dict[str, str] = field(default_factory=dict)

    def environ(self, tmp: Path) -> dict[str, str]:
        t = self.topics
        env = os.environ.copy()
        env |= {
            "PYTHONPATH": os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "VIGIL_TOPICS_FRAMES": t.frames, "VIGIL_TOPICS_SCORES": t.scores,
            "VIGIL_TOPICS_CAMERA_STATUS": t.camera_status, "VIGIL_TOPICS_DLQ": t.dlq,
            "VIGIL_TOPICS_PARTITIONS": str(t.partitions),
            "VIGIL_WORKER_APP_ID": self.app_id, "VIGIL_WORKER_MODEL_DIR": str(self.model_dir),
            "VIGIL_WORKER_PREDICTOR": self.predictor, "VIGIL_WORKER_OFFSET_RESET": "earliest",
            "VIGIL_WORKER_STALENESS_S": "0", "VIGIL_WORKER_SESSION_TIMEOUT_S": "6",
            "VIGIL_WORKER_HEARTBEAT_S": "0.5", "VIGIL_WORKER_COMMIT_INTERVAL_S": "0.5",
            "VIGIL_WORKER_DATADIR": str(tmp / "faust"), "VIGIL_WORKER_MODEL_POLL_S": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }  # fmt: skip
        return env | self.extra


def start_worker(env: WorkerEnv, tmp: Path, name: str) -> WorkerProc:
    """Start `vigil worker` in a subprocess, logging to tmp/<name>.log."""
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vigil.cli", "worker"], cwd=REPO, env=env.environ(tmp),
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    return WorkerProc(name, proc, log_path)


def wait_for(cond: Callable[[], bool], timeout: float, what: str, workers: Iterable[WorkerProc] = ()) -> None:
    """Poll ``cond`` until true; on timeout fail with the workers' log tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {w.name} (rc={w.proc.poll()}) ---\n{w.log()[-3000:]}" for w in workers)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


class TopicReader:
    """Reads a topic from the beginning, accumulating (key, value) records as they come."""

    def __init__(self, kafka_settings, topic: str) -> None:  # noqa: ANN001
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                                      group_id=None, **kafka_settings.kafka_python_kwargs())  # fmt: skip
        self.records: list = []

    def poll(self) -> list:
        for batch in self.consumer.poll(timeout_ms=200).values():
            self.records.extend(batch)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def ped2_clips(ped2_dir: Path, n: int, frames: int, shape: tuple[int, int, int]) -> list[np.ndarray]:
    """``n`` distinct streams of ``frames`` frames at the model input ``shape`` (as ingest does).

    The shipped mini set has four clips; further streams start later in a clip, so no two cameras send the
    same frames.
    """
    from vigil.model.data import read_video

    videos = [read_video(p, *shape) for p in sorted(ped2_dir.glob("*/*.mkv"))]
    streams = []
    for i in range(n):
        video, start = videos[i % len(videos)], (i // len(videos)) * frames
        if start + frames > len(video):
            raise ValueError(f"{n} streams of {frames} frames do not fit in the clips of {ped2_dir}")
        streams.append(video[start : start + frames])
    return streams


def make_tiny_model(path: Path, seed: int = 0) -> Path:
    """Write a tiny untrained PredNet model directory (32x48 gray, 2 layers) that loads fast."""
    from vigil.model.config import PredNetConfig
    from vigil.model.prednet import save_cell_weights
    from vigil.model.streaming import CONFIG_FILE, WEIGHTS_FILE, StreamingPredictor

    config = PredNetConfig(height=32, width=48, channels=1, stack_sizes=(1, 8), r_stack_sizes=(8, 8),
                           a_filt_sizes=(3,), ahat_filt_sizes=(3, 3), r_filt_sizes=(3, 3),
                           layer_loss_weights=(1.0, 0.0))  # fmt: skip
    predictor = StreamingPredictor.build_untrained(config, seed=seed)
    path.mkdir(parents=True, exist_ok=True)
    config.save(path / CONFIG_FILE)
    save_cell_weights(predictor.cell, path / WEIGHTS_FILE)
    return path


def produce_frames(producer, topic: str, cameras: dict[str, np.ndarray], start: int = 0, stop: int | None = None,
                   session: int = 0) -> int:  # noqa: ANN001
    """Produce frames ``start:stop`` of every camera, interleaved round-robin; return how many."""
    from vigil.shared.schemas import FrameMessage

    n = 0
    stop = stop if stop is not None else max(len(c) for c in cameras.values())
    for i in range(start, stop):
        for cam, clip in cameras.items():
            if i < len(clip):
                msg = FrameMessage.from_pixels(cam, seq=i, pts=i / 10, capture_ns=time.time_ns(), image=clip[i],
                                               session=session)  # fmt: skip
                producer.send(topic, key=cam.encode(), value=msg.encode())
                n += 1
    producer.flush()
    return n
