"""`vigil ingest` and `vigil bench ingest`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this area's commands to the root CLI and the `bench` group."""
    app.command("ingest")(ingest)


def ingest(
    cameras: Path | None = typer.Option(None, "--cameras", "-c", help="Cameras YAML file (default: VIGIL_CAMERAS_FILE, else ./cameras.yaml)"),
    realtime: bool = typer.Option(True, "--realtime/--fast", help="Read local files at native speed or as fast as possible"),
    strict: bool = typer.Option(False, "--strict", help="Refuse to start if any camera entry is invalid"),
    check: bool = typer.Option(False, "--check", help="Only validate the cameras file and exit"),
    metrics_port: int | None = typer.Option(None, help="Serve /metrics and /healthz on this port"),
) -> None:
    """Read cameras (RTSP, files, HTTP) and publish frames to Kafka until SIGTERM."""
    from vigil.services.ingest.settings import IngestSettings
    from vigil.services.ingest.transport import build_service
    from vigil.shared.cameras import ConfigError, load_cameras
    from vigil.shared.runner import run_service

    if check:
        try:
            result = load_cameras(cameras or IngestSettings().cameras_file)
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        for cam in result.cameras:
            typer.echo(f"ok     {cam.id}: {cam.masked_url} -> {cam.height}x{cam.width}x{cam.channels} {cam.encoding} @ {cam.fps:g} fps")
        for rejected in result.errors:
            typer.echo(f"ERROR  {rejected.who}: {rejected.message}", err=True)
        raise typer.Exit(2 if result.errors else 0)
    overrides: dict[str, object] = {"realtime": realtime, "strict": strict}
    if cameras is not None:
        overrides["cameras"] = {"file": cameras}
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    settings = IngestSettings(**overrides)
    raise typer.Exit(run_service(settings, build_service, topics="try" if settings.ensure_topics else "skip"))


