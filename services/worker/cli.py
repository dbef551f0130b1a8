"""Commands of the worker: `vigil worker` and `vigil bench worker`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add `worker` to the root CLI and `worker` to the `bench` group."""
    app.command("worker")(worker)
    bench.command("worker")(bench_worker)


def worker(
    model_dir: Path | None = typer.Option(None, help="Model directory (default: VIGIL_WORKER_MODEL_DIR or the packaged model)"),
    max_batch: int | None = typer.Option(None, help="Most frames per batch (VIGIL_WORKER_MAX_BATCH)"),
    max_wait_s: float | None = typer.Option(None, help="Longest wait for a batch to fill (VIGIL_WORKER_MAX_WAIT_S)"),
    metrics_port: int | None = typer.Option(None, help="Port of /metrics, /healthz, /readyz (0 = off)"),
) -> None:
    """Score frames from Kafka with batched PredNet steps (one consumer group across all workers).

    Every setting comes from VIGIL_WORKER_* (see docs/worker.md); options here override them.
    """
    from vigil.services.worker.app import main
    from vigil.services.worker.settings import WorkerSettings

    overrides = {"model_dir": model_dir, "max_batch": max_batch, "max_wait_s": max_wait_s, "metrics_port": metrics_port}
    main(WorkerSettings(**{k: v for k, v in overrides.items() if v is not None}))


def bench_worker(
    cameras: str = typer.Option("1,4,16,64", help="Comma-separated simulated camera counts"),
    fps: float = typer.Option(10.0, help="Frames per second per camera"),
    seconds: float = typer.Option(10.0, help="Measured seconds per camera count"),
    max_batch: int = typer.Option(64, help="max_batch of the batched worker (compared with max_batch=1)"),
    max_wait_s: float = typer.Option(0.02, help="max_wait_s of the workers"),
    model_dir: Path | None = typer.Option(None, help="Model directory (default: the packaged model)"),
    write: bool = typer.Option(True, help="Write the result to docs/benchmarks.md"),
) -> None:
    """Frames/s and capture->score latency through real Kafka, batched vs max_batch=1."""
    from vigil.services.worker.bench import BenchConfig, run_bench

    counts = tuple(int(c) for c in cameras.split(",") if c.strip())
    cfg = BenchConfig(cameras=counts, fps=fps, seconds=seconds, max_batch=max_batch, max_wait_s=max_wait_s,
                      model_dir=model_dir)  # fmt: skip
    typer.echo(run_bench(cfg, write=write))
