"""Start and stop Vigil's processes locally: the demo and the end-to-end tests share this.

* :class:`Proc` runs one command with its output in a log file and stops it with SIGTERM (then KILL).
* :func:`start_rtsp_server` serves video files as live RTSP cameras (infra/local/rtsp_server.py).
* :class:`LocalStack` runs a private Kafka + Redis (infra/local/stack.sh) in its own state directory
  on free ports, so a test may restart a broker without touching anybody else's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

STACK = Path("infra/local/stack.sh")
RTSP_SERVER = Path("infra/local/rtsp_server.py")
SYSTEM_PYTHON = os.environ.get("VIGIL_SYSTEM_PYTHON", "/usr/bin/python3")


def repo_root(start: Path | None = None) -> Path:
    """The Vigil checkout these tools run in: the working directory or the nearest folder above it
    that holds the local stack scripts (the tools drive ``infra/local``, which only a checkout has).

    Raises:
        FileNotFoundError: with what to do, when no checkout is found.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / STACK).is_file():
            return folder
    raise FileNotFoundError(f"no Vigil checkout ({STACK}) at or above {here}: run this from the repository")


def default_ped2_dir() -> Path:
    """``$VIGIL_PED2_DIR``, else ``../shared/data/ucsd_ped2`` beside the checkout, else the checkout's shipped
    mini set ``data/ped2-mini`` (Test001, Test002, Train015, Train016; logged as a warning)."""
    from vigil.model.data import PED2_ENV, PED2_HOWTO, PED2_MINI

    env = os.environ.get(PED2_ENV)
    if env:
        return Path(env)
    full = repo_root().parent / "shared" / "data" / "ucsd_ped2"
    mini = repo_root() / PED2_MINI
    if full.exists() or not (mini / "labels_frame_ped2.json").is_file():
        return full
    log.warning("UCSD Ped2 not found at %s; using the mini set shipped with Vigil, %s: only Test001 and Test002 "
                "(and normal Train015, Train016), re-encoded lossily. %s", full, mini, PED2_HOWTO)
    return mini


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vigil_argv(*args: str) -> list[str]:
    """The argv that runs a `vigil` subcommand with this interpreter."""
    return [sys.executable, "-m", "vigil.cli", *args]


@dataclass
class Proc:
    """A child process with its output in ``log_path``."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        """Start the process (its own process group, so a stop reaches its children)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        log.debug("starting %s: %s", self.name, shlex.join(self.argv))
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        out.close()
        return self

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns the exit code."""
        if self.popen is None:
            return None
        if self.alive:
            self._signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
        self.kill()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the process group (a crash, as far as the others can tell)."""
        if self.alive:
            self._signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def _signal(self, sig: int) -> None:
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def tail(self, chars: int = 3000) -> str:
        """The end of the log, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def start_rtsp_server(mounts: dict[str, Path | list[Path]], log_dir: Path, *, loop: bool = False,
                      port: int = 0, timeout: float = 60.0) -> tuple[Proc, dict[str, str]]:  # fmt: skip
    """Serve each file (or playlist: one file per connection) at rtsp://127.0.0.1:PORT/NAME.

    Returns the process and name -> URL.
    """
    argv = [SYSTEM_PYTHON, str(repo_root() / RTSP_SERVER), "--port", str(port or free_port())]
    for name, paths in mounts.items():
        files = paths if isinstance(paths, list) else [paths]
        argv.append(f"--mount={name}={':'.join(str(p) for p in files)}")
    if loop:
        argv.append("--loop")
    proc = Proc("rtsp-server", argv, log_dir / "rtsp-server.log").start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proc.tail(20_000).splitlines():
            if line.startswith("READY"):
                urls = [w for w in line.split() if w.startswith("rtsp://")]
                return proc, {u.rsplit("/", 1)[1]: u for u in urls}
        if not proc.alive:
            break
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"RTSP server did not start; its log ({proc.log_path}):\n{proc.tail()}")


@dataclass
class LocalStack:
    """A private Kafka + Redis (+ Mosquitto with ``up("all")``) in ``state_dir`` on free ports (for fault tests
    and isolated runs)."""

    state_dir: Path
    kafka_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)

    def _run(self, *args: str, timeout: float = 180) -> None:
        env = os.environ | {
            "VIGIL_STATE_DIR": str(self.state_dir), "VIGIL_LOCAL_KAFKA_PORT": str(self.kafka_port),
            "VIGIL_LOCAL_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "VIGIL_LOCAL_REDIS_PORT": str(self.redis_port), "VIGIL_LOCAL_MQTT_PORT": str(self.mqtt_port),
        }  # fmt: skip
        out = subprocess.run([str(repo_root() / STACK), *args], env=env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"stack.sh {' '.join(args)} failed:\n{out.stderr[-3000:]}")

    def up(self, what: str = "all") -> LocalStack:
        """Start Kafka and/or Redis (idempotent)."""
        self._run("up", what)
        return self

    def down(self, what: str = "all") -> None:
        """Stop Kafka and/or Redis."""
        self._run("down", what)

    def env(self) -> dict[str, str]:
        """Environment variables that point Vigil's settings at this stack."""
        return {
            "VIGIL_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.kafka_port}",
            "VIGIL_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "VIGIL_REDIS_PASSWORD_FILE": str(self.state_dir / "redis" / "password"),
        }
