"""The shared service runner: start-up errors, signals, and the flush on the way out."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from vigil.shared.runner import StartupError, run_service
from vigil.shared.settings import ServiceSettings


class Recorder:
    """A service that waits for a stop request and records what the runner did to it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.stopping = threading.Event()

    def start(self) -> None:
        self.calls.append("start")

    def wait(self) -> int:
        self.calls.append("wait")
        assert self.stopping.wait(10), "SIGTERM did not reach the service"
        return 3

    def request_stop(self) -> None:
        self.calls.append("request_stop")
        self.stopping.set()

    def stop(self) -> None:
        self.calls.append("stop")

    def ready(self) -> bool:
        return True


def test_sigterm_asks_the_service_to_stop_and_the_runner_flushes_it() -> None:
    service = Recorder()
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    timer.start()
    try:
        code = run_service(ServiceSettings(), lambda _s: service, topics="skip")
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert code == 3
    assert service.calls == ["start", "wait", "request_stop", "stop"]


def test_a_startup_error_is_exit_code_2_with_the_reason_logged(capfd) -> None:  # noqa: ANN001
    def build(_settings: ServiceSettings) -> Recorder:
        raise StartupError("cameras file cameras.yaml: 'cameras' must be a non-empty list")

    assert run_service(ServiceSettings(), build, topics="skip", install_signals=False) == 2
    assert "ERROR" in (err := capfd.readouterr().err) and "'cameras' must be a non-empty list" in err


def test_the_service_is_stopped_even_when_it_fails() -> None:
    service = Recorder()
    service.wait = lambda: 1 / 0  # type: ignore[method-assign]
    with pytest.raises(ZeroDivisionError):
        run_service(ServiceSettings(), lambda _s: service, topics="skip", install_signals=False)
    assert service.calls[-1] == "stop"
