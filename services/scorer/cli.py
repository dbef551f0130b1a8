"""Commands of the scorer: `vigil scorer`, `vigil alerts tail|list|label`, `vigil bench scorer`."""

from __future__ import annotations

import getpass
import os
import socket
from typing import Annotated

import typer

alerts_app = typer.Typer(help="Follow, list and label alerts in Redis.", no_args_is_help=True)
cameras_app = typer.Typer(help="What the scorer knows of each camera.", no_args_is_help=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this area's commands to the root CLI and the `bench` group."""
    app.command("scorer")(scorer)
    app.command("scorer-reset")(scorer_reset)
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(cameras_app, name="cameras")


def scorer() -> None:
    """Run the scorer: scores from Kafka -> adaptive thresholds -> alert events in Redis (VIGIL_SCORER_*)."""
    from vigil.services.scorer.settings import ScorerSettings
    from vigil.services.scorer.transport import build_service
    from vigil.shared.runner import run_service

    raise typer.Exit(run_service(ScorerSettings(), build_service, topics="skip"))


def scorer_reset(
    cameras: Annotated[list[str], typer.Argument(help="Camera ids whose learned normal level to forget")],
) -> None:
    """Forget cameras' learned scorer state (run with the scorer stopped); they relearn on the next start."""
    from vigil.services.scorer.settings import ScorerSettings
    from vigil.services.scorer.transport import reset_cameras
    from vigil.shared.kafka import KafkaUnavailableError

    try:
        topic = reset_cameras(ScorerSettings(), cameras)
    except KafkaUnavailableError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"reset {len(cameras)} camera(s) on {topic}; they relearn their normal level when the scorer starts")


def _redis():  # noqa: ANN202
    from vigil.shared.settings import RedisSettings

    return RedisSettings().client()


@alerts_app.command("tail")
def alerts_tail(
    camera: Annotated[str | None, typer.Option(help="Only this camera")] = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (resumes where it left off); default: one per "
                                              "user, and per camera with --camera")] = None,
    consumer: Annotated[str, typer.Option(help="Consumer name within the group")] = f"{socket.gethostname()}-{os.getuid()}",
    from_start: Annotated[bool, typer.Option(help="A new group starts at the oldest entry, not at new ones")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the alert JSON")] = False,
) -> None:
    """Follow the alert stream (consumer group, acknowledged), printing each alert change."""
    from vigil.services.scorer import alerts

    client = _redis()
    # A group acknowledges what its consumers read: a shared group would hand each alert to one user only,
    # and a camera filter would acknowledge (swallow) the other cameras' alerts for everyone in the group.
    group = group or f"vigil-cli-{getpass.getuser()}" + (f"-{camera}" if camera else "")
    alerts.ensure_group(client, group, from_start)
    typer.echo(f"following vigil:alerts as {group}/{consumer} (Ctrl-C to stop)", err=True)
    try:
        for _ in alerts.tail(client, group, consumer, lambda a: typer.echo(a.to_json() if as_json else alerts.format_alert(a)), camera):
            pass
    except KeyboardInterrupt:
        pass


@alerts_app.command("list")
def alerts_list(
    since: Annotated[str, typer.Option(help="30m, 2h, 1d or an ISO time")] = "1d",
    camera: Annotated[str | None, typer.Option(help="Only this camera")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print the alert JSON")] = False,
) -> None:
    """List alert changes since a time."""
    from vigil.services.scorer import alerts

    try:
        since_ms = alerts.parse_since(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    client = _redis()
    labels = alerts.labels(client)
    for a in alerts.history(client, since_ms, camera, limit):
        typer.echo(a.to_json() if as_json else alerts.format_alert(a, labels))


@alerts_app.command("label")
def alerts_label(
    alert_id: Annotated[str, typer.Argument(help="Alert id, e.g. cam-1:1234")],
    kind: Annotated[str, typer.Option(help="false_positive, true_positive, bike, vehicle, skater, ...")],
    by: Annotated[str, typer.Option(help="Who labels")] = os.environ.get("USER", ""),
    note: Annotated[str, typer.Option(help="Free text")] = "",
) -> None:
    """Label an alert (kept in Redis for the supervised classifier)."""
    from vigil.services.scorer import alerts
    from vigil.services.scorer.sink import changes_key

    client = _redis()
    if not client.exists(changes_key(alert_id)):
        typer.echo(f"warning: no published alert {alert_id!r} is known (labelled anyway)", err=True)
    try:
        alerts.label(client, alert_id, kind, by, note)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"{alert_id}: {kind}")




@cameras_app.command("status")
def cameras_status(camera: str = typer.Option("", help="Only this camera")) -> None:
    """Per camera: scoring mode (calibrated / online), status, score and threshold, the level it has followed
    away from its calibration (the daily cycle), model, last frame."""
    from vigil.shared.redis_keys import camera_hash

    client = _redis()
    keys = [camera_hash(camera)] if camera else sorted(client.scan_iter(match=camera_hash("*"), count=1000))
    if not keys:
        typer.echo("no camera has been scored yet (is the scorer running? `vigil scorer`)")
        return
    for key in keys:
        h = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        if not h:
            typer.echo(f"{key.decode() if isinstance(key, bytes) else key}: unknown")
            continue
        name = (key.decode() if isinstance(key, bytes) else key).split(":", 2)[-1]
        mode = h.get("scoring_mode", "")
        why = {"online": " (no calibration for its model: learning its normal level; `vigil calibrate --camera`)",
               "calibrated": ""}.get(mode, "")  # fmt: skip
        shown = h.get("level") and h.get("status") != "learning"  # a camera still learning follows no level yet
        level = f"; level {h['level'].replace(':', ' ').replace(',', ', ')} (log units from its normal)" if shown else ""
        typer.echo(f"{name}: {h.get('status', '?')}, scoring {mode or '?'}{why}; score {h.get('score', '-')} / "
                   f"threshold {h.get('threshold', '-')}{level}; model {h.get('model', '?')}; last frame "
                   f"{h.get('last_frame_time', '?')}{'; alert ' + h['alert_id'] if h.get('alert_id') else ''}")
