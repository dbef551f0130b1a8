"""Helpers of the retrain end-to-end test (test_e2e_retrain.py): a small synthetic camera whose tiny model is
version A in a model store, live frames published straight to the frames topic (no ingest), `vigil worker` and
`vigil scorer` as subprocesses on the test's own topics, and `vigil retrain` run as the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from vigil.tools.launcher import Proc, free_port, vigil_argv

REPO = Path(__file__).resolve().parents[2]
HEIGHT, WIDTH, FPS = 16, 24, 10.0
A_EPOCHS = 5  # version A: about 13 steps an epoch on 2 clips; beats a constant frame ~2x by then
SCORER_ENV = {"VIGIL_SCORER_EVENTS__COOLDOWN_S": "2", "VIGIL_SCORER_EVENTS__UPDATE_INTERVAL_S": "0.5",
              "VIGIL_SCORER_BATCH_WITHIN_S": "0.02"}  # fmt: skip


def camera_video(n_frames: int, seed: int) -> np.ndarray:
    """``(T, 16, 24, 1)`` uint8: the synthetic camera's normal view, a static brightness gradient (the scene) with
    a little sensor noise and a bright square moving one pixel per frame (``seed``: where it starts, the noise).

    A tiny PredNet learns to beat a constant frame on it within a few epochs, which `vigil retrain`'s collapse
    guard requires of every candidate (the noisy dark background of tests/model/test_retrain.py does not).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    video = (40 + 6 * xx + 3 * yy)[None, :, :, None] + rng.integers(-3, 4, size=(n_frames, HEIGHT, WIDTH, 1))
    y0, x0 = rng.integers(0, HEIGHT - 5), rng.integers(0, WIDTH // 2)
    for t in range(n_frames):
        x = (x0 + t) % (WIDTH - 4)
        video[t, y0 : y0 + 4, x : x + 4] = 240
    return np.clip(video, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: np.ndarray) -> None:
    """Lossless FFV1 gray video at 10 fps, as the evidence service keeps footage."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=int(FPS))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "gray"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f[:, :, 0], format="gray")))
        container.mux(stream.encode())


@dataclass
class Site:
    """A synthetic camera with its own normal footage and a model store under ``root``; ``first`` is version A
    once :meth:`train_first_version` has run."""

    camera: str
    root: Path
    first: str = ""

    @property
    def footage(self) -> Path:
        """The camera's normal footage (3 FFV1 clips, as the evidence service keeps them)."""
        return self.root / "footage"

    @property
    def store(self) -> Any:
        """The site's :class:`~vigil.model.versions.ModelStore`."""
        from vigil.model.versions import ModelStore

        return ModelStore(self.root / "models")

    @property
    def link(self) -> Path:
        """``<store>/<camera>/current``: the camera's ``model:`` in the cameras file (absolute)."""
        return self.store.link(self.camera)

    def write_footage(self, clips: int = 3, frames: int = 30) -> None:
        """The camera's normal footage: ``clips`` clips of ``frames`` frames."""
        self.footage.mkdir(parents=True)
        for i in range(clips):
            write_video(self.footage / f"seg{i}.mkv", camera_video(frames, seed=10 + i))

    def train_first_version(self) -> str:
        """Version A: a tiny 3-layer PredNet trained (and calibrated) on the footage, registered and switched to;
        a copy of it is the services' default model (``root/default``). Returns A."""
        import shutil

        from vigil.model.config import PredNetConfig
        from vigil.model.train import TrainSettings, train

        config = PredNetConfig(height=HEIGHT, width=WIDTH, stack_sizes=(1, 4, 8), r_stack_sizes=(2, 4, 8), nt=5,
                               features={"patch_size": 4, "patch_stride": 2, "heatmap_stride": 4})  # fmt: skip
        train(config, TrainSettings(data=self.footage, out=self.root / "v1", work_dir=self.root / "w1",
                                    epochs=A_EPOCHS, lr=3e-3, n_val=1, model_id=self.camera))  # fmt: skip
        self.first = self.store.register(self.camera, self.root / "v1", {"passed": True, "note": "the e2e test's first"})
        self.store.switch(self.camera, self.first, reason="first model")
        shutil.copytree(self.root / "v1", self.root / "default")
        return self.first


class FramePublisher(threading.Thread):
    """Publishes the camera's next normal frame at ``fps`` until stopped (seq counts up; capture time now)."""

    def __init__(self, kafka_settings: Any, topic: str, camera: str, fps: float = 5.0) -> None:
        super().__init__(daemon=True)
        from vigil.shared.kafka import make_producer

        self.producer = make_producer(kafka_settings)
        self.topic, self.camera, self.fps = topic, camera, fps
        self.clip = camera_video(400, seed=99)
        self.sent = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        from vigil.shared.schemas import FrameMessage

        try:
            while not self._halt.is_set():
                msg = FrameMessage.from_pixels(self.camera, seq=self.sent, pts=self.sent / self.fps,
                                               capture_ns=time.time_ns(), image=self.clip[self.sent % len(self.clip)])  # fmt: skip
                self.producer.send(self.topic, key=self.camera.encode(), value=msg.encode())
                self.sent += 1
                self._halt.wait(1 / self.fps)
            self.producer.flush()
        except BaseException as exc:  # noqa: BLE001 - reported by the test through self.error
            self.error = exc

    def stop(self) -> None:
        """Stop publishing and close the producer."""
        self._halt.set()
        if self.ident is not None:
            self.join(15)
        self.producer.close(timeout=5)


class ScoreFollower:
    """Reads the scores topic from its beginning and keeps the camera's score messages in arrival order."""

    def __init__(self, kafka_settings: Any, topic: str, camera: str) -> None:
        from kafka import KafkaConsumer

        self.consumer = KafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
                                      **kafka_settings.kafka_python_kwargs())  # fmt: skip
        self.camera = camera
        self.scores: list = []

    def poll(self) -> list:
        """Take what arrived; returns every score of the camera so far."""
        from vigil.shared.schemas import ScoreMessage

        for batch in self.consumer.poll(timeout_ms=200).values():
            for record in batch:
                msg = ScoreMessage.decode(record.value)
                if msg.camera_id == self.camera:
                    self.scores.append(msg)
        return self.scores

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()


@dataclass
class Services:
    """`vigil worker` and `vigil scorer` of one test, on its topics, with the camera's cameras file."""

    site: Site
    topics: dict[str, str]
    token: str
    publisher: FramePublisher | None = None
    procs: dict[str, Proc] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def app_ids(self) -> list[str]:
        """The consumer groups (and Faust's internal topic prefixes) of the two services."""
        return [f"e2e-retrain-worker-{self.token}", f"e2e-retrain-scorer-{self.token}"]

    def env(self) -> dict[str, str]:
        """The environment of both services (Kafka and Redis from the caller's environment, .state/local.env)."""
        cameras = self.site.root / "cameras.yaml"
        cameras.write_text(yaml.safe_dump({"cameras": [{"id": self.site.camera, "url": f"rtsp://127.0.0.1:1/{self.site.camera}",
                                                        "model": str(self.site.link)}]}))  # fmt: skip
        t, default = self.topics, str(self.site.root / "default")
        return dict(os.environ) | SCORER_ENV | {
            "VIGIL_TOPICS_FRAMES": t["frames"], "VIGIL_TOPICS_SCORES": t["scores"],
            "VIGIL_TOPICS_CAMERA_STATUS": t["camera_status"], "VIGIL_TOPICS_DLQ": t["dlq"],
            "VIGIL_TOPICS_PARTITIONS": "2", "VIGIL_CAMERAS_FILE": str(cameras),
            "VIGIL_WORKER_APP_ID": self.app_ids[0], "VIGIL_WORKER_MODEL_DIR": default,
            "VIGIL_WORKER_DATADIR": str(self.site.root / "worker-data"), "VIGIL_WORKER_OFFSET_RESET": "earliest",
            "VIGIL_WORKER_WARMUP_FRAMES": "3", "VIGIL_WORKER_MODEL_POLL_S": "1", "VIGIL_WORKER_STALENESS_S": "0",
            "VIGIL_WORKER_MAX_SEQ_GAP": "100000", "VIGIL_WORKER_SESSION_TIMEOUT_S": "6",
            "VIGIL_WORKER_HEARTBEAT_S": "1", "VIGIL_WORKER_MOTION": "false",
            "VIGIL_SCORER_APP_ID": self.app_ids[1], "VIGIL_SCORER_MODEL_DIR": default,
            "VIGIL_SCORER_DATADIR": str(self.site.root / "scorer-data"),
            "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
        }  # fmt: skip

    def launch(self, name: str) -> None:
        """Start ``vigil worker`` or ``vigil scorer`` (metrics on a free port); :meth:`ready` waits for it."""
        self.ports[name] = free_port()
        env = self.env() | {f"VIGIL_{name.upper()}_METRICS_PORT": str(self.ports[name])}
        self.procs[name] = Proc(name, vigil_argv(name), self.site.root / "logs" / f"{name}.log", env).start()

    def ready(self, name: str, timeout_s: float = 150.0) -> None:
        """Wait until the service answers /readyz; fail with both logs if it dies or times out."""
        from vigil.tools.demo import wait_ready

        try:
            wait_ready(self.procs[name], self.ports[name], timeout_s)
        except RuntimeError as exc:
            pytest.fail(f"{name} did not start: {exc}\n{self.logs()}")

    def stop(self) -> None:
        """SIGTERM both (SIGKILL after 15 s)."""
        for proc in self.procs.values():
            proc.stop()

    def cleanup(self, kafka_settings: Any, redis: Any) -> None:
        """Delete the services' internal topics and the camera's Redis keys (this test's topics go with
        ``make_topics``)."""
        from vigil.shared.kafka import delete_topics, make_admin

        admin = make_admin(kafka_settings)
        try:
            internal = [t for t in admin.list_topics() if t.startswith(tuple(self.app_ids))]
        finally:
            admin.close()
        if internal:
            delete_topics(kafka_settings, internal)
        for key in redis.scan_iter(match=f"vigil:*{self.site.camera}*"):
            redis.delete(key)

    def logs(self, chars: int = 3000) -> str:
        """The ends of both logs, for failure messages."""
        return "\n".join(f"--- {n} (alive {p.alive}) ---\n{p.tail(chars)}" for n, p in self.procs.items())

    def log(self, name: str) -> str:
        """One service's whole log."""
        return self.procs[name].log_path.read_text(errors="replace")

    def metric(self, name: str, sample: str) -> float:
        """A sample of a service's /metrics (e.g. ``vigil_worker_model_swaps_total{model="camera:x"}``); 0 if absent."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@dataclass(frozen=True)
class RetrainRun:
    """One `vigil retrain` run: exit code, output, the report (when it printed one), seconds."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def report(self) -> dict[str, Any] | None:
        """The JSON report the CLI prints last on stdout (training progress may precede it)."""
        start = self.stdout.rfind("\n{\n") + 1 if "\n{\n" in self.stdout else (0 if self.stdout.startswith("{") else -1)
        return json.loads(self.stdout[start:]) if start >= 0 else None

    def explain(self) -> str:
        """Exit code and output ends, for failure messages."""
        return f"`vigil retrain` exit {self.returncode} after {self.seconds:.0f}s\nstdout: {self.stdout[-3000:]}\nstderr: {self.stderr[-3000:]}"


def run_retrain(site: Site, *options: str, work: str = "retrain-work", timeout_s: float = 300.0) -> RetrainRun:
    """Run ``vigil retrain CAMERA --footage ... --store ... --work ROOT/work`` plus ``options`` as a subprocess (one
    scratch folder for every run by default, as a scheduled retrain with the default ``.state/retrain`` has)."""
    argv = vigil_argv("retrain", site.camera, "--footage", str(site.footage), "--store", str(site.store.root),
                      "--work", str(site.root / work), *options)  # fmt: skip
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd=site.root,
                          env=dict(os.environ) | {"TF_CPP_MIN_LOG_LEVEL": "2"})  # fmt: skip
    return RetrainRun(done.returncode, done.stdout, done.stderr, time.monotonic() - t0)


def wait_until(what: str, check: Any, timeout_s: float, services: Services, publisher: FramePublisher | None) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the services' logs on timeout or a death (of a
    service or of the frame publisher)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        dead = [n for n, p in services.procs.items() if not p.alive]
        if dead or (publisher is not None and publisher.error is not None):
            pytest.fail(f"{dead or 'the frame publisher'} died while waiting for {what} ({publisher and publisher.error})\n{services.logs()}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}\n{services.logs()}")
