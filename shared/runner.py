"""The one composition root of every Vigil service (the role Frigate's ``FrigateApp`` plays).

Each service (``services/<name>/``) has the same rooms: ``settings.py`` (pydantic-settings, one
prefix), a pure core that runs without the network, the transport adapter (Kafka / Faust / Redis),
``metrics.py`` (Prometheus) and ``cli.py``. Its ``cli.py`` builds the settings and hands them, with a
``build`` function that wires core and transport into a :class:`Service`, to :func:`run_service`,
which does everything that is the same for all of them, in this order:

1. logging (:func:`vigil.shared.logging.configure_logging`);
2. the Vigil topics (created if missing; how strictly is the service's :data:`TopicPolicy`);
3. ``build(settings)``; a :class:`StartupError` there is logged and ends the process with exit code 2;
4. ``/metrics``, ``/healthz`` and ``/readyz`` on ``metrics_host:metrics_port``
   (:func:`vigil.shared.telemetry.start_http`); ``/healthz`` fails when the service's ``heartbeat`` (a
   :class:`~vigil.shared.telemetry.Heartbeat`, optional) has not been beaten for ``heartbeat_timeout_s``;
5. SIGTERM / SIGINT ask the service to stop (Faust services install Faust's own handlers, which do the same);
6. ``service.start()`` and ``service.wait()``; then, always, ``service.stop()``, which flushes what is in
   flight, and the HTTP server is shut down.

Example:
    >>> class Once:
    ...     def start(self): print("start")
    ...     def wait(self): return 0
    ...     def request_stop(self): pass
    ...     def stop(self): print("flushed")
    ...     def ready(self): return True
    >>> from vigil.shared.settings import ServiceSettings
    >>> run_service(ServiceSettings(), lambda s: Once(), topics="skip", install_signals=False)
    start
    flushed
    0
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeVar

from vigil.shared.settings import ServiceSettings
from vigil.shared.telemetry import Heartbeat

log = logging.getLogger(__name__)

TopicPolicy = Literal["require", "try", "skip"]
"""``require``: Kafka must be reachable at start (else the start fails with the command that starts it);
``try``: create the topics if Kafka answers, else log a warning and go on (the service waits for Kafka);
``skip``: the service does not need the topics created at start."""

S = TypeVar("S", bound=ServiceSettings)


class StartupError(Exception):
    """The service cannot start with this configuration; the text says what is wrong and what to do."""


class Service(Protocol):
    """What :func:`run_service` drives. Each service's transport module builds one."""

    def start(self) -> None:
        """Start clients and threads; return at once."""

    def wait(self) -> int:
        """Block until the service ends or is asked to stop; return the exit code."""

    def request_stop(self) -> None:
        """Ask :meth:`wait` to return soon (called from a signal handler: set a flag, nothing more)."""

    def stop(self) -> None:
        """Flush what is in flight and release everything; called once, after :meth:`wait`."""

    def ready(self) -> bool:
        """Whether the service is ready for traffic (``/readyz``)."""


def run_service(
    settings: S, build: Callable[[S], Service], *, topics: TopicPolicy, install_signals: bool = True
) -> int:
    """Run one service until it ends or SIGTERM / SIGINT; returns the process exit code.

    Args:
        settings: The service's settings (logging, Kafka, topics, metrics port and its own fields).
        build: Wires the service's core and transport from the settings; may raise :class:`StartupError`.
        topics: How the Vigil topics are ensured at start (see :data:`TopicPolicy`).
        install_signals: Install SIGTERM / SIGINT handlers (only possible in the main thread).
    """
    from vigil.shared.logging import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    settings.kafka.warn_insecure()
    _ensure_topics(settings, topics)
    try:
        service = build(settings)
    except StartupError as exc:
        log.error("%s", exc)
        return 2
    http = _start_http(settings, service)
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _sig, _frame: service.request_stop())
    try:
        service.start()
        return service.wait()
    finally:
        service.stop()
        if http is not None:
            http.shutdown()


def _ensure_topics(settings: ServiceSettings, policy: TopicPolicy) -> None:
    """Create the Vigil topics that are missing, as strictly as ``policy`` says."""
    if policy == "skip":
        return
    from vigil.shared.kafka import KafkaUnavailableError, ensure_vigil_topics

    try:
        ensure_vigil_topics(settings.kafka, settings.topics)
    except KafkaUnavailableError as exc:
        if policy == "require":
            raise
        log.warning("could not check the topics (%s); the service will wait for Kafka", exc)


def _start_http(settings: ServiceSettings, service: Service):  # noqa: ANN202 - BoundedHTTPServer | None
    """Serve /metrics, /healthz and /readyz when a port is set; /healthz follows the service's heartbeat."""
    if not settings.metrics_port:
        return None
    from vigil.shared.telemetry import start_http

    heartbeat = getattr(service, "heartbeat", None)
    if heartbeat is not None:
        heartbeat.timeout_s = settings.heartbeat_timeout_s
    log.info("serving /metrics, /healthz, /readyz on %s:%d", settings.metrics_host, settings.metrics_port)
    return start_http(settings.metrics_port, ready=service.ready, host=settings.metrics_host, heartbeat=heartbeat)


HEARTBEAT_EVERY_S = 1.0
"""How often a Faust service's event loop beats its heartbeat (a timer of the app)."""


class FaustService:
    """Base of the services that run a Faust app (worker, scorer): Faust owns the event loop and the signals.

    Subclasses set :attr:`app` in their constructor (``faust.App`` with agents and timers) and override
    :meth:`stop` (and :meth:`ready` to add conditions). Faust installs its own SIGTERM / SIGINT handlers when it
    starts; they stop the consumer, flush the producer and commit, after which :meth:`wait` returns.

    Generic health: :meth:`wait` adds a timer that beats :attr:`heartbeat` every second (a blocked event loop
    stops beating; subclasses wrap long work in ``heartbeat.working()``), and a partitions-assigned hook; the
    service is ready once Kafka assigned it partitions (it is connected and in its group) while its loop lives.
    """

    app: Any = None
    log_level: str = "INFO"
    _heartbeat: Heartbeat | None = None
    assigned: bool = False

    @property
    def heartbeat(self) -> Heartbeat:
        """The service loop's heartbeat (/healthz)."""
        if self._heartbeat is None:
            self._heartbeat = Heartbeat()
        return self._heartbeat

    def alive(self) -> bool:
        """Whether the event loop beats and no batch is stuck."""
        return self.heartbeat.alive()

    def start(self) -> None:
        """Nothing to do before the Faust worker runs (it starts the app in :meth:`wait`)."""

    def install_health(self) -> None:
        """Add the heartbeat timer and the partitions-assigned hook to :attr:`app` (once, before it runs)."""
        if getattr(self, "_health_installed", False) or self.app is None:
            return
        self._health_installed = True

        async def _beat() -> None:
            self.heartbeat.beat()

        async def _assigned(sender: Any, assigned: Any, **_: Any) -> None:
            self.assigned = True
            self.heartbeat.beat()

        self.app.timer(HEARTBEAT_EVERY_S, name="vigil-heartbeat")(_beat)
        self.app.on_partitions_assigned.connect(_assigned)

    def wait(self) -> int:
        """Run the Faust worker until it is stopped; returns its exit code."""
        import faust

        self.install_health()
        self.heartbeat.beat()
        worker = faust.Worker(self.app, loglevel=self.log_level, override_logging=False, quiet=True)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:  # mode's worker always ends with SystemExit
            return exc.code if isinstance(exc.code, int) else 0
        return 0

    def request_stop(self) -> None:
        """Faust's own signal handlers stop the worker; nothing to do here."""

    def stop(self) -> None:
        """Release what the service holds besides the Faust app (none by default)."""

    def ready(self) -> bool:
        """Ready once Kafka assigned the service its partitions, while its loop is alive (subclasses may add)."""
        return self.assigned and self.alive()
