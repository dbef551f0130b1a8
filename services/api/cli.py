"""The `vigil api` command."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.command("api")(api)


def api() -> None:
    """Run the HTTP API: cameras, alerts, labels, live events, clip scoring (VIGIL_API_*; docs/api.md)."""
    from vigil.services.api.settings import ApiSettings
    from vigil.services.api.transport import build_service
    from vigil.shared.runner import run_service

    raise typer.Exit(run_service(ApiSettings(), build_service, topics="skip"))
