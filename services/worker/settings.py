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
from typing import Literal

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
    runtime: Literal["keras", "onnx", "openvino", "xla"] = Field(
        "keras", description="Runtime of the model step: keras (the model as loaded), xla (the Keras step compiled "
        "by XLA), onnx (ONNX Runtime) or openvino, on the model's export (docs/runtimes.md)",
    )  # fmt: skip
    runtime_quantize: Literal["none", "int8", "fp16", "bf16"] = Field(
        "none", description="Which export the onnx/openvino runtime steps: none (fp32), int8 (made by `vigil export "
        "--quantize int8` only), fp16 (openvino), bf16 (openvino, on CPUs with AMX or AVX-512 BF16; fp32 elsewhere)",
    )  # fmt: skip
    runtime_export_root: Path = Field(Path(".state/export"), description="Exports are looked up (and made) under "
                                      "ROOT/<model_id>-<version>/<runtime>-<quantize>, per model and weights version")
    runtime_auto_export: bool = Field(True, description="Export a model on the fly when its onnx/openvino export is "
                                      "missing (fp32/fp16/bf16; needs TensorFlow and tf2onnx); false: refuse to start and "
                                      "name the `vigil export` command")  # fmt: skip
    runtime_threads: int = Field(0, ge=0, le=256, description="Intra-op threads of ONNX Runtime / OpenVINO "
                                 "(0: the runtime's default, one per core)")
    runtime_streams: int = Field(0, ge=0, le=64, description="OpenVINO streams: requests run at once, each on its "
                                 "share of the cores; an even batch is split across them in requests of at most 8 "
                                 "cameras (0: 2 where the worker may use 2 or more cores, else 1; 1: never split)")
    max_batch: int = Field(32, ge=1, le=1024, description="Most frames taken from Kafka per batch")
    max_wait_s: float = Field(0.02, gt=0, le=5.0, description="Longest wait for a batch to fill (seconds)")
    warmup_frames: int | None = Field(None, ge=0, le=10_000, description="Frames marked warmup after a state "
                                      "reset; unset: each model's measured warm-up (its card, `vigil calibrate`), "
                                      "else 10")
    max_seq_gap: int = Field(5, ge=0, le=100_000,
                             description="Missing frames tolerated before a camera's state is reset")
    staleness_s: float = Field(5.0, ge=0, le=3600,
                               description="Skip frames older than this at the worker (0 = never skip)")
    heatmap: bool = Field(True, description="Attach the uint8 error heat map to every score")
    motion: bool = Field(True, description="Compute the optical-flow motion feature (~2-3 ms of one core per 120x180 frame, beside the model step); "
                         "false = PredNet's features only (motion_max 0), for CPU-bound workers")
    model_poll_s: float = Field(5.0, ge=0, le=3600, description="Model directory poll interval (0 = no hot swap)")
    session_timeout_s: float = Field(30.0, ge=1, le=600, description="Kafka consumer session timeout")
    heartbeat_s: float = Field(3.0, gt=0, le=60, description="Kafka consumer heartbeat interval")
    commit_interval_s: float = Field(1.0, gt=0, le=60, description="Offset commit interval")
    datadir: Path = Field(Path(tempfile.gettempdir()) / "vigil-worker",
                          description="Faust data directory (no tables are kept; holds only faust's files)")
    offset_reset: str = Field("latest", pattern=r"^(earliest|latest)$",
                              description="Where a new consumer group starts reading frames")
    max_future_skew_s: float = Field(86_400.0, ge=0, le=365 * 86_400,
                                     description="Dead-letter frames captured more than this ahead of the worker's "
                                     "clock (0 = off)")  # fmt: skip
    allowed_cameras: frozenset[str] = Field(
        frozenset(), description="JSON list of the camera ids this worker scores; others are dead-lettered and "
        "counted. Empty = any id (bounded by max_cameras)",
    )  # fmt: skip
    max_cameras: int = Field(10_000, ge=1, le=1_000_000, description="Most cameras with a state on one worker; frames "
                             "of a new camera beyond it are dead-lettered")  # fmt: skip
    idle_evict_s: float = Field(600.0, ge=0, le=7 * 86_400,
                                description="Forget a camera's state after this long without a frame (0 = never)")
    session_stick_s: float = Field(10.0, ge=0, le=3600, description="Frames of an older ingest session are skipped "
                                   "while the newest one sent a frame this recently (0 = off)")  # fmt: skip
    metric_cameras: int = Field(100, ge=0, le=10_000, description="Most camera label values in per-camera metrics "
                                "(the allow-list when set, else the first cameras seen; the rest are 'other')")  # fmt: skip
    clock_skew_warn_s: float = Field(2.0, gt=0, le=3600, description="Warn when a camera's frames arrive this much "
                                     "behind (or ahead of) the worker's clock at best")  # fmt: skip
    report_interval_s: float = Field(60.0, ge=1, le=86_400, description="At most one warning, camera status or "
                                     "skipped-frames dead letter per camera and kind per this interval")  # fmt: skip

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
