"""`vigil bench worker`: throughput and capture->score latency of real workers through real Kafka.

For each mode (the batched worker with ``max_batch`` and an unbatched one with ``max_batch=1``) one
`vigil worker` subprocess is started on fresh topics. Simulated cameras then send frames at ``fps``
each, for 1, 4, 16, 64 cameras in turn; every score read back gives the latency from the frame's
capture time to the score's production time. The workers run with a staleness bound, so an overloaded
worker skips old frames (counted) instead of falling behind; a camera count is *held in real time*
when at least 99 % of its frames are scored and the p99 latency stays under ``realtime_p99_s``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class BenchConfig:
    """What `vigil bench worker` measures.

    Attributes:
        cameras: Simulated camera counts, in order.
        fps: Frames per second per camera.
        seconds: Measured seconds per camera count.
        max_batch: max_batch of the batched worker (the other runs with 1).
        max_wait_s: max_wait_s of both workers.
        model_dir: Model directory; None = the packaged model, or an untrained default-size model.
        staleness_s: Staleness bound of the workers.
        realtime_p99_s: p99 latency bound for "held in real time".
        partitions: Partitions of the bench topics.
    """

    cameras: tuple[int, ...] = (1, 4, 16, 64)
    fps: float = 10.0
    seconds: float = 10.0
    max_batch: int = 64
    max_wait_s: float = 0.02
    model_dir: Path | None = None
    staleness_s: float = 2.0
    realtime_p99_s: float = 1.0
    partitions: int = 12


@dataclass
class PhaseResult:
    """One camera count in one mode."""

    mode: str
    cameras: int
    sent: int
    scored: int
    seconds: float
    latencies_ms: np.ndarray = field(repr=False)
    mean_step: float

    @property
    def fps(self) -> float:
        return self.scored / self.seconds

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")

    def held(self, p99_ms: float) -> bool:
        return self.sent > 0 and self.scored >= 0.99 * self.sent and self.pct(99) <= p99_ms


# --------------------------------------------------------------------------------------------------
def _model_dir(cfg: BenchConfig, tmp: Path) -> tuple[Path, str]:
    from vigil.model.streaming import CONFIG_FILE, DEFAULT_MODEL_DIR, WEIGHTS_FILE

    if cfg.model_dir is not None:
        return cfg.model_dir, f"{cfg.model_dir}"
    if (Path(DEFAULT_MODEL_DIR) / WEIGHTS_FILE).is_file():
        return Path(DEFAULT_MODEL_DIR), f"packaged model {DEFAULT_MODEL_DIR.name}"
    from vigil.model.config import PredNetConfig
    from vigil.model.prednet import save_cell_weights
    from vigil.model.streaming import StreamingPredictor

    path = tmp / "model"
    path.mkdir(parents=True, exist_ok=True)
    config = PredNetConfig()
    predictor = StreamingPredictor.build_untrained(config)
    config.save(path / CONFIG_FILE)
    save_cell_weights(predictor.cell, path / WEIGHTS_FILE)
    return path, "untrained default-size PredNet (no trained model committed yet; timing is the same)"


def _input_shape(model_dir: Path) -> tuple[int, int, int]:
    from vigil.model.architectures import arch_of_dir, get_architecture

    return get_architecture(arch_of_dir(model_dir)).load_config(model_dir).input_shape


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Worker:
    """A `vigil worker` subprocess for one mode."""

    def __init__(self, topics, model_dir: Path, max_batch: int, cfg: BenchConfig, tmp: Path) -> None:  # noqa: ANN001
        self.port = _free_port()
        env = os.environ.copy() | {
            "VIGIL_TOPICS_FRAMES": topics.frames, "VIGIL_TOPICS_SCORES": topics.scores,
            "VIGIL_TOPICS_CAMERA_STATUS": topics.camera_status, "VIGIL_TOPICS_DLQ": topics.dlq,
            "VIGIL_TOPICS_PARTITIONS": str(topics.partitions),
            "VIGIL_WORKER_APP_ID": f"bench-worker-{uuid.uuid4().hex[:8]}", "VIGIL_WORKER_MODEL_DIR": str(model_dir),
            "VIGIL_WORKER_MAX_BATCH": str(max_batch), "VIGIL_WORKER_MAX_WAIT_S": str(cfg.max_wait_s),
            "VIGIL_WORKER_STALENESS_S": str(cfg.staleness_s), "VIGIL_WORKER_METRICS_PORT": str(self.port),
            "VIGIL_WORKER_DATADIR": str(tmp / "faust"), "VIGIL_WORKER_SESSION_TIMEOUT_S": "10",
            "VIGIL_WORKER_OFFSET_RESET": "latest", "TF_CPP_MIN_LOG_LEVEL": "2",
        }  # fmt: skip
        self.log_path = tmp / f"worker-b{max_batch}.log"
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "vigil.cli", "worker"], env=env,
                                         stdout=out, stderr=subprocess.STDOUT)  # fmt: skip

    def metric(self, name: str) -> float:
        """Sum of a metric's samples from the worker's /metrics (0 when not reachable)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class _Cameras(threading.Thread):
    """Sends one frame per camera every 1/fps seconds (cameras spread over the period)."""

    def __init__(self, producer, topic: str, names: list[str], fps: float, image: np.ndarray) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.producer, self.topic, self.names, self.fps, self.image = producer, topic, names, fps, image
        self.sent = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        from vigil.shared.schemas import FrameMessage

        period = 1.0 / self.fps
        start = time.monotonic()
        seq = 0
        while not self.stop_event.is_set():
            for i, cam in enumerate(self.names):
                due = start + (seq + i / len(self.names)) * period
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                msg = FrameMessage.from_pixels(cam, seq=seq, pts=seq * period, capture_ns=time.time_ns(), image=self.image)
                self.producer.send(self.topic, key=cam.encode(), value=msg.encode())
                self.sent += 1
            seq += 1
        self.producer.flush()


class _Scores(threading.Thread):
    """Reads the scores topic and keeps (camera, latency ms) of every score."""

    def __init__(self, kafka, topic: str) -> None:  # noqa: ANN001
        from kafka import KafkaConsumer

        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(topic, auto_offset_reset="earliest", group_id=None,
                                      **kafka.kafka_python_kwargs())  # fmt: skip
        self.rows: list[tuple[str, float]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        from vigil.shared.schemas import ScoreMessage

        while not self.stop_event.is_set():
            for batch in self.consumer.poll(timeout_ms=200).values():
                for rec in batch:
                    s = ScoreMessage.decode(rec.value)
                    self.rows.append((s.camera_id, (s.processed_ns - s.capture_ns) / 1e6))
        self.consumer.close()

    def of(self, prefix: str) -> np.ndarray:
        return np.array([lat for cam, lat in list(self.rows) if cam.startswith(prefix)])


# --------------------------------------------------------------------------------------------------
def _phase(ctx: dict, mode: str, n: int, cfg: BenchConfig) -> PhaseResult:
    prefix = f"{mode}-{n}-"
    cams = _Cameras(ctx["producer"], ctx["topics"].frames, [f"{prefix}{i:03d}" for i in range(n)], cfg.fps,
                    ctx["image"])  # fmt: skip
    w = ctx["worker"]
    steps0, frames0 = w.metric("vigil_worker_step_size_count"), w.metric("vigil_worker_step_size_sum")
    t0 = time.monotonic()
    cams.start()
    time.sleep(cfg.seconds)
    cams.stop_event.set()
    cams.join(10)
    elapsed = time.monotonic() - t0
    time.sleep(min(cfg.staleness_s, 3.0) + 0.5)  # let the tail be scored (or skipped as stale)
    steps, frames = w.metric("vigil_worker_step_size_count") - steps0, w.metric("vigil_worker_step_size_sum") - frames0
    lat = ctx["scores"].of(prefix)
    res = PhaseResult(mode, n, cams.sent, len(lat), elapsed, lat, frames / steps if steps else float("nan"))
    log.info("%s %d cameras: sent %d scored %d (%.1f/s) p50 %.0f ms p99 %.0f ms, mean step %.1f", mode, n,
             res.sent, res.scored, res.fps, res.pct(50), res.pct(99), res.mean_step)  # fmt: skip
    return res


def _run_mode(ctx: dict, mode: str, max_batch: int, cfg: BenchConfig, tmp: Path) -> list[PhaseResult]:
    w = _Worker(ctx["topics"], ctx["model_dir"], max_batch, cfg, tmp)
    ctx["worker"] = w
    try:
        deadline = time.monotonic() + 180
        while not w.ready():
            if w.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{w.log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        # warm-up: compile the step for the batch sizes the phases will see (not measured)
        warm = _Cameras(ctx["producer"], ctx["topics"].frames, [f"warm{max_batch}-{i}" for i in range(max(cfg.cameras))],
                        cfg.fps, ctx["image"])  # fmt: skip
        warm.start()
        time.sleep(5.0)
        warm.stop_event.set()
        warm.join(10)
        time.sleep(cfg.staleness_s + 1.0)
        return [_phase(ctx, mode, n, cfg) for n in cfg.cameras]
    finally:
        w.stop()


def run_bench(cfg: BenchConfig, write: bool = True) -> str:
    """Run the benchmark; return the markdown (and write it to docs/benchmarks.md if ``write``)."""
    from vigil.shared.kafka import delete_topics, ensure_vigil_topics, make_producer
    from vigil.shared.logging import configure_logging
    from vigil.shared.settings import KafkaSettings, TopicSettings

    configure_logging("INFO")
    kafka = KafkaSettings()
    token = uuid.uuid4().hex[:8]
    topics = TopicSettings(frames=f"bench.frames.{token}", scores=f"bench.scores.{token}",
                           camera_status=f"bench.status.{token}", dlq=f"bench.dlq.{token}",
                           partitions=cfg.partitions)  # fmt: skip
    ensure_vigil_topics(kafka, topics)
    results: list[PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="vigil-bench-worker-") as tmp_s:
        tmp = Path(tmp_s)
        model_dir, model_text = _model_dir(cfg, tmp)
        shape = _input_shape(model_dir)
        image = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
        scores = _Scores(kafka, topics.scores)
        scores.start()
        ctx = {"producer": make_producer(kafka, compression_type=None, linger_ms=2), "topics": topics,
               "model_dir": model_dir, "image": image, "scores": scores}  # fmt: skip
        try:
            for mode, mb in (("batched", cfg.max_batch), ("single", 1)):
                results += _run_mode(ctx, mode, mb, cfg, tmp)
        finally:
            scores.stop_event.set()
            scores.join(5)
            ctx["producer"].close()
            delete_topics(kafka, [topics.frames, topics.scores, topics.camera_status, topics.dlq])
    text = render(results, cfg, model_text, shape)
    if write:
        from vigil.tools.benchdoc import write_section

        write_section("worker", text)
    return text


def render(results: list[PhaseResult], cfg: BenchConfig, model_text: str, shape: tuple[int, int, int]) -> str:
    """The markdown section of docs/benchmarks.md."""
    from vigil.tools.benchdoc import machine_line

    p99_ms = cfg.realtime_p99_s * 1000
    lines = [
        "## Worker (`vigil bench worker`)",
        "",
        f"Command: `vigil bench worker --cameras {','.join(map(str, cfg.cameras))} --fps {cfg.fps:g} "
        f"--seconds {cfg.seconds:g} --max-batch {cfg.max_batch} --max-wait-s {cfg.max_wait_s:g}`",
        "",
        f"Machine: {machine_line()}; CPU only (TensorFlow backend), shared with other jobs. "
        "GPU (JAX backend): not measured, no GPU on this machine.",
        f"Model: {model_text}, input {shape[0]}x{shape[1]}x{shape[2]}. One `vigil worker` process per mode, "
        f"real Kafka on loopback ({cfg.partitions} partitions), staleness bound {cfg.staleness_s:g} s. "
        "Latency = score produced - frame capture time (through Kafka both ways). "
        f"Held in real time = >= 99 % of frames scored and p99 <= {p99_ms:.0f} ms.",
        "",
        "| mode | max_batch | cameras | offered fps | scored fps | scored % | p50 ms | p99 ms | mean step | real time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mb = cfg.max_batch if r.mode == "batched" else 1
        lines.append(
            f"| {r.mode} | {mb} | {r.cameras} | {r.sent / r.seconds:.0f} | {r.fps:.1f} | "
            f"{100 * r.scored / max(r.sent, 1):.0f} | {r.pct(50):.0f} | {r.pct(99):.0f} | {r.mean_step:.1f} | "
            f"{'yes' if r.held(p99_ms) else 'no'} |"
        )
    lines += ["", *_summary(results, cfg, p99_ms)]
    return "\n".join(lines)


def _summary(results: list[PhaseResult], cfg: BenchConfig, p99_ms: float) -> list[str]:
    out = []
    for mode in ("batched", "single"):
        held = [r.cameras for r in results if r.mode == mode and r.held(p99_ms)]
        out.append(f"- Largest camera count held in real time, {mode}: {max(held) if held else 'none'} "
                   f"(of {', '.join(map(str, cfg.cameras))} at {cfg.fps:g} fps).")  # fmt: skip
    by = {(r.mode, r.cameras): r for r in results}
    gains = [f"{n} cameras x{by['batched', n].fps / by['single', n].fps:.2f}" for n in cfg.cameras
             if ("single", n) in by and by["single", n].fps > 0]  # fmt: skip
    out.append(f"- Cross-camera batching gain in scored frames/s (batched / max_batch=1): {', '.join(gains)}.")
    return out
