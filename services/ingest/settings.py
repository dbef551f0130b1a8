"""Settings of the ingest service (environment prefix ``VIGIL_INGEST_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil.shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """Settings of the ingest service (environment prefix ``VIGIL_INGEST_``)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_INGEST_", extra="ignore")

    cameras_file: Path = Field(Path("cameras.yaml"), description="The cameras YAML file")
    realtime: bool = Field(True, description="Read local files at native speed (False = as fast as possible)")
    strict: bool = Field(False, description="Refuse to start if any camera entry is invalid")
    ensure_topics: bool = Field(True, description="Create the Vigil topics at start if missing")
    buffer_frames: int = Field(256, ge=1, le=100_000, description="Frames held while Kafka is slow or down")
    max_frame_age_s: float = Field(10.0, gt=0, le=3600, description="Frames older than this are not sent")
    shutdown_timeout_s: float = Field(4.0, gt=0, le=60, description="Time to flush on SIGTERM")
    # producer, tuned for many small (~22 KB) frames per second that must stay in order per camera
    acks: Literal["all", "1", "0"] = Field("all", description="'all' is needed by idempotence")
    idempotence: bool = Field(True, description="No duplicates or reordering when the producer retries")
    linger_ms: int = Field(10, ge=0, le=1000, description="Wait this long to fill a batch")
    batch_size: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024, description="Bytes per partition batch")
    compression: Literal["none", "lz4", "gzip", "snappy", "zstd"] = Field("lz4", description="Batch compression")
    max_inflight_bytes: int = Field(16 * 1024 * 1024, ge=1024 * 1024, description="Bytes given to the producer, not yet acked")
    max_block_ms: int = Field(1000, ge=0, le=60_000, description="How long send() may block when Kafka is down")
    delivery_timeout_ms: int = Field(15_000, ge=1000, description="A record not acknowledged by then is dropped")
    producer_request_timeout_ms: int = Field(10_000, ge=1000, description="One produce request's timeout")
    bootstrap_timeout_ms: int = Field(3000, ge=100, description="Creating the producer gives up after this (retried)")

    def producer_kwargs(self) -> dict[str, Any]:
        """kafka-python KafkaProducer arguments for this workload."""
        return {
            "acks": self.acks if self.acks == "all" else int(self.acks),
            "enable_idempotence": self.idempotence and self.acks == "all",
            "linger_ms": self.linger_ms,
            "batch_size": self.batch_size,
            "compression_type": None if self.compression == "none" else self.compression,
            "max_block_ms": self.max_block_ms,
            "delivery_timeout_ms": self.delivery_timeout_ms,
            "request_timeout_ms": self.producer_request_timeout_ms,
            "max_in_flight_requests_per_connection": 5,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
        }
