"""`vigil demo`: the whole pipeline on live RTSP cameras playing UCSD Ped2 clips.

Each demo camera plays labelled test clips (with bikes, carts, skaters), optionally after some normal
training clips, served live by a real RTSP server, one clip per connection: between clips the stream
ends and ingest reconnects, as with a camera that restarts, so the worker starts a fresh state (warm-up)
rather than seeing a scene cut that no real camera has. ingest -> Kafka -> worker -> scorer -> Redis run as
separate processes, as in production. Cameras start from the model's calibration, so they can alert from
their first seconds. ``--clips all`` plays all 12 test clips over ``--cameras`` cameras (several clips
each, one after the other, with a held-out normal clip between two of them: see :func:`prepare_cameras`). The demo prints live progress (per-camera fps, latest score, alerts as they
open and close) and ends with a summary: per clip whether its anomaly was alerted, false alerts and the
delay, and the end-to-end latency (capture -> alert in Redis).

The web console (`vigil api`) runs alongside, with a viewer and an operator token generated once into the
demo's state folder (``.state/demo/api-tokens``); the demo prints its URL and the operator token. When the
evidence service is installed (``vigil evidence``), it runs too, so the console's alerts carry real-frame
snapshots and clips; without it the console shows the scorer's heat-map snapshots.
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import typer

from vigil.model.live import DEMO_CAMERAS
from vigil.tools.launcher import Proc, default_ped2_dir, free_port, repo_root, start_rtsp_server, vigil_argv

log = logging.getLogger(__name__)

# A bike the previous scorer missed (Test001) and a cyclist (Test002); 2 cameras fit 2 CPU cores.
DEFAULT_CLIPS = "Test001,Test002"
NORMAL = "normal clips"
"""The summary's row for the normal clips played before or between the test clips."""
FPS = 10.0


@dataclass
class DemoCamera:
    """One demo camera: its playlist, the per-frame labels of the whole playlist, and where each test clip is."""

    camera_id: str
    playlist: list[Path]
    labels: list[int]
    segments: list[tuple[str, int, int]] = field(default_factory=list)
    """(test clip, first frame index, end frame index) in the playlist."""
    @property
    def entries(self) -> list[str]:
        """The playlist's clip names, in order (test clips and the normal clips before and between them)."""
        return [p.stem for p in self.playlist]

    def add(self, path: Path, labels: list[int]) -> None:
        """Append a clip to the playlist (a test clip when it lives in ``test/``)."""
        if path.parent.name == "test":
            self.segments.append((path.stem, len(self.labels), len(self.labels) + len(labels)))
        self.playlist.append(path)
        self.labels += labels


@dataclass
class CameraStats:
    """What the monitor has seen of one camera."""

    scores: int = 0
    warmup: int = 0
    last_patch: float = 0.0
    last_seq: int = -1
    latencies_ms: list[float] = field(default_factory=list)
    recent: list[float] = field(default_factory=list)  # processed times (s) for the fps estimate
    first_seq: int | None = None
    sessions: dict[int, int] = field(default_factory=dict)
    """session -> its first seq, in order of appearance: one session per clip (ingest reconnects per clip)."""


INTERLUDES = ("Train015", "Train016")
"""Held-out normal clips played between two test clips on one camera when the model's card names none (the
committed Ped2 models' ``data.val_clips``: in neither their training nor their calibration)."""


def prepare_cameras(ped2: Path, clips: list[str], warm_clips: int, n_cameras: int | None = None,
                    interludes: Sequence[str] = INTERLUDES) -> list[DemoCamera]:
    """A playlist per camera: ``warm_clips`` normal training clips, then its test clips.

    With ``n_cameras``, the clips are dealt round-robin to that many cameras (``--clips all``), and a normal
    clip of ``interludes`` (in turn; Ped2's Train015/016 last 15 s) is played between two test clips: with the
    default event rules an alert still open at a clip's end closes there (2 s of frames below) and its
    cooldown (10 s) lapses, as between two incidents on a real camera, rather than swallowing the next clip's
    anomaly (``vigil evaluate`` scores each clip on its own, and replays this arrangement as ``continuous``).
    Alerts that begin in a normal clip are counted as false. Without ``n_cameras`` each clip gets its own
    camera.
    """
    labels_all = json.loads((ped2 / "labels_frame_ped2.json").read_text())
    frames_of = _frame_counts(json.loads((ped2 / "manifest.json").read_text()))
    unknown = [c for c in clips if c not in labels_all]
    if unknown:
        raise typer.BadParameter(f"unknown test clips {unknown}; choose from {sorted(labels_all)} or 'all'", param_hint="--clips")
    from vigil.model.live import camera_playlists

    playlists = camera_playlists(clips, n_cameras or len(clips), interludes if n_cameras else ())
    cams = []
    for i, playlist in enumerate(playlists):
        cam = DemoCamera(f"ped2-cam{i + 1}", [], [])
        warm = [f"Train{(i * warm_clips + k) % 16 + 1:03d}" for k in range(warm_clips)]
        for name in [*warm, *playlist]:
            if name in labels_all:
                cam.add(ped2 / "test" / f"{name}.mkv", list(labels_all[name]))
            else:
                cam.add(ped2 / "train" / f"{name}.mkv", [0] * frames_of.get(name, 0))
        cams.append(cam)
    return cams


def _frame_counts(manifest: dict) -> dict[str, int]:
    items = manifest.get("clips", manifest)
    counts: dict[str, int] = {}
    for key, value in (items.items() if isinstance(items, dict) else []):
        if isinstance(value, dict) and "frames" in value:
            counts[Path(key).stem] = int(value["frames"])
    return counts


def wait_ready(proc: Proc, port: int, timeout: float) -> None:
    """Wait until the service answers /readyz with 200; fail with its log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive:
            raise RuntimeError(f"{proc.name} exited during start-up; its log:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{proc.name} not ready after {timeout:.0f}s; its log:\n{proc.tail()}")


class Monitor:
    """Follows scores (Kafka) and alerts (Redis pub/sub) and prints progress."""

    def __init__(self, kafka, redis_settings, scores_topic: str, cameras: list[DemoCamera]) -> None:  # noqa: ANN001
        self.kafka, self.redis_settings, self.topic = kafka, redis_settings, scores_topic
        self.cameras = {c.camera_id: c for c in cameras}
        self.stats: dict[str, CameraStats] = defaultdict(CameraStats)
        self.alerts: dict[str, dict] = {}
        self.alert_latency_ms: list[float] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready = threading.Barrier(3)

    def start(self) -> None:
        """Start the score and alert followers (returns once both are subscribed)."""
        for target in (self._follow_scores, self._follow_alerts):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        self._ready.wait(timeout=60)

    def stop(self) -> None:
        """Stop the followers."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _follow_scores(self) -> None:
        from kafka import KafkaConsumer

        from vigil.shared.schemas import SchemaError, ScoreMessage

        consumer = KafkaConsumer(self.topic, group_id=f"vigil-demo-{uuid.uuid4().hex[:8]}",
                                 auto_offset_reset="latest", **self.kafka.kafka_python_kwargs())  # fmt: skip
        consumer.poll(timeout_ms=2000)
        self._ready.wait(timeout=60)
        while not self._stop.is_set():
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    try:
                        s = ScoreMessage.decode(r.value)
                    except SchemaError:
                        continue
                    st = self.stats[s.camera_id]
                    st.scores += 1
                    st.warmup += s.warmup
                    st.last_patch, st.last_seq = s.features.patch_max, s.seq
                    st.latencies_ms.append((s.processed_ns - s.capture_ns) / 1e6)
                    st.recent = [*st.recent[-49:], time.time()]
                    if st.first_seq is None:
                        st.first_seq = s.seq
                    st.sessions.setdefault(s.session, s.seq)
        consumer.close()

    def _follow_alerts(self) -> None:
        from vigil.shared.schemas import Alert, SchemaError

        client = self.redis_settings.client()
        pubsub = client.pubsub()
        pubsub.psubscribe("vigil:alerts:*")
        pubsub.get_message(timeout=5)
        self._ready.wait(timeout=60)
        while not self._stop.is_set():
            msg = pubsub.get_message(timeout=0.5)
            if not msg or msg["type"] != "pmessage":
                continue
            try:
                alert = Alert.from_json(msg["data"])
            except SchemaError:
                continue
            if alert.camera_id not in self.cameras:  # another user of the same Redis
                continue
            opened = self.alerts.get(alert.alert_id, {}).get("open_trigger_seq")
            self.alerts[alert.alert_id] = alert.model_dump() | {
                "open_trigger_seq": alert.trigger_seq if alert.event == "open" else opened}
            if alert.trigger_capture_ns:
                self.alert_latency_ms.append((alert.time_ns - alert.trigger_capture_ns) / 1e6)
            base = self.stats[alert.camera_id].first_seq or 0
            end = "..." if alert.end_seq is None else alert.end_seq - base
            span = f"frames {alert.start_seq - base}-{end}"
            typer.secho(f"  ALERT {alert.event:<6} {alert.alert_id:<20} {span:<18} peak {alert.peak_score:.2f}"
                        f" (threshold {alert.threshold:.2f})", fg="red" if alert.event == "open" else "yellow")  # fmt: skip
        pubsub.close()

    def progress_line(self) -> str:
        """One line: per camera fps, frames, latest patch error and scorer state."""
        client = self.redis_settings.client()
        parts = []
        for cam in self.cameras:
            st = self.stats[cam]
            fps = (len(st.recent) - 1) / (st.recent[-1] - st.recent[0]) if len(st.recent) > 2 else 0.0
            h = {k.decode(): v.decode() for k, v in client.hgetall(f"vigil:camera:{cam}").items()}
            score = h.get("score", h.get("latest_score", "-"))
            parts.append(f"{cam}: {fps:4.1f} fps, {st.scores:4d} frames, err {st.last_patch:.4f}, score {_short(score)}")
        return " | ".join(parts)


def _short(value: str) -> str:
    try:
        return f"{float(value):.2f}"
    except ValueError:
        return value


def summarize(monitor: Monitor, cameras: list[DemoCamera]) -> dict:
    """Per test clip: alerted or not, false alerts, delay; overall latencies.

    A frame's index in a clip is its sequence number minus its session's first one (:func:`_clip_ranges`).
    An alert is true when it overlaps a test clip's labelled frames, else false for the clip its first frame
    is in; the normal clips played before or between test clips are one row, ``normal clips``.
    """
    rows = {clip: {"anomalous": any(cam.labels[a:b]), "alerted": False, "false_alerts": 0, "delay_s": None}
            for cam in cameras for clip, a, b in cam.segments}  # fmt: skip
    if any(len(cam.entries) > len(cam.segments) for cam in cameras):
        rows[NORMAL] = {"anomalous": False, "alerted": False, "false_alerts": 0, "delay_s": None}
    counted = [_attribute(a, monitor, cameras, rows) for a in sorted(monitor.alerts.values(), key=lambda a: a["start_seq"])]
    lat = [x for st in monitor.stats.values() for x in st.latencies_ms]
    anomalous = [c for c, r in rows.items() if r["anomalous"]]
    delays = [r["delay_s"] for r in rows.values() if r["delay_s"] is not None]
    return {
        "frames_processed": sum(st.scores for st in monitor.stats.values()),
        "alerts": sum(counted),
        "alerts_after_the_playlist": len(counted) - sum(counted),
        "clips_alerted": f"{sum(rows[c]['alerted'] for c in anomalous)}/{len(anomalous)}",
        "false_alerts": sum(r["false_alerts"] for r in rows.values()),
        "median_delay_s": round(statistics.median(delays), 1) if delays else None,
        "median_capture_to_score_ms": round(statistics.median(lat), 1) if lat else None,
        "median_capture_to_alert_ms": round(statistics.median(monitor.alert_latency_ms), 1)
        if monitor.alert_latency_ms else None,
        "per_clip": rows,
    }  # fmt: skip


def _clip_ranges(cam: DemoCamera, st: CameraStats) -> tuple[list[tuple[str, int, list[int]]], int | None]:
    """Per playlist entry of a camera that has started: its name, the seq of its first frame, and its labelled
    frame indices (none for a normal clip); and the first seq after the playlist, if the camera got that far.

    Each clip is played over its own RTSP connection, so ingest numbers it as a new session: the k-th
    session a camera's scores carried is its k-th playlist entry, and a frame's index in that clip is its
    sequence number minus the session's first one (exact whatever frames the stream added or lost). After
    the last entry the RTSP server starts the playlist again, until the demo stops: not part of the run.
    """
    starts = sorted(st.sessions.values())
    tests = {clip: (a, b) for clip, a, b in cam.segments}
    entries = cam.entries
    out = []
    for k, name in enumerate(entries[: len(starts)]):
        a, b = tests.get(name, (0, 0))
        out.append((name, starts[k], [f for f in range(b - a) if cam.labels[a + f]]))
    return out, starts[len(entries)] if len(starts) > len(entries) else None


def _attribute(alert: dict, monitor: Monitor, cameras: list[DemoCamera], rows: dict[str, dict]) -> bool:
    """Count one alert for every test clip whose labelled frames it overlaps (an alert can run on from one
    clip into the next one on the same camera); an alert that overlaps none is false, for the clip it began in
    (``rows["normal clips"]`` when that is a normal clip played before or between test clips). Alerts that begin
    once the playlist is over (the server plays it again until the demo stops) are left out: returns False."""
    cam = next((c for c in cameras if c.camera_id == alert["camera_id"]), None)
    st = monitor.stats[alert["camera_id"]]
    if cam is None or not st.sessions:
        return False
    start = alert["start_seq"]
    end = alert["end_seq"] if alert["end_seq"] is not None else st.last_seq
    trigger = alert.get("open_trigger_seq") or start
    ranges, after = _clip_ranges(cam, st)
    if after is not None and start >= after:
        return False
    hit = False
    for clip, base, span in ranges:
        if span and start <= base + span[-1] and end >= base + span[0]:
            hit = True
            if not rows[clip]["alerted"]:
                rows[clip]["alerted"], rows[clip]["delay_s"] = True, round(max(0, trigger - base - span[0]) / FPS, 1)
    began = [clip for clip, base, _ in ranges if base <= start]
    if not hit and began:
        rows[began[-1] if began[-1] in rows else NORMAL]["false_alerts"] += 1
    return True


def demo(
    clips: str = typer.Option(DEFAULT_CLIPS, help="Comma-separated Ped2 test clips, one camera each; 'all' = all 12"),
    cameras_n: int = typer.Option(DEMO_CAMERAS, "--cameras", min=1, max=12, help="With --clips all: cameras the clips are dealt to"),
    warm_clips: int = typer.Option(0, min=0, max=8, help="Normal training clips played before a camera's test clips"),
    interlude: bool = typer.Option(True, help="With --clips all: a held-out normal clip between two test clips on a "
                                   "camera, so one clip's alert and cooldown do not carry into the next"),
    data: Path | None = typer.Option(None, help="UCSD Ped2 folder (default: $VIGIL_PED2_DIR, ../shared/data/ucsd_ped2, else the shipped data/ped2-mini)"),
    model: Path | None = typer.Option(None, help="Model directory (default: the committed Ped2 model)"),
    timeout: float = typer.Option(300.0, help="Stop after this many seconds"),
    workdir: Path | None = typer.Option(None, help="Where logs and the summary go (default: .state/demo of the checkout)"),
) -> None:
    """Run the whole pipeline on live RTSP cameras playing Ped2 clips, then print a summary."""
    from vigil.shared.kafka import ensure_vigil_topics
    from vigil.shared.logging import configure_logging
    from vigil.shared.settings import KafkaSettings, RedisSettings, TopicSettings

    configure_logging("WARNING")
    data = data or default_ped2_dir()
    workdir = workdir or repo_root() / ".state" / "demo"
    if not (data / "labels_frame_ped2.json").exists():
        raise typer.BadParameter(f"UCSD Ped2 not found at {data}", param_hint="--data")
    kafka, redis_settings, topics = KafkaSettings(), RedisSettings(), TopicSettings()
    _check_servers(kafka, redis_settings)
    ensure_vigil_topics(kafka, topics)
    interludes = demo_interludes(data, model) if interlude and clips.strip().lower() == "all" else ()
    cameras = _cameras(data, clips, warm_clips, cameras_n, interludes)
    logs = workdir / "logs" / time.strftime("%Y%m%d-%H%M%S")
    procs: list[Proc] = []
    monitor = Monitor(kafka, redis_settings, topics.scores, cameras)
    try:
        rtsp, urls = start_rtsp_server({c.camera_id: c.playlist for c in cameras}, logs)
        procs.append(rtsp)
        typer.echo(f"RTSP cameras: {', '.join(urls.values())}   (logs in {logs})")
        cameras_file = _write_cameras_file(cameras, urls, logs)
        procs += _start_services(cameras, cameras_file, model, logs)
        procs += _start_console(cameras_file, logs, workdir)
        monitor.start()
        procs.append(_start_ingest(cameras_file, logs))
        _watch(monitor, cameras, procs, timeout)
        _finish(monitor, cameras, workdir)
        _linger(procs)
    except KeyboardInterrupt:
        typer.echo("\ninterrupted: stopping")
        _finish(monitor, cameras, workdir)
    finally:
        for proc in reversed(procs):
            proc.stop()
        monitor.stop()


def _finish(monitor: Monitor, cameras: list[DemoCamera], workdir: Path) -> None:
    """Print the summary and keep it in ``last_summary.json``."""
    summary = summarize(monitor, cameras)
    _print_summary(summary)
    (workdir / "last_summary.json").write_text(json.dumps(summary, indent=2))


def demo_interludes(ped2: Path, model: Path | None) -> tuple[str, ...]:
    """The normal clips to play between test clips: the model card's held-out clips (``data.val_clips``; else
    ``INTERLUDES``) that ``ped2/train`` holds and its manifest counts; a warning when there are none."""
    from vigil.model.streaming import CARD_FILE, DEFAULT_MODEL_DIR

    try:
        card = json.loads(((model or DEFAULT_MODEL_DIR) / CARD_FILE).read_text())
    except (OSError, ValueError):
        card = {}
    wanted = card.get("data", {}).get("val_clips") if isinstance(card, dict) else None
    frames_of = _frame_counts(json.loads((ped2 / "manifest.json").read_text()))
    names = tuple(n for n in (wanted or INTERLUDES) if isinstance(n, str) and frames_of.get(n)
                  and (ped2 / "train" / f"{n}.mkv").is_file())  # fmt: skip
    if not names:
        typer.echo(f"warning: no held-out normal clip ({', '.join(wanted or INTERLUDES)}) in {ped2 / 'train'} with a frame "
                   "count in its manifest: a camera plays its test clips back to back, so an alert still open at a "
                   "clip's end can swallow the next clip's anomaly (get the full set: `vigil data ped2`)", err=True)
    return names


def _cameras(data: Path, clips: str, warm_clips: int, n_cameras: int, interludes: Sequence[str] = ()) -> list[DemoCamera]:
    if clips.strip().lower() == "all":
        names = sorted(json.loads((data / "labels_frame_ped2.json").read_text()))
        return prepare_cameras(data, names, warm_clips, n_cameras, interludes)
    return prepare_cameras(data, [c.strip() for c in clips.split(",") if c.strip()], warm_clips)


def _print_summary(summary: dict) -> None:
    typer.echo("\nPer clip")
    for clip, r in summary["per_clip"].items():
        got = "alerted" if r["alerted"] else ("MISSED" if r["anomalous"] else "no anomaly")
        delay = f", after {r['delay_s']:.1f} s" if r["delay_s"] is not None else ""
        typer.echo(f"  {clip}: {got}{delay}, false alerts {r['false_alerts']}")
    typer.echo("Summary\n" + "\n".join(f"  {k.replace('_', ' ')}: {v}" for k, v in summary.items() if k != "per_clip"))


def _check_servers(kafka, redis_settings) -> None:  # noqa: ANN001
    import redis

    from vigil.shared.kafka import KafkaUnavailableError, make_admin

    try:
        make_admin(kafka).close()
    except KafkaUnavailableError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        redis_settings.client().ping()
    except (redis.ConnectionError, redis.AuthenticationError) as exc:
        raise typer.BadParameter(f"Redis at {redis_settings.url}: {exc}. Run `make up` and "
                                 "`source .state/local.env`.") from exc  # fmt: skip


# Cameras start from the model's calibration (no learning period); short cooldowns suit back-to-back clips.
DEMO_SCORER_ENV = {"VIGIL_SCORER_EVENTS__COOLDOWN_S": "2", "VIGIL_SCORER_EVENTS__UPDATE_INTERVAL_S": "0.5"}


def _write_cameras_file(cameras: list[DemoCamera], urls: dict[str, str], folder: Path) -> Path:
    """The demo's cameras file, which every service reads (``VIGIL_CAMERAS_FILE``)."""
    import yaml

    cfg = {"defaults": {"fps": FPS, "width": 180, "height": 120, "channels": 1},
           "cameras": [{"id": c.camera_id, "url": urls[c.camera_id]} for c in cameras]}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cameras.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start_services(cameras: list[DemoCamera], cameras_file: Path, model: Path | None, logs: Path) -> list[Proc]:
    import os

    from vigil.services.scorer.settings import ScorerSettings
    from vigil.services.scorer.transport import reset_cameras
    from vigil.shared.scorer_params import ScoringParams

    started = []
    scorer_env = {k: os.environ.get(k, v) for k, v in DEMO_SCORER_ENV.items()}
    reset_cameras(ScorerSettings(), [c.camera_id for c in cameras])  # every run starts fresh, as the summary assumes
    typer.echo("cameras start from the model's calibration: they can alert once the worker's warm-up is over "
               f"(a camera without one would learn for {ScoringParams().grace_frames} frames)")
    for name in ("scorer", "worker"):
        port = free_port()
        env = dict(os.environ) | {f"VIGIL_{name.upper()}_METRICS_PORT": str(port), "VIGIL_CAMERAS_FILE": str(cameras_file)}
        if name == "scorer":
            env |= scorer_env
        if model is not None:
            env[f"VIGIL_{name.upper()}_MODEL_DIR"] = str(model)
        proc = Proc(name, vigil_argv(name), logs / f"{name}.log", env).start()
        started.append(proc)
        typer.echo(f"starting {name} (metrics http://127.0.0.1:{port}/metrics) ...")
        wait_ready(proc, port, timeout=180)
    return started


API_PORT = 8080
"""The console's port when it is free (else any free port)."""


def demo_tokens(folder: Path) -> dict[str, str]:
    """The demo's console tokens (``role -> token``), generated once into ``folder/api-tokens`` (mode 600)."""
    import secrets

    path = folder / "api-tokens"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text("# vigil demo console tokens (generated)\n"
                        f"viewer:{secrets.token_urlsafe(24)}\noperator:{secrets.token_urlsafe(24)}\n")  # fmt: skip
    tokens = {}
    for line in path.read_text().splitlines():
        role, sep, token = line.partition(":")
        if sep and not line.startswith("#"):
            tokens[role] = token
    return tokens


def has_command(name: str) -> bool:
    """Whether ``vigil <name>`` exists: its area's cli.py registers a command of that name."""
    import importlib

    app, bench = typer.Typer(), typer.Typer()
    try:
        importlib.import_module(f"vigil.services.{name}.cli").register(app, bench)
    except (ImportError, AttributeError):
        return False
    return any((c.name or getattr(c.callback, "__name__", "")) == name for c in app.registered_commands)


def _port(preferred: int) -> int:
    import socket

    if preferred == 0:
        return free_port()
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def _start_console(cameras_file: Path, logs: Path, workdir: Path) -> list[Proc]:
    """`vigil evidence` (when installed) and `vigil api` with the demo's tokens; prints the console's URL."""
    import os

    started = []
    if has_command("evidence"):
        port = free_port()
        env = dict(os.environ) | {"VIGIL_EVIDENCE_METRICS_PORT": str(port), "VIGIL_CAMERAS_FILE": str(cameras_file)}
        proc = Proc("evidence", vigil_argv("evidence"), logs / "evidence.log", env).start()
        try:
            wait_ready(proc, port, timeout=120)
            started.append(proc)
            typer.echo("starting evidence (real-frame snapshots and clips for the console) ...")
        except RuntimeError as exc:
            proc.stop()
            typer.secho(f"evidence did not start; the console shows heat-map snapshots only: {str(exc)[-400:]}", fg="yellow")
    else:
        typer.echo("no `vigil evidence` here: the console shows the scorer's heat-map snapshots, without clips")
    tokens = demo_tokens(workdir)
    port, metrics_port = _port(int(os.environ.get("VIGIL_API_PORT", API_PORT))), free_port()
    env = dict(os.environ) | {"VIGIL_API_PORT": str(port), "VIGIL_API_METRICS_PORT": str(metrics_port),
                              "VIGIL_API_TOKENS_FILE": str(workdir / "api-tokens"), "VIGIL_CAMERAS_FILE": str(cameras_file)}  # fmt: skip
    proc = Proc("api", vigil_argv("api"), logs / "api.log", env).start()
    wait_ready(proc, metrics_port, timeout=60)
    typer.secho(f"console: http://127.0.0.1:{port}/  (operator token {tokens.get('operator', '?')}; "
                f"viewer token {tokens.get('viewer', '?')}; both in {workdir / 'api-tokens'})", fg="green", bold=True)  # fmt: skip
    return [*started, proc]


def _linger(procs: list[Proc]) -> None:
    """On a terminal, keep the console up after the summary until Enter (or Ctrl-C)."""
    import sys

    api = next((p for p in procs if p.name == "api" and p.alive), None)
    if not sys.stdin.isatty() or api is None:
        return
    typer.secho(f"\nconsole: http://127.0.0.1:{api.env.get('VIGIL_API_PORT', API_PORT)}/review  (tokens in "
                f"{api.env.get('VIGIL_API_TOKENS_FILE', '?')})", fg="green", bold=True)  # fmt: skip
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        input("The console stays up for browsing: press Enter to stop everything. ")


def _start_ingest(cameras_file: Path, logs: Path) -> Proc:
    import os

    port = free_port()
    env = dict(os.environ) | {"VIGIL_INGEST_METRICS_PORT": str(port), "VIGIL_CAMERAS_FILE": str(cameras_file)}
    proc = Proc("ingest", vigil_argv("ingest", "--cameras", str(cameras_file)), logs / "ingest.log", env).start()
    wait_ready(proc, port, timeout=60)
    return proc


def _watch(monitor: Monitor, cameras: list[DemoCamera], procs: list[Proc], timeout: float) -> None:
    start = time.monotonic()
    total = {c.camera_id: len(c.labels) for c in cameras}
    last_change, last_count = time.monotonic(), -1
    while time.monotonic() - start < timeout:
        time.sleep(2)
        typer.echo(f"[{time.monotonic() - start:5.0f}s] {monitor.progress_line()}")
        for p in procs:
            if not p.alive:
                raise RuntimeError(f"{p.name} stopped unexpectedly; its log:\n{p.tail()}")
        count = sum(st.scores for st in monitor.stats.values())
        if count != last_count:
            last_change, last_count = time.monotonic(), count
        done = all(monitor.stats[c].scores >= n - 2 for c, n in total.items())
        if done or (count > 0 and time.monotonic() - last_change > 15):
            time.sleep(3)  # let the last alerts close
            return


