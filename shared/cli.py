"""Commands about the shared infrastructure: `vigil topics`."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add `topics` to the root CLI."""
    app.command("topics")(topics)


def topics() -> None:
    """Create Vigil's topics (frames and scores co-partitioned, camera-status, DLQ) if missing."""
    from vigil.shared.kafka import ensure_vigil_topics
    from vigil.shared.logging import configure_logging
    from vigil.shared.settings import KafkaSettings, TopicSettings

    configure_logging()
    t = TopicSettings()
    ensure_vigil_topics(KafkaSettings(), t)
    typer.echo(f"topics ready: {t.frames}, {t.scores} ({t.partitions} partitions), {t.camera_status}, {t.dlq}")

