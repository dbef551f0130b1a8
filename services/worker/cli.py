"""Commands of the worker: `vigil worker` and `vigil bench worker`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add `worker` to the root CLI."""
    app.command("worker")(worker)


def worker(
    model_dir: Path | None = typer.Option(None, help="Model directory (default: VIGIL_WORKER_MODEL_DIR or the packaged model)"),
    max_batch: int | None = typer.Option(None, help="Most frames per batch (VIGIL_WORKER_MAX_BATCH)"),
    max_wait_s: float | None = typer.Option(None, help="Longest wait for a batch to fill (VIGIL_WORKER_MAX_WAIT_S)"),
    metrics_port: int | None = typer.Option(None, help="Port of /metrics, /healthz, /readyz (0 = off)"),
) -> None:
    """Score frames from Kafka with batched PredNet steps (one consumer group across all workers).

    Every setting comes from VIGIL_WORKER_* (see docs/worker.md); options here override them.
    """
    from vigil.services.worker.settings import WorkerSettings
    from vigil.services.worker.transport import build_service
    from vigil.shared.runner import run_service

    overrides = {"model_dir": model_dir, "max_batch": max_batch, "max_wait_s": max_wait_s, "metrics_port": metrics_port}
    settings = WorkerSettings(**{k: v for k, v in overrides.items() if v is not None})
    raise typer.Exit(run_service(settings, build_service, topics="require"))


