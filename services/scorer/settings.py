"""Scorer settings (environment prefix ``VIGIL_SCORER_``), with per-camera overrides from the cameras file.

The scoring and event parameters are the scorer's own :class:`ScoringParams` and :class:`EventParams`
(their defaults, bounds and descriptions are defined there, once), nested here as
``VIGIL_SCORER_SCORING__<FIELD>`` and ``VIGIL_SCORER_EVENTS__<FIELD>``. A camera changes any of them with
``scorer:`` in the cameras file (``VIGIL_CAMERAS_FILE``, see :mod:`vigil.shared.cameras`).

Deprecated for one release (each warns): the flat names ``VIGIL_SCORER_GRACE_FRAMES``, ``VIGIL_SCORER_K``
... (see :data:`DEPRECATED_NAMES`) and ``VIGIL_SCORER_CAMERA_OVERRIDES`` (JSON camera -> {field: value});
the cameras file wins over it for a camera that both set.

Example:
    >>> import pathlib, tempfile
    >>> cameras = pathlib.Path(tempfile.mkdtemp()) / "cameras.yaml"
    >>> _ = cameras.write_text("cameras:\\n  - {id: cam-7, url: rtsp://cam-7/live, scorer: {grace_frames: 50, k: 3}}\\n")
    >>> s = ScorerSettings(scoring=ScoringParams(grace_frames=100), cameras={"file": cameras})
    >>> s.camera_params("cam-7").scoring.grace_frames, s.camera_params("cam-7").events.k
    (50, 3)
    >>> s.camera_params("cam-1").scoring.grace_frames, s.camera_params("cam-1").events.k  # the default k
    (100, 1)
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.model.alerting import ZoneMask
from vigil.services.scorer.calibrations import CalibrationBook
from vigil.services.scorer.state import CameraParams
from vigil.shared.cameras import ScorerOverrides
from vigil.shared.scorer_params import EventParams, ScoringParams
from vigil.shared.settings import ServiceSettings, apply_renamed, merge_per_camera, moved_into

log = logging.getLogger(__name__)
P = TypeVar("P", ScoringParams, EventParams)

DEPRECATED_NAMES = moved_into("VIGIL_SCORER_", "scoring", {f.name: f.name for f in fields(ScoringParams)}) | moved_into(
    "VIGIL_SCORER_", "events", {f.name: f.name for f in fields(EventParams)}
)
"""Flat names of the previous release (``VIGIL_SCORER_GRACE_FRAMES``, ``grace_frames=``) -> their nested place."""


class KindSettings(BaseModel):
    """The online kind classifier (``VIGIL_SCORER_KINDS__<FIELD>``, docs/classifier.md). The thresholds are the
    library's defaults, chosen before any Ped2 label was looked at (see docs/classifier.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Predict a kind for every alert change from operators' labels")
    suppress: bool = Field(False, description="Mark as suppressed (not notified, kept in the record) an alert "
                           "predicted as a false-positive kind with high confidence. Off by default: on Ped2's mini "
                           "set it would have hidden 11 of 20 alerted bike segments (docs/classifier.md)")  # fmt: skip
    min_labels: int = Field(10, ge=1, le=100_000, description="Labels needed before any kind is predicted")
    min_per_kind: int = Field(3, ge=1, le=100_000, description="Labels of a kind needed before it is predicted")
    suppress_confidence: float = Field(0.9, ge=0.5, le=1.0, description="Probability needed to suppress")
    score_margin: float = Field(1.5, ge=1.0, le=100.0, description="Never suppress an alert whose peak score is "
                                "beyond this many times the highest false positive labelled")  # fmt: skip
    per_camera: bool = Field(False, description="Also learn one classifier per camera (from that camera's labels); "
                             "a camera's own answers once it has `min_labels` labels, the site's before")  # fmt: skip
    max_camera_classifiers: int = Field(100, ge=1, le=10_000, description="Cameras with their own classifier (per_camera); "
                                        "labels of further cameras teach only the site's (counted)")  # fmt: skip
    refresh_s: float = Field(10.0, ge=0.5, le=3600, description="How often new labels are read")
    features_ttl_s: int = Field(30 * 86_400, ge=60, le=10 * 365 * 86_400, description="How long an alert's "
                                "features stay in Redis to learn from a later label")  # fmt: skip


class ScorerSettings(ServiceSettings):
    """Settings of `vigil scorer`; every scoring and event field can be overridden per camera."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_SCORER_", extra="ignore", env_nested_delimiter="__")

    app_id: str = Field("vigil-scorer", min_length=1, max_length=100, description="Faust app id = consumer group")
    datadir: Path = Field(Path(".state/scorer"), description="Faust data directory")
    model_dir: Path | None = Field(None, description="Model directory whose card calibrates the cameras without "
                                   "their own `model:` (None = the packaged model), as the worker's")  # fmt: skip
    scoring: ScoringParams = Field(default_factory=ScoringParams, description="Scoring parameters of every camera")
    events: EventParams = Field(default_factory=EventParams, description="Event rules of every camera")
    camera_overrides: dict[str, ScorerOverrides] = Field(
        default_factory=dict,
        description="Per-camera overrides: the cameras file's `scorer:` entries over VIGIL_SCORER_CAMERA_OVERRIDES "
        "(deprecated JSON camera -> {field: value})",
    )
    kinds: KindSettings = Field(default_factory=KindSettings, description="Alert kinds from operators' labels")
    # outputs
    outbox_limit: int = Field(1000, ge=1, le=1_000_000, description="Unconfirmed alert changes kept per camera")
    snapshots: bool = Field(True, description="Write heat-map snapshots for alerts")
    snapshot_ttl_s: int = Field(7 * 86_400, ge=60, description="TTL of snapshot keys")
    stream_maxlen: int = Field(100_000, ge=100, description="Approximate cap of the vigil:alerts stream")
    dedupe_ttl_s: int = Field(30 * 86_400, ge=3600, description="How long published change ids are remembered")
    camera_ttl_s: int = Field(7 * 86_400, ge=60, description="A camera hash expires this long after its last score")
    timeline_interval_s: float = Field(1.0, ge=0.1, le=3600, description="One point of a camera's score timeline "
                                       "(vigil:timeline:<camera>) per interval: the interval's highest score")
    timeline_maxlen: int = Field(43_200, ge=10, le=10_000_000, description="Approximate cap of each camera's "
                                 "timeline stream (43,200 = 12 h at 1 s, about 3 MB of Redis per camera)")
    # processing
    batch_size: int = Field(500, ge=1, le=100_000, description="Scores handled per batch (one Redis round trip)")
    batch_within_s: float = Field(0.05, gt=0, le=10, description="Max wait to fill a batch")
    retry_min_s: float = Field(0.5, gt=0, le=60, description="First Redis retry delay (doubles up to retry_max_s)")
    session_timeout_s: float = Field(30.0, ge=6, le=300, description="Kafka consumer session timeout (failover time)")
    retry_max_s: float = Field(10.0, gt=0, le=600, description="Largest Redis retry delay")
    # bounds
    max_cameras: int = Field(10_000, ge=1, le=1_000_000, description="Cameras in memory at most; a new one beyond is "
                             "dead-lettered")  # fmt: skip
    known_cameras_only: bool = Field(False, description="Dead-letter scores of cameras not in the cameras file")
    idle_evict_s: float = Field(3600.0, ge=60, le=30 * 86_400, description="Drop an idle camera's state from memory "
                                "after this (it stays in the state table)")  # fmt: skip
    max_future_s: float = Field(3600.0, ge=1, le=7 * 86_400, description="Dead-letter scores captured further "
                                "ahead of this scorer's clock")  # fmt: skip

    @model_validator(mode="before")
    @classmethod
    def _deprecated_flat_names(cls, data: Any) -> Any:
        return apply_renamed(cls, data, DEPRECATED_NAMES)

    @model_validator(mode="after")
    def _merge_camera_overrides(self) -> ScorerSettings:
        for overrides in self.camera_overrides.values():  # the deprecated variable: errors are fatal, as before
            self._merged(overrides)
        from_file = {cam: o for cam, o in self.cameras.per_camera("scorer").items() if self._usable(cam, o)}
        self.camera_overrides = merge_per_camera(from_file, self.camera_overrides, "VIGIL_SCORER_CAMERA_OVERRIDES", "scorer")
        return self

    @model_validator(mode="after")
    def _warn_unused_margin(self) -> ScorerSettings:
        """``threshold_margin`` is a calibration parameter: a running scorer uses its calibration's stored
        threshold, so setting it here changes nothing. Say so rather than ignore it silently."""
        default = ScoringParams().threshold_margin
        where = (["VIGIL_SCORER_SCORING__THRESHOLD_MARGIN"] if self.scoring.threshold_margin != default else []) + [
            f"camera {cam}" for cam, o in self.camera_overrides.items() if getattr(o, "threshold_margin", None) is not None]
        if where:
            log.warning("threshold_margin is set (%s) but a running scorer does not read it: a calibration carries its "
                        "threshold. Use threshold_offset, or recalibrate with `vigil calibrate --margin`.", ", ".join(where))
        return self

    def _usable(self, camera_id: str, overrides: ScorerOverrides) -> bool:
        """Whether a camera's overrides from the cameras file fit the site's parameters (else logged)."""
        try:
            self._merged(overrides)
        except ValueError as exc:
            log.error("camera %s: scorer overrides in %s rejected, the site's parameters apply: %s",
                      camera_id, self.cameras.file, exc)  # fmt: skip
            return False
        return True

    def _merged(self, overrides: ScorerOverrides | None) -> CameraParams:
        values = overrides.model_dump(exclude_none=True) if overrides is not None else {}
        return CameraParams(
            scoring=_replace(self.scoring, values),
            events=_replace(self.events, values),
            outbox_limit=self.outbox_limit,
            snapshots=self.snapshots,
            peak_maps=self.kinds.enabled,
        )

    def camera_params(self, camera_id: str) -> CameraParams:
        """The merged parameters of one camera (the site's parameters + its overrides + its zones)."""
        params = self._merged(self.camera_overrides.get(camera_id))
        zones = self._zones().get(camera_id)
        return params if zones is None else replace(params, zones=zones)

    def _zones(self) -> dict[str, ZoneMask]:
        if "_zone_masks" not in self.__dict__:
            found = self.cameras.per_camera("zones")
            self.__dict__["_zone_masks"] = {cam: ZoneMask([list(map(tuple, p)) for p in z.include],
                                                          [list(map(tuple, p)) for p in z.exclude])
                                            for cam, z in found.items()}  # fmt: skip
        return self.__dict__["_zone_masks"]

    def calibration_book(self) -> CalibrationBook:
        """Where each camera's calibration comes from (its own file, its model's card, the default model's)."""
        from vigil.model.streaming import DEFAULT_MODEL_DIR

        return CalibrationBook(self.cameras.per_camera("calibration"), self.cameras.per_camera("model"),
                               Path(self.model_dir or DEFAULT_MODEL_DIR))


def _replace(params: P, values: dict[str, Any]) -> P:
    """``params`` with the entries of ``values`` that are its fields (validated by its ``__post_init__``)."""
    names = {f.name for f in fields(params)}
    return replace(params, **{k: v for k, v in values.items() if k in names})
