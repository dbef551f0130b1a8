"""Commands ``vigil retrain`` and ``vigil models list|switch|rollback`` (model versions of a site, issue #17)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

STORE_HELP = "Model store root (VIGIL_MODEL_STORE, default ./models): <root>/<name>/current is what cameras run."


def _store(root: Path | None) -> object:
    from vigil.model.versions import ModelStore

    return ModelStore(Path(root or os.environ.get("VIGIL_MODEL_STORE", "models")))


def retrain(name: str = typer.Argument(..., help="Model name in the store (usually the camera id)."),
            footage: Path = typer.Option(..., exists=True, file_okay=False, help="Folder of the camera's normal footage."),
            store: Path | None = typer.Option(None, help=STORE_HELP),
            work: Path = typer.Option(Path(".state/retrain"), help="Scratch folder (candidate, checkpoints)."),
            init_from: Path | None = typer.Option(None, exists=True, file_okay=False,
                                                  help="Start from this model (default: the current version)."),
            freeze: list[int] = typer.Option([], help="Layer index to keep fixed (repeatable)."),
            minutes: float = typer.Option(10.0, min=0.1, max=1440, help="Training time budget."),
            epochs: int = typer.Option(20, min=1, max=1000, help="Maximum epochs."),
            n_val: int = typer.Option(1, min=1, max=100, help="Footage clips held out for the gate."),
            max_alerts: int = typer.Option(0, min=0, help="Alerts allowed on the held-out footage."),
            error_ratio: float = typer.Option(1.10, min=0.5, max=10, help="Largest candidate/running mean error."),
            labelled: Path | None = typer.Option(None, exists=True, file_okay=False,
                                                 help="The site's labelled set (videos + labels.json): gate on it "
                                                 "instead of the last day's false-alert rate."),
            auc_drop: float = typer.Option(0.02, min=0, max=1, help="Largest fall of the labelled set's frame AUC."),
            max_alert_rate: float = typer.Option(1.0, min=0, max=3600,
                                                 help="Largest false alerts per hour on the last day's footage."),
            last_day_hours: float = typer.Option(24.0, min=0.1, max=24 * 365, help="What 'the last day' spans."),
            switch: bool = typer.Option(True, help="Switch the cameras to a version that passes.")) -> None:
    """Fine-tune, calibrate, gate, register and switch a model on a camera's own normal footage."""
    from vigil.model.retrain import RetrainPlan
    from vigil.model.retrain import retrain as run
    from vigil.model.versions import VersionError

    plan = RetrainPlan(name, footage, _store(store), work / name, init_from, list(freeze), minutes, epochs, n_val,
                       max_alerts, error_ratio, labelled, auc_drop, max_alert_rate, last_day_hours,
                       switch=switch)  # fmt: skip
    try:
        report = run(plan)
    except (VersionError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"retrain failed: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(report, indent=1))
    if not report["registered"]:
        typer.echo(report["why"], err=True)
        raise typer.Exit(1)


models_app = typer.Typer(help="Model versions: list, switch, roll back.", no_args_is_help=True)


@models_app.command("list")
def list_versions(name: str, store: Path | None = typer.Option(None, help=STORE_HELP)) -> None:
    """Stored versions (the current one marked) and the history of registrations, rejections and switches."""
    s = _store(store)
    current = s.current(name)
    for v in s.versions(name):
        typer.echo(f"{'*' if v == current else ' '} {v}  {s.path(name, v)}")
    for e in s.history(name):
        typer.echo(f"  {e['time']}  {e['action']:<8} {e['version']}  {e.get('reason', '')}")


@models_app.command("switch")
def switch_version(name: str, version: str, store: Path | None = typer.Option(None, help=STORE_HELP)) -> None:
    """Point the cameras of ``name`` at a stored version."""
    from vigil.model.versions import VersionError

    try:
        _store(store).switch(name, version, reason="by hand")
    except VersionError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{name} now runs {version}")


@models_app.command("rollback")
def rollback(name: str, to: str | None = typer.Option(None, help="Version (default: the one before the current)."),
             store: Path | None = typer.Option(None, help=STORE_HELP)) -> None:
    """Switch back to the previous version (one command)."""
    from vigil.model.versions import VersionError

    try:
        version = _store(store).rollback(name, to)
    except VersionError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{name} rolled back to {version}")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add ``vigil retrain`` and ``vigil models`` to the root CLI."""
    app.command("retrain")(retrain)
    app.add_typer(models_app, name="models")
