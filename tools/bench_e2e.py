"""`vigil bench e2e`: end-to-end latency and sustained cameras of the whole pipeline on this machine.

For each camera count, ingest replays Ped2 clips as live cameras (native speed, 10 fps, looped), and
worker and scorer run as separate processes on the local Kafka and Redis, as in production. Every
frame's journey is timed from timestamps the messages already carry:

* ingest:  capture (decode) -> frame record in Kafka (the record's broker timestamp)
* worker:  frame in Kafka -> score produced (``processed_ns``)
* scorer:  score produced -> camera state written to Redis (``updated_ns`` of ``vigil:camera:<id>``)

The capture -> Redis latency is what an alert waits for (alerts are written in the same Redis round
trip as the camera state). A camera count is *sustained* (issue #18's definition) when at least 99% of the
frames offered get a score and the p99 capture -> Redis latency is at most 500 ms.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import typer

from vigil.tools.launcher import Proc, default_ped2_dir, free_port, repo_root, vigil_argv
from vigil.tools.profiling import find_py_spy, profile_table, start_py_spy

SCORED_MIN = 0.99
"""Share of the offered frames that must be scored for a camera count to be sustained."""
P99_MAX_MS = 500.0
"""Largest p99 capture -> Redis latency (ms) of a sustained camera count."""
CLIPS = ["Test001", "Test002", "Test004", "Test007", "Test012", "Test003", "Test005", "Test006"]


@dataclass
class Run:
    """Measurements of one camera count."""

    cameras: int
    seconds: float
    runtime: str = ""
    offered: int = 0
    scored: int = 0
    ingest_ms: list[float] = field(default_factory=list)
    worker_ms: list[float] = field(default_factory=list)
    scorer_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)

    @property
    def sustained(self) -> bool:
        """Nearly every frame scored, with bounded latency."""
        return (self.offered > 0 and self.scored >= SCORED_MIN * self.offered
                and _pct(self.total_ms, 99) <= P99_MAX_MS)


def _worker_runtime(env: dict[str, str] | None = None) -> str:
    """The worker's step runtime, read by the worker's own settings from this environment (``env`` over it),
    which its process gets."""
    from vigil.services.worker.settings import WorkerSettings

    fields = {"VIGIL_WORKER_RUNTIME": "runtime", "VIGIL_WORKER_RUNTIME_QUANTIZE": "runtime_quantize"}
    settings = WorkerSettings(**{fields[k]: v for k, v in (env or {}).items() if k in fields})
    name = "TensorFlow (Keras)" if settings.runtime == "keras" else {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}.get(
        settings.runtime, settings.runtime)
    return name if settings.runtime_quantize == "none" else f"{name} {settings.runtime_quantize}"


def runtime_envs(names: str) -> list[dict[str, str]]:
    """``keras,openvino-int8`` -> the worker environment of each (``""``: the worker's configured runtime).

    Example:
        >>> runtime_envs("keras,openvino-int8")[1]
        {'VIGIL_WORKER_RUNTIME': 'openvino', 'VIGIL_WORKER_RUNTIME_QUANTIZE': 'int8'}
    """
    from vigil.model.runtimes import QUANTIZE, RUNTIMES

    envs = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        kind, _, quantize = name.partition("-")
        if kind not in RUNTIMES or quantize not in ("", *QUANTIZE[1:]):
            raise typer.BadParameter(f"unknown runtime {name!r}; expected one of {', '.join(RUNTIMES)}, optionally "
                                     f"with -{'|-'.join(QUANTIZE[1:])} (see `vigil export`)")  # fmt: skip
        envs.append({"VIGIL_WORKER_RUNTIME": kind, "VIGIL_WORKER_RUNTIME_QUANTIZE": quantize or "none"})
    return envs or [{}]


def _ensure_export(env: dict[str, str], data: Path) -> None:
    """Make the export the worker will look for (int8 calibrated on the Ped2 training clips), once."""
    import subprocess

    from vigil.model.runtimes import EXPORTED_RUNTIMES, MANIFEST, export_dir_for
    from vigil.model.streaming import DEFAULT_MODEL_DIR, StreamingPredictor
    from vigil.services.worker.settings import WorkerSettings

    kind, quantize = env.get("VIGIL_WORKER_RUNTIME", "keras"), env.get("VIGIL_WORKER_RUNTIME_QUANTIZE", "none")
    if kind not in EXPORTED_RUNTIMES:
        return
    predictor = StreamingPredictor.load(WorkerSettings().model_dir or DEFAULT_MODEL_DIR)
    folder = export_dir_for(WorkerSettings().runtime_export_root, predictor.model_id, predictor.model_version, kind, quantize)
    if (folder / MANIFEST).is_file():
        return
    typer.echo(f"exporting the model for {kind} ({quantize}) into {folder} ...")
    argv = vigil_argv("export", "--format", kind, "--quantize", quantize, "--out", str(folder),
                      *(["--calib-data", str(data / "train")] if quantize == "int8" else []))  # fmt: skip
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def _ms(value: float) -> str:
    """``value`` rounded to whole ms, without the ``-0`` that Kafka's ms timestamps give a sub-ms latency."""
    text = f"{value:.0f}"
    return "0" if text == "-0" else text


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


WARM_S = 10.0


class _Follower:
    """Reads the frames and scores topics from their start once the services have stopped (so that the
    harness takes no CPU from the pipeline it measures), keeping what the latencies need: each frame's
    capture and broker times, and every score."""

    def __init__(self, kafka, topics: dict[str, str]) -> None:  # noqa: ANN001
        self.kafka, self.topics = kafka, topics
        self.frames_at: dict[tuple[str, int], tuple[int, int]] = {}
        self.scores: list = []

    def read(self) -> None:
        """Read both topics up to their end offsets."""
        self._read(self.topics["frames"], self._on_frame)
        self._read(self.topics["scores"], self._on_score)

    def _read(self, topic: str, handle) -> None:  # noqa: ANN001
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **self.kafka.kafka_python_kwargs())
        try:
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            ends = consumer.end_offsets(parts)
            deadline = time.monotonic() + 120
            while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    for r in batch:
                        handle(r)
        finally:
            consumer.close()

    def _on_frame(self, r) -> None:  # noqa: ANN001
        from vigil.shared.schemas import FrameMessage

        m = FrameMessage.decode(r.value)
        self.frames_at[(m.camera_id, m.seq)] = (m.capture_ns, r.timestamp * 1_000_000)

    def _on_score(self, r) -> None:  # noqa: ANN001
        from vigil.shared.schemas import ScoreMessage

        self.scores.append(ScoreMessage.decode(r.value))

    def fill(self, run: Run, window: tuple[int, int], in_redis: dict[tuple[str, int], int]) -> None:
        """Frames offered and scored in ``window`` (capture ns), their ingest and worker latencies, and the
        capture -> Redis and score -> Redis latencies of the camera states ``in_redis`` ((camera, capture ns) ->
        Redis update ns)."""
        offered = [k for k, (cap, _) in self.frames_at.items() if window[0] <= cap < window[1]]
        done = {(s.camera_id, s.seq): s for s in self.scores}
        run.offered, run.scored = len(offered), sum(1 for k in offered if k in done)
        for k in offered:
            if k in done:
                cap, in_kafka = self.frames_at[k]
                run.ingest_ms.append((in_kafka - cap) / 1e6)
                run.worker_ms.append((done[k].processed_ns - in_kafka) / 1e6)
        produced = {(s.camera_id, s.capture_ns): s.processed_ns for s in self.scores}
        for (cam, cap), upd in in_redis.items():
            run.total_ms.append((upd - cap) / 1e6)
            if (cam, cap) in produced:
                run.scorer_ms.append((upd - produced[(cam, cap)]) / 1e6)


def _bench_env(token: str, topics: dict[str, str], workdir: Path) -> dict[str, str]:
    """The environment of this run's services: its own topics, consumer groups and scorer state."""
    return dict(os.environ) | {f"VIGIL_TOPICS_{k.upper()}": v for k, v in topics.items()} | {
        "VIGIL_TOPICS_PARTITIONS": "4", "VIGIL_WORKER_APP_ID": f"bench-worker-{token}",
        "VIGIL_SCORER_APP_ID": f"bench-scorer-{token}", "VIGIL_SCORER_DATADIR": str(workdir / f"scorer-{token}"),
        "VIGIL_WORKER_OFFSET_RESET": "earliest",
    }  # fmt: skip


def _write_cameras(path: Path, cams: dict[str, Path]) -> Path:
    """A cameras file that replays ``cams`` (camera id -> clip) looped at 10 fps."""
    import yaml

    path.write_text(yaml.safe_dump({"defaults": {"fps": 10, "width": 180, "height": 120, "loop": True},
                                    "cameras": [{"id": c, "url": str(p)} for c, p in cams.items()]}))  # fmt: skip
    return path


def _start(name: str, argv: list[str], log: Path, env: dict[str, str], procs: list[Proc], timeout: float) -> None:
    """Start `vigil <name>` with metrics on a free port and wait until it is ready."""
    from vigil.tools.demo import wait_ready

    port = free_port()
    procs.append(Proc(name, argv, log, env | {f"VIGIL_{name.upper()}_METRICS_PORT": str(port)}).start())
    wait_ready(procs[-1], port, timeout)


def _measure(n: int, seconds: float, ped2: Path, workdir: Path, runtime: dict[str, str], profile: Path | None = None,
             workers: int = 1) -> Run:  # fmt: skip
    """One camera count: start scorer, ``workers`` workers in one consumer group (``runtime``: their runtime
    settings) and ingest on fresh topics, measure ``seconds`` after the warm-up, stop them, then read the topics;
    ``profile``: also record the (first) worker with py-spy over the measured window."""
    from vigil.shared.kafka import ensure_topics
    from vigil.shared.settings import KafkaSettings, RedisSettings

    token = uuid.uuid4().hex[:8]
    topics = {k: f"bench.{k}.{token}" for k in ("frames", "scores", "camera_status", "dlq")}
    kafka = KafkaSettings()
    ensure_topics(kafka, {t: 4 for t in topics.values()})
    env = _bench_env(token, topics, workdir) | runtime
    cams = {f"bench-{token}-{i}": ped2 / "test" / f"{CLIPS[i % len(CLIPS)]}.mkv" for i in range(n)}
    cfg = _write_cameras(workdir / f"cameras-{token}.yaml", cams)
    procs: list[Proc] = []
    label = _worker_runtime(runtime) + (f", {workers} workers" if workers > 1 else "")
    run, follower = Run(n, seconds, label), _Follower(kafka, topics)
    try:
        _start("scorer", vigil_argv("scorer"), workdir / "logs" / f"scorer-{n}.log", env, procs, 180)
        for k in range(workers):  # one consumer group; each worker its own Faust datadir
            _start("worker", vigil_argv("worker"), workdir / "logs" / f"worker-{n}-{k}.log",
                   env | {"VIGIL_WORKER_DATADIR": str(workdir / f"worker-{token}-{k}")}, procs, 180)
        _start("ingest", vigil_argv("ingest", "--cameras", str(cfg), "--realtime"), workdir / "logs" / f"ingest-{n}.log",
               env, procs, 60)  # fmt: skip
        t0 = time.time_ns()
        time.sleep(WARM_S)
        worker = next(p.popen for p in procs if p.name == "worker")
        spy = start_py_spy(worker.pid, seconds, profile) if profile is not None and worker is not None else None
        time.sleep(seconds)
        t_end = time.time_ns()
        if spy is not None and spy.wait(30) != 0:
            raise RuntimeError(f"py-spy failed: {spy.stderr.read().decode(errors='replace')[-500:]}")  # type: ignore[union-attr]
        in_redis = _sample_redis(RedisSettings(), cams, t0 + int(WARM_S * 1e9))
    finally:
        for p in reversed(procs):
            p.stop()
    follower.read()
    follower.fill(run, (t0 + int(WARM_S * 1e9), t_end - int(2e9)), in_redis)
    return run


def _sample_redis(redis_settings, cams: dict, since_ns: int) -> dict[tuple[str, int], int]:  # noqa: ANN001
    """Poll each camera's hash for 10 s: (camera, capture ns of its last frame) -> Redis update ns."""
    client = redis_settings.client()
    seen: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for cam in cams:
            h = client.hgetall(f"vigil:camera:{cam}")
            if not h or b"updated_ns" not in h:
                continue
            cap = int(h[b"last_frame_ns"])
            if cap >= since_ns:
                seen.setdefault((cam, cap), int(h[b"updated_ns"]))
        time.sleep(0.05)
    return seen


def _table(runs: list[Run]) -> str:
    rows = ["| worker runtime | cameras (10 fps) | frames offered | scored | capture->Redis p50 / p99 ms | ingest ms (p50) | "
            "Kafka+worker ms (p50) | scorer+Redis ms (p50) | sustained |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in runs:
        rows.append(
            f"| {r.runtime} | {r.cameras} | {r.offered} | {r.scored} ({r.scored / max(1, r.offered):.0%}) | "
            f"{_pct(r.total_ms, 50):.0f} / {_pct(r.total_ms, 99):.0f} | {_ms(_pct(r.ingest_ms, 50))} | "
            f"{_pct(r.worker_ms, 50):.0f} | {_pct(r.scorer_ms, 50):.0f} | {'yes' if r.sustained else 'no'} |"
        )
    return "\n".join(rows)


def _bottleneck(run: Run) -> str:
    parts = {"ingest (decode, resize, publish)": run.ingest_ms, "worker (Kafka wait, batching, PredNet step)": run.worker_ms,
             "scorer (scoring, Redis write)": run.scorer_ms}  # fmt: skip
    med = {k: statistics.median(v) for k, v in parts.items() if v}
    total = sum(med.values()) or 1.0
    worst = max(med, key=med.get)
    shares = ", ".join(f"{k.split(' ')[0]} {v / total:.0%}" for k, v in med.items())
    return f"bottleneck: **{worst}**, {med[worst] / total:.0%} of the median latency ({shares})"


def bench_e2e(
    cameras: str = typer.Option("1,2,4", help="Camera counts to try, comma-separated"),
    seconds: float = typer.Option(30.0, min=5, help="Measured seconds per camera count (after 10 s warm-up)"),
    data: Path | None = typer.Option(None, help="UCSD Ped2 folder (default: $VIGIL_PED2_DIR, ../shared/data/ucsd_ped2, else the shipped data/ped2-mini)"),
    doc: Path | None = typer.Option(None, help="Benchmarks document (default docs/benchmarks.md)"),
    runtimes: str = typer.Option("", help="Worker runtimes to measure in turn, comma-separated: keras, xla, onnx, "
                                          "onnx-int8, openvino, openvino-int8, ... (default: the worker's configured one); "
                                          "missing exports are made first (int8 calibrated on the Ped2 training clips)"),
    workers: int = typer.Option(1, min=1, max=8, help="Worker processes, in one consumer group (the frames topic has 4 "
                                                      "partitions); their threads and streams as VIGIL_WORKER_RUNTIME_* say"),
) -> None:
    """End-to-end latency (capture -> Redis) and sustained cameras of the whole pipeline on this CPU."""
    from vigil.shared.logging import configure_logging
    from vigil.tools.benchdoc import DEFAULT_DOC, machine_line, write_section

    configure_logging("WARNING")
    data = data or default_ped2_dir()
    workdir = repo_root() / ".state" / "bench-e2e"
    workdir.mkdir(parents=True, exist_ok=True)
    envs, runs = runtime_envs(runtimes), []
    for env in envs:
        _ensure_export(env, data)
        for n in (int(x) for x in cameras.split(",")):
            typer.echo(f"{_worker_runtime(env)}, {n} camera(s): measuring {seconds:.0f} s ...")
            runs.append(_measure(n, seconds, data, workdir, env, workers=workers))
            typer.echo(_table(runs[-1:]).splitlines()[-1])
    text = "\n".join([
        "## End to end (`vigil bench e2e`, part of `make bench`)", "",
        f"Machine: {machine_line()}. ingest, worker (committed Ped2 model, the runtime of each row) and scorer as "
        "separate processes on the local Kafka and Redis, all on this machine's cores; each camera replays a Ped2 clip "
        f"live at 10 fps; motion on. One run per row, {seconds:.0f} s measured after {WARM_S:.0f} s of warm-up; the "
        "topics are read after the services stop, so the harness takes no CPU from the pipeline while it is measured.", "",
        _table(runs), "",
        *_verdicts(runs),
        f"At {runs[-1].cameras} camera(s) ({runs[-1].runtime}): {_bottleneck(runs[-1])}." if runs[-1].worker_ms else "", "",
        f"Reproduce: `vigil bench e2e --cameras {cameras} --seconds {seconds:.0f}"
        + (f" --workers {workers}" if workers > 1 else "") + (f" --runtimes {runtimes}`." if runtimes else "`."),
    ])  # fmt: skip
    path = write_section("e2e", text, doc or DEFAULT_DOC)
    typer.echo(text + f"\n\nwritten to {path}")


def _verdicts(runs: list[Run]) -> list[str]:
    """One line per runtime: the largest camera count it sustained."""
    out = []
    for name in dict.fromkeys(r.runtime for r in runs):
        held = max((r.cameras for r in runs if r.runtime == name and r.sustained), default=0)
        out.append(f"{name}: largest camera count sustained (>= {SCORED_MIN:.0%} of frames scored, p99 capture->Redis "
                   f"<= {P99_MAX_MS:.0f} ms): **{held}**.  ")  # fmt: skip
    return out


def bench_worker_profile(
    cameras: int = typer.Option(8, min=1, help="Cameras (10 fps each)"),
    seconds: float = typer.Option(30.0, min=5, help="Seconds sampled (after 10 s warm-up)"),
    runtime: str = typer.Option("", help="Worker runtime (keras, onnx-int8, openvino-int8, ...; default: the worker's "
                                         "configured one)"),
    data: Path | None = typer.Option(None, help="UCSD Ped2 folder (default as for `vigil bench e2e`)"),
    doc: Path | None = typer.Option(None, help="Benchmarks document (default docs/benchmarks.md)"),
) -> None:
    """Where the worker's time goes: one `vigil bench e2e` run sampled by py-spy (needs `pip install 'vigil[profile]'`)."""
    from vigil.shared.logging import configure_logging
    from vigil.tools.benchdoc import DEFAULT_DOC, machine_line, write_section

    configure_logging("WARNING")
    find_py_spy()  # before minutes of setup, not after
    data, env = data or default_ped2_dir(), runtime_envs(runtime)[0]
    workdir = repo_root() / ".state" / "bench-e2e"
    _ensure_export(env, data)
    typer.echo(f"{_worker_runtime(env)}, {cameras} camera(s), worker sampled by py-spy: measuring {seconds:.0f} s ...")
    raw = workdir / f"worker-profile-{cameras}.txt"
    run = _measure(cameras, seconds, data, workdir, env, profile=raw)
    text = "\n".join([
        "## Worker profile (`vigil bench worker-profile`)", "",
        f"Machine: {machine_line()}. Where the worker's threads spend their time at {cameras} cameras (10 fps, "
        f"{run.runtime}, motion on), sampled from outside by py-spy over the {seconds:.0f} s measured window of a "
        f"`vigil bench e2e` run of its own (that run: {run.scored / max(1, run.offered):.0%} of the frames scored, p99 "
        f"capture->Redis {_pct(run.total_ms, 99):.0f} ms). *Self*: samples in the function itself; *inclusive*: with "
        "its callees (Vigil's functions only); the flow thread and the step thread are sampled alike, so shares are of "
        f"busy thread time, not of wall time. Raw stacks: `{raw.relative_to(repo_root())}`.", "",
        profile_table(raw.read_text()), "",
        f"Reproduce: `pip install 'vigil[profile]' && vigil bench worker-profile --cameras {cameras} --seconds "
        f"{seconds:.0f}" + (f" --runtime {runtime}`." if runtime else "`."),
    ])  # fmt: skip
    path = write_section("worker-profile", text, doc or DEFAULT_DOC)
    typer.echo(text + f"\n\nwritten to {path}")
