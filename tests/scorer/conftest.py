"""Fixtures of the scorer tests: a private Redis server (for outages) and `vigil scorer` subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrivateRedis:
    """A redis-server of this test only, which the test may stop and start again (same port, password)."""

    port: int
    password: str
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password, "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        pytest.fail(f"private redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private Redis (never the shared one) for outage tests."""
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        pytest.fail("redis-server is not installed. Install it with: make up (or apt-get install redis-server)")
    server = PrivateRedis(_free_port(), "test-secret", tmp_path)
    server.start()
    yield server
    server.stop()


@dataclass
class ScorerProcesses:
    """Starts `vigil scorer` subprocesses with an environment; kills them all at the end."""

    env: dict[str, str]
    logdir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self) -> subprocess.Popen:
        log = open(self.logdir / f"scorer-{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed with the process
        cmd = [sys.executable, "-c", "from vigil.cli import main; main()", "scorer"]
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        self.procs.append(proc)
        return proc

    def kill9(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.logdir.glob("scorer-*.log")))


def scorer_env_name(name: str) -> str:
    """The environment variable of a scorer setting: ``grace_frames`` -> ``VIGIL_SCORER_SCORING__GRACE_FRAMES``,
    ``k`` -> ``VIGIL_SCORER_EVENTS__K``, ``session_timeout_s`` -> ``VIGIL_SCORER_SESSION_TIMEOUT_S``."""
    from vigil.services.scorer.settings import DEPRECATED_NAMES

    return DEPRECATED_NAMES[name].env if name in DEPRECATED_NAMES else f"VIGIL_SCORER_{name.upper()}"


@pytest.fixture
def scorer_processes(topic_settings, kafka_settings, unique_name, tmp_path: Path) -> Iterator[Callable[..., ScorerProcesses]]:  # noqa: ANN001
    """Factory: scorer_processes(**scorer_settings) -> ScorerProcesses on this test's topics (names as in
    :func:`scorer_env_name`)."""
    from vigil.shared.kafka import delete_topics, make_admin

    app_id = unique_name("scorer").replace(".", "-")
    made: list[ScorerProcesses] = []

    def _make(**overrides: object) -> ScorerProcesses:
        env = dict(os.environ)
        env |= {
            "VIGIL_TOPICS_SCORES": topic_settings.scores, "VIGIL_TOPICS_DLQ": topic_settings.dlq,
            "VIGIL_TOPICS_FRAMES": topic_settings.frames, "VIGIL_TOPICS_CAMERA_STATUS": topic_settings.camera_status,
            "VIGIL_TOPICS_PARTITIONS": str(topic_settings.partitions), "VIGIL_SCORER_APP_ID": app_id,
            "VIGIL_SCORER_DATADIR": str(tmp_path / "faust"), "VIGIL_SCORER_BATCH_WITHIN_S": "0.02",
        }  # fmt: skip
        env |= {scorer_env_name(k): str(v) for k, v in overrides.items()}
        procs = ScorerProcesses(env, tmp_path)
        made.append(procs)
        return procs

    yield _make
    for procs in made:
        for p in procs.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(10)
    admin = make_admin(kafka_settings)
    try:
        internal = [t for t in admin.list_topics() if t.startswith(app_id)]
    finally:
        admin.close()
    if internal:
        delete_topics(kafka_settings, internal)


def wait_for(check: Callable[[], object], timeout: float, what: str, logs: Callable[[], str] = lambda: "") -> object:
    """Poll ``check`` until it returns something truthy; fail with ``what`` (and logs) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs()}")
