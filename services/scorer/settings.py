"""Scorer settings (environment prefix ``VIGIL_SCORER_``), with per-camera overrides.

Example:
    >>> s = ScorerSettings(grace_frames=100, fading_factor=0.05, camera_overrides={"cam-7": {"grace_frames": 50, "k": 3}})
    >>> s.camera_params("cam-7").scoring.grace_frames, s.camera_params("cam-7").events.k
    (50, 3)
    >>> s.camera_params("cam-1").scoring.grace_frames
    100
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.services.scorer.events import EventParams
from vigil.services.scorer.scoring import ScoringParams
from vigil.services.scorer.state import CameraParams
from vigil.shared.settings import ServiceSettings

_SCORING = ("fading_factor", "grace_frames", "q", "min_threshold", "min_std", "protect", "max_protected_frames")
_EVENTS = ("k", "n", "m", "min_duration_s", "cooldown_s", "max_length_s", "update_interval_s")


class ScorerSettings(ServiceSettings):
    """Settings of `vigil scorer`; every scoring and event field can be overridden per camera."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_SCORER_", extra="ignore", env_nested_delimiter="__")

    app_id: str = Field("vigil-scorer", min_length=1, max_length=100, description="Faust app id = consumer group")
    datadir: Path = Field(Path(".state/scorer"), description="Faust data directory")
    # scoring (see scoring.ScoringParams)
    fading_factor: float = Field(0.001, gt=0, le=1, description="EW weight of a new frame in the normal level")
    grace_frames: int = Field(3000, ge=2, le=1_000_000, description="Frames learned before a new camera can alert (>= 2/fading_factor)")
    q: float = Field(0.998, gt=0.5, lt=1, description="Quantile of past scores used as the threshold")
    min_threshold: float = Field(0.99, ge=0, le=1, description="Floor of the threshold (score units)")
    min_std: float = Field(0.03, gt=0, le=5, description="Floor of the std of the log error")
    protect: bool = Field(True, description="Do not learn the normal level from anomalous frames")
    max_protected_frames: int = Field(18_000, ge=1, description="Learn again after this many protected frames in a row")
    # events (see events.EventParams)
    k: int = Field(5, ge=1, le=1000, description="Open after k of the last n frames are above")
    n: int = Field(10, ge=1, le=1000, description="Window of the k-of-n rule")
    m: int = Field(20, ge=1, le=10_000, description="Close after m frames in a row below")
    min_duration_s: float = Field(0.5, ge=0, le=3600, description="Events shorter than this are not announced")
    cooldown_s: float = Field(10.0, ge=0, le=86_400, description="No new event this soon after a close")
    max_length_s: float = Field(600.0, gt=0, le=86_400, description="Longer events are closed and re-announced")
    update_interval_s: float = Field(2.0, ge=0, le=3600, description="At most one peak update per interval")
    camera_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="camera_id -> {field: value} for any scoring/event field (JSON in the env)"
    )
    # outputs
    outbox_limit: int = Field(1000, ge=1, le=1_000_000, description="Unconfirmed alert changes kept per camera")
    snapshots: bool = Field(True, description="Write heat-map snapshots for alerts")
    snapshot_ttl_s: int = Field(7 * 86_400, ge=60, description="TTL of snapshot keys")
    stream_maxlen: int = Field(100_000, ge=100, description="Approximate cap of the vigil:alerts stream")
    dedupe_ttl_s: int = Field(30 * 86_400, ge=3600, description="How long published change ids are remembered")
    # processing
    batch_size: int = Field(500, ge=1, le=100_000, description="Scores handled per batch (one Redis round trip)")
    batch_within_s: float = Field(0.05, gt=0, le=10, description="Max wait to fill a batch")
    retry_min_s: float = Field(0.5, gt=0, le=60, description="First Redis retry delay (doubles up to retry_max_s)")
    session_timeout_s: float = Field(30.0, ge=6, le=300, description="Kafka consumer session timeout (failover time)")
    retry_max_s: float = Field(10.0, gt=0, le=600, description="Largest Redis retry delay")

    @model_validator(mode="after")
    def _check_overrides(self) -> ScorerSettings:
        known = set(_SCORING) | set(_EVENTS)
        for cam, over in self.camera_overrides.items():
            if unknown := set(over) - known:
                raise ValueError(f"camera_overrides[{cam!r}] has unknown fields {sorted(unknown)}")
            self.camera_params(cam)  # validates the values
        self.camera_params("")
        return self

    def camera_params(self, camera_id: str) -> CameraParams:
        """The merged parameters of one camera (global defaults + its overrides)."""
        values = {f: getattr(self, f) for f in (*_SCORING, *_EVENTS)} | self.camera_overrides.get(camera_id, {})
        return CameraParams(
            scoring=ScoringParams(**{f: values[f] for f in _SCORING}),
            events=EventParams(**{f: values[f] for f in _EVENTS}),
            outbox_limit=self.outbox_limit,
            snapshots=self.snapshots,
        )
