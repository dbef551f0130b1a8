"""Settings of the worker service (environment prefix ``VIGIL_WORKER_``).

A camera's own model is its ``model:`` in the cameras file (``VIGIL_CAMERAS_FILE``, see
:mod:`vigil.shared.cameras`), which the worker reads without the camera secrets. The JSON variable
``VIGIL_WORKER_CAMERA_MODELS`` of the previous release still works for one release, with a warning; the
cameras file wins for a camera that both set.

Example:
    VIGIL_WORKER_MAX_BATCH=32 VIGIL_WORKER_MAX_WAIT_S=0.02 VIGIL_CAMERAS_FILE=/config/cameras.yaml vigil worker
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.shared.settings import ServiceSettings, merge_per_camera

DEFAULT_PREDICTOR = "vigil.model.streaming:StreamingPredictor"


class WorkerSettings(ServiceSettings):
    """Everything `vigil worker` needs; Kafka, Redis and topics come from their own prefixes."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_WORKER_", extra="ignore")

    app_id: str = Field("vigil-worker", min_length=1, max_length=128,
                        description="Faust app id = Kafka consumer group shared by all workers")
    model_dir: Path | None = Field(None, description="Model directory; None = the packaged default model")
    camera_models: dict[str, Path] = Field(
        default_factory=dict, description="Per-camera models: the cameras file's `model:` entries over "
        "VIGIL_WORKER_CAMERA_MODELS (deprecated JSON camera id -> model directory)",
    )  # fmt: skip
    predictor: str = Field(DEFAULT_PREDICTOR, pattern=r"^[\w.]+:\w+$",
                           description="Import path 'module:Class' of the streaming predictor class")
    max_batch: int = Field(32, ge=1, le=1024, description="Most frames taken from Kafka per batch")
    max_wait_s: float = Field(0.02, gt=0, le=5.0, description="Longest wait for a batch to fill (seconds)")
    warmup_frames: int = Field(10, ge=0, le=10_000, description="Frames marked warmup after a state reset")
    max_seq_gap: int = Field(5, ge=0, le=100_000,
                             description="Missing frames tolerated before a camera's state is reset")
    staleness_s: float = Field(5.0, ge=0, le=3600,
                               description="Skip frames older than this at the worker (0 = never skip)")
    heatmap: bool = Field(True, description="Attach the uint8 error heat map to every score")
    motion: bool = Field(True, description="Compute the optical-flow motion feature (~5 ms of CPU per 120x180 frame); "
                         "false = PredNet's features only (motion_max 0), for CPU-bound workers")
    model_poll_s: float = Field(5.0, ge=0, le=3600, description="Model directory poll interval (0 = no hot swap)")
    session_timeout_s: float = Field(30.0, ge=1, le=600, description="Kafka consumer session timeout")
    heartbeat_s: float = Field(3.0, gt=0, le=60, description="Kafka consumer heartbeat interval")
    commit_interval_s: float = Field(1.0, gt=0, le=60, description="Offset commit interval")
    datadir: Path = Field(Path(tempfile.gettempdir()) / "vigil-worker",
                          description="Faust data directory (no tables are kept; holds only faust's files)")
    offset_reset: str = Field("latest", pattern=r"^(earliest|latest)$",
                              description="Where a new consumer group starts reading frames")

    @model_validator(mode="after")
    def _merge_camera_models(self) -> WorkerSettings:
        from_file = self.cameras.per_camera("model")
        self.camera_models = merge_per_camera(from_file, self.camera_models, "VIGIL_WORKER_CAMERA_MODELS", "model")
        return self

    def model_path(self) -> Path:
        """The default model directory (the packaged trained model when unset)."""
        if self.model_dir is not None:
            return self.model_dir
        from vigil.model.streaming import DEFAULT_MODEL_DIR

        return Path(DEFAULT_MODEL_DIR)
