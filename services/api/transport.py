"""The HTTP transport of `vigil api`: uvicorn serving the app, and ``build_service(settings)`` for the runner.

:class:`ApiService` runs uvicorn in a thread (so :func:`vigil.shared.runner.run_service` keeps the
signals: SIGTERM / SIGINT call :meth:`ApiService.request_stop`, which asks uvicorn to stop accepting,
end the live event streams, and let open requests finish within ``shutdown_timeout_s``).
``/metrics``, ``/healthz`` and ``/readyz`` are the runner's, on ``metrics_port``: alive while the event
loop beats its heartbeat, ready while uvicorn listens and Redis answers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from vigil.services.api.settings import ApiSettings
from vigil.shared.telemetry import Heartbeat

log = logging.getLogger(__name__)


class ApiService:
    """`vigil api` as a :class:`~vigil.shared.runner.Service`.

    Args:
        settings: The API settings.
        ctx: The routes' collaborators (:class:`~vigil.services.api.app.ApiContext`).
    """

    def __init__(self, settings: ApiSettings, ctx: Any) -> None:
        import uvicorn

        from vigil.services.api.app import create_app

        self.settings = settings
        self.ctx = ctx
        config = uvicorn.Config(create_app(ctx), host=settings.host, port=settings.port, log_config=None,
                                access_log=settings.access_log, timeout_graceful_shutdown=settings.shutdown_timeout_s,
                                server_header=False, lifespan="on")  # fmt: skip
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def heartbeat(self) -> Heartbeat:
        """The event loop's heartbeat (/healthz)."""
        return self.ctx.heartbeat

    @property
    def port(self) -> int | None:
        """The port uvicorn listens on, once started (the chosen one when ``port`` is 0)."""
        for server in getattr(self.server, "servers", []) or []:
            for sock in server.sockets:
                return sock.getsockname()[1]
        return None

    def start(self) -> None:
        """Serve in a thread; return at once."""
        self._thread = threading.Thread(target=self.server.run, name="vigil-api-http", daemon=True)
        self._thread.start()

    def wait(self) -> int:
        """Block until uvicorn ends (a stop was asked, or it failed to start); 0 after a requested stop."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)
        return 0 if self.server.started or self.server.should_exit else 1

    def wait_started(self, timeout_s: float = 10.0) -> bool:
        """Wait until uvicorn listens (for tests and the runner's log)."""
        import time

        deadline = time.monotonic() + timeout_s
        while not self.server.started and time.monotonic() < deadline and (self._thread is None or self._thread.is_alive()):
            time.sleep(0.02)
        return self.server.started

    def request_stop(self) -> None:
        """Ask uvicorn to stop (safe from a signal handler: two flags)."""
        self.ctx.stopping = True
        self.server.should_exit = True

    def stop(self) -> None:
        """Wait for uvicorn's graceful shutdown, then release the scorer's pool and Redis."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(self.settings.shutdown_timeout_s + 5)
        self.ctx.scorer.close()
        self.ctx.store.client.close()
        log.info("vigil api stopped")

    def ready(self) -> bool:
        """Ready while uvicorn listens, the event loop beats and Redis answers."""
        return bool(self.server.started) and not self.server.should_exit and self.heartbeat.alive() and self.ctx.store.ping()


def build_service(settings: ApiSettings) -> ApiService:
    """Read the tokens and wire the API (for :func:`~vigil.shared.runner.run_service`); Redis connects lazily.

    Raises:
        StartupError: no tokens file is named, or it is unreadable or invalid.
    """
    from vigil.services.api.app import ApiContext
    from vigil.services.api.auth import Tokens
    from vigil.services.api.events import AlertHub
    from vigil.services.api.scoring import ClipScorer
    from vigil.services.api.store import AlertStore
    from vigil.shared.runner import StartupError

    if settings.tokens_file is None:
        raise StartupError("vigil api needs bearer tokens: set VIGIL_API_TOKENS_FILE to a file of `role:token` lines "
                           "(roles viewer, operator); see docs/api.md")  # fmt: skip
    try:
        tokens = Tokens.load(settings.tokens_file)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    ctx = ApiContext(
        settings=settings,
        store=AlertStore(settings.redis.client(), settings.scan_limit, settings.cameras_cache_s),
        hub=AlertHub(settings.redis.async_client, settings.sse_queue, settings.sse_max_clients),
        scorer=ClipScorer(settings.model_dir, settings.max_frames, settings.max_pixels, settings.score_workers),
        tokens=tokens,
    )
    log.info("vigil api on http://%s:%d with %d token(s); CORS %s", settings.host, settings.port, len(tokens),
             ", ".join(settings.cors_origins) or "off")  # fmt: skip
    return ApiService(settings, ctx)
