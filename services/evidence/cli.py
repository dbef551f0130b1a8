"""Commands of this service (placeholder until the service lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
