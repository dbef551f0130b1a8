"""Settings of the ingest service (environment prefix ``VIGIL_INGEST_``).

The cameras come from the site's cameras file (``VIGIL_CAMERAS_FILE``, or ``vigil ingest --cameras``);
the Kafka producer is the shared :class:`~vigil.shared.settings.ProducerSettings`, nested as
``VIGIL_INGEST_PRODUCER__<FIELD>``. Deprecated for one release (each warns): ``VIGIL_INGEST_CAMERAS_FILE``
and the flat producer names ``VIGIL_INGEST_LINGER_MS`` ... (see :data:`DEPRECATED_NAMES`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.shared.settings import Moved, ProducerSettings, ServiceSettings, apply_renamed, moved_into

DEFAULT_CAMERAS_FILE = Path("cameras.yaml")
_PRODUCER_FIELDS = ("acks", "idempotence", "linger_ms", "batch_size", "compression", "max_block_ms",
                    "delivery_timeout_ms", "bootstrap_timeout_ms")  # fmt: skip
DEPRECATED_NAMES = {"cameras_file": Moved(("cameras", "file"), "VIGIL_CAMERAS_FILE")} | moved_into(
    "VIGIL_INGEST_", "producer", {name: name for name in _PRODUCER_FIELDS} | {"producer_request_timeout_ms": "request_timeout_ms"}
)
"""Names of the previous release (``VIGIL_INGEST_LINGER_MS``, ``cameras_file=``) -> their new place."""


class IngestSettings(ServiceSettings):
    """Settings of the ingest service (environment prefix ``VIGIL_INGEST_``)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_INGEST_", extra="ignore", env_nested_delimiter="__")

    realtime: bool = Field(True, description="Read local files at native speed (False = as fast as possible)")
    strict: bool = Field(False, description="Refuse to start if any camera entry is invalid")
    ensure_topics: bool = Field(True, description="Create the Vigil topics at start if missing")
    buffer_frames: int = Field(256, ge=1, le=100_000, description="Frames held while Kafka is slow or down")
    max_frame_age_s: float = Field(10.0, gt=0, le=3600, description="Frames older than this are not sent")
    shutdown_timeout_s: float = Field(4.0, gt=0, le=60, description="Time to flush on SIGTERM")
    max_inflight_bytes: int = Field(16 * 1024 * 1024, ge=1024 * 1024, description="Bytes given to the producer, not yet acked")
    producer: ProducerSettings = Field(default_factory=ProducerSettings, description="The Kafka producer")

    @model_validator(mode="before")
    @classmethod
    def _deprecated_flat_names(cls, data: Any) -> Any:
        return apply_renamed(cls, data, DEPRECATED_NAMES)

    @property
    def cameras_file(self) -> Path:
        """The cameras file: ``cameras.file`` (VIGIL_CAMERAS_FILE or --cameras), else ./cameras.yaml."""
        return self.cameras.file or DEFAULT_CAMERAS_FILE
