"""Commands of the development tools: `vigil demo`, `vigil smoke` and every `vigil bench ...`.

They live apart from the runtime packages (``vigil.services``, ``vigil.model``, ``vigil.shared``): a
deployment never needs them, and nothing in the runtime imports them. Each command imports its tool
lazily, so ``vigil --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add the demo, the smoke test and the benchmarks to the root CLI and its `bench` group."""
    from vigil.tools import bench_e2e, bench_runtime, demo, settings_ref, smoke

    app.command("demo")(demo.demo)
    app.command("smoke")(smoke.smoke)
    bench.command("model")(bench_model)
    bench.command("ingest")(bench_ingest)
    bench.command("worker")(bench_worker)
    bench.command("scorer")(bench_scorer)
    bench.command("e2e")(bench_e2e.bench_e2e)
    bench.command("worker-profile")(bench_e2e.bench_worker_profile)
    bench.command("api")(bench_api)
    bench.command("evidence")(bench_evidence)
    bench.command("notify")(bench_notify)
    bench.command("runtime")(bench_runtime.bench_runtime_cmd)
    app.command("settings-doc")(settings_ref.settings_doc)


def bench_notify(
    alerts: Annotated[int, typer.Option(min=10, max=100_000, help="Alerts written")] = 200,
    rate: Annotated[float, typer.Option(min=1, max=10_000, help="Alerts per second")] = 50.0,
) -> None:
    """Delivery latency of `vigil notify`: XADD -> MQTT receipt and -> webhook receipt (p50/p99)."""
    from vigil.tools.bench_notify import run_bench

    typer.echo(run_bench(alerts=alerts, rate=rate))


def bench_ingest(
    seconds: float = typer.Option(8.0, help="Seconds of video per measured file (1280x720 test file made with ffmpeg)"),
    ped2_dir: Path | None = typer.Option(None, help="UCSD Ped2 folder (default: $VIGIL_PED2_DIR, ../shared/data/ucsd_ped2, else the shipped data/ped2-mini)"),
    latency_s: float = typer.Option(10.0, help="Seconds of real-time replay for the latency measurement"),
    write: bool = typer.Option(True, "--write/--no-write", help="Write the results into docs/benchmarks.md"),
) -> None:
    """Decode + resize + encode + publish throughput vs `ffmpeg -benchmark`, bytes per message, latency."""
    from vigil.tools.bench_ingest import run_bench

    run_bench(seconds=seconds, ped2_dir=ped2_dir, latency_s=latency_s, write=write)


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
    from vigil.tools.bench_worker import BenchConfig, run_bench

    counts = tuple(int(c) for c in cameras.split(",") if c.strip())
    cfg = BenchConfig(cameras=counts, fps=fps, seconds=seconds, max_batch=max_batch, max_wait_s=max_wait_s,
                      model_dir=model_dir)  # fmt: skip
    typer.echo(run_bench(cfg, write=write))


def bench_scorer(
    days: Annotated[float, typer.Option(help="Simulated days per camera")] = 7.0,
    cameras: Annotated[int, typer.Option(help="Simulated cameras (different seeds)")] = 3,
    throughput_scores: Annotated[int, typer.Option(help="Scores pushed through Kafka+Redis; 0 = skip")] = 40_000,
    doc: Annotated[Path | None, typer.Option(help="Benchmarks document to update")] = None,
    ped2: Annotated[bool, typer.Option("--ped2/--no-ped2", help="Frame AUC and event precision/recall on UCSD Ped2")] = True,
    data: Annotated[Path | None, typer.Option(help="UCSD Ped2 folder (default: $VIGIL_PED2_DIR, ../shared/data/ucsd_ped2, else the shipped data/ped2-mini)")] = None,
) -> None:
    """Simulator comparison (adaptive vs static), throughput through real Kafka and Redis, and UCSD Ped2."""
    from vigil.tools.bench_scorer import run_bench

    typer.echo(run_bench(days=days, cameras=cameras, throughput_scores=throughput_scores, doc=doc, ped2=ped2, data=data))


def bench_model(
    arch: str = typer.Option("prednet,convlstm-ae,inpaint", help="Architectures to time, comma-separated."),
    model: Path = typer.Option(None, help="A model directory to time instead of the committed one of its "
                                          "architecture (its config.json names the architecture)."),
    batches: str = typer.Option("1,4,16", help="Batch sizes (cameras) to time; batch 1 is always timed."),
    sizes: str = typer.Option("64x96", help="Extra PredNet input sizes HxW timed with the same weights "
                                            "(the short size sweep); '' for none."),
    seconds: float = typer.Option(4.0, help="Seconds of timed calls per point (points are timed round-robin)."),
    write_docs: bool = typer.Option(True, help="Write the model section of docs/benchmarks.md."),
    docs: Path = typer.Option(Path("docs/benchmarks.md"), help="Benchmarks file."),
) -> None:
    """Frames/s of the streaming step of every architecture vs batch size, p90 per call, state memory,
    parameters, FLOPs, % of peak and CPU cores per camera at 10 fps."""
    from vigil.shared.logging import configure_logging

    configure_logging()
    from vigil.tools.bench_model import run_bench

    sizes_hw = [tuple(int(v) for v in s.split("x")) for s in sizes.split(",") if s.strip()]
    archs = [a.strip() for a in arch.split(",") if a.strip()]
    text = run_bench(archs, model, [int(b) for b in batches.split(",") if b.strip()], sizes_hw, seconds,
                     docs if write_docs else None)
    typer.echo(text)


def bench_evidence(
    clip: Annotated[str, typer.Option(help="UCSD Ped2 test clip whose frames are measured")] = "Test001",
    data: Annotated[Path | None, typer.Option(help="UCSD Ped2 folder (default: $VIGIL_PED2_DIR, ../shared/data/ucsd_ped2, else the shipped data/ped2-mini)")] = None,
    write: Annotated[bool, typer.Option("--write/--no-write", help="Write the evidence section of docs/benchmarks.md")] = True,
) -> None:
    """Evidence costs on real frames: ring bytes per frame, snapshot + clip bytes per 1/5/10 s alert, encode time."""
    from vigil.tools.bench_evidence import run_bench

    typer.echo(run_bench(data=data, clip=clip, write=write))


def bench_api(
    alerts: Annotated[int, typer.Option(min=200, max=100_000, help="Alerts stored for the measurement")] = 10_000,
    baseline: Annotated[int, typer.Option(min=60, max=10_000, help="Alerts stored for the baseline (same run)")] = 100,
    requests: Annotated[int, typer.Option(min=20, max=10_000, help="Requests per endpoint and store")] = 200,
    cameras: Annotated[int, typer.Option(min=1, max=500, help="Cameras the alerts are spread over")] = 20,
    write: Annotated[bool, typer.Option("--write/--no-write", help="Write the api section of docs/benchmarks.md")] = True,
) -> None:
    """p50/p99 latency of `vigil api` (alert list, detail, evidence, cameras, console) at 10,000 stored alerts vs 100."""
    from vigil.shared.logging import configure_logging
    from vigil.tools.bench_api import BenchConfig, run_bench

    configure_logging()

    typer.echo(run_bench(BenchConfig(alerts=alerts, baseline=baseline, requests=requests, cameras=cameras), write=write))
