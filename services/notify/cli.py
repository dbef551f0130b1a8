"""Commands of the notify service: `vigil notify` (the service) and `vigil notify replay` (dead letters)."""

from __future__ import annotations

import typer

notify_app = typer.Typer(invoke_without_command=True, no_args_is_help=False,
                         help="Deliver alerts to MQTT and webhooks (VIGIL_NOTIFY_*); `replay` re-sends dead letters.")  # fmt: skip


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.add_typer(notify_app, name="notify")


@notify_app.callback()
def notify(ctx: typer.Context) -> None:
    """Run the notify service: alert stream -> MQTT (vigil/alerts, vigil/<camera>/alert) and signed webhooks."""
    if ctx.invoked_subcommand is not None:
        return
    from vigil.services.notify.settings import NotifySettings
    from vigil.services.notify.transport import build_service
    from vigil.shared.runner import run_service

    raise typer.Exit(run_service(NotifySettings(), build_service, topics="skip"))


@notify_app.command("replay")
def replay(
    target: str = typer.Option("", help="Only dead letters of this webhook name, or `mqtt` (empty: all)"),
    count: int = typer.Option(100, min=1, max=100_000, help="Dead letters to try, oldest first"),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be re-sent, send nothing"),
) -> None:
    """Re-send dead letters to their webhook or MQTT topic (one attempt each); each one delivered is deleted."""
    from vigil.services.notify.replay import replay_dead_letters
    from vigil.services.notify.settings import NotifySettings
    from vigil.shared.logging import configure_logging

    settings = NotifySettings()
    configure_logging(settings.log_level, settings.log_json)
    report = replay_dead_letters(settings, target, count, dry_run)
    typer.echo(report.summary())
    raise typer.Exit(1 if report.failed else 0)
