"""Commands of the evidence service: `vigil evidence`."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.command("evidence")(evidence)


def evidence() -> None:
    """Run the evidence service: frames ring -> snapshot and clip of every alert in Redis (VIGIL_EVIDENCE_*)."""
    from vigil.services.evidence.settings import EvidenceSettings
    from vigil.services.evidence.transport import build_service
    from vigil.shared.runner import run_service

    raise typer.Exit(run_service(EvidenceSettings(), build_service, topics="try"))
