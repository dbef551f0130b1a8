"""Settings of `vigil evidence` (environment prefix ``VIGIL_EVIDENCE_``).

The ring is bounded four ways (frames and age per camera, bytes in all, cameras), the clip by its
window (``before_s`` + the alert, capped at ``max_alert_s``, + ``after_s``) and by ``max_clip_bytes``;
everything written to Redis expires after ``retention_s``.

Example:
    >>> s = EvidenceSettings(before_s=2, after_s=4)
    >>> s.before_s, s.after_s, s.retention_s // 86_400, s.group_id
    (2.0, 4.0, 7, 'vigil-evidence')
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.shared.redis_keys import ALERTS_STREAM
from vigil.shared.settings import ServiceSettings


class EvidenceSettings(ServiceSettings):
    """Settings of `vigil evidence`: its consumer groups, the ring's bounds, the clip and the retention."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_EVIDENCE_", extra="ignore", env_nested_delimiter="__")

    # where it reads
    group_id: str = Field("vigil-evidence", min_length=1, max_length=200, description="Kafka group holding the "
                          "offsets of the frames and scores read (its own: the worker's group is untouched)")  # fmt: skip
    alerts_stream: str = Field(ALERTS_STREAM, min_length=1, max_length=200, description="Redis stream of alert changes")
    alerts_group: str = Field("vigil-evidence", min_length=1, max_length=200, description="Redis consumer group on "
                              "the alert stream (a restart resumes where it left off)")  # fmt: skip
    consumer_name: str = Field("evidence-1", min_length=1, max_length=200, description="Consumer name in that group")
    alerts_from_start: bool = Field(False, description="A new alert group starts at the oldest entry, not at new ones")
    rewind_on_start: bool = Field(True, description="Read the frames and scores from ring_age_s ago at start, so a "
                                  "restarted service refills its ring (else only new frames)")  # fmt: skip
    # the ring
    ring_frames: int = Field(300, ge=2, le=10_000, description="Frames kept per camera at most")
    ring_age_s: float = Field(30.0, ge=1, le=3600, description="Frames older than this (behind the camera's newest "
                              "frame, or behind this host's clock on arrival) leave the ring")  # fmt: skip
    ring_bytes: int = Field(1 << 30, ge=1 << 20, le=1 << 40, description="Bytes of frames held in all (the largest "
                            "camera's oldest frame goes first)")  # fmt: skip
    max_cameras: int = Field(1000, ge=1, le=100_000, description="Cameras with a ring at most (frames of more are dropped)")
    idle_evict_s: float = Field(120.0, ge=1, le=86_400, description="A camera without frames for this long leaves memory")
    # the evidence
    before_s: float = Field(3.0, ge=0, le=60, description="Seconds of clip before the alert's start")
    after_s: float = Field(3.0, ge=0, le=60, description="Seconds of clip after the alert's end")
    max_alert_s: float = Field(20.0, ge=1, le=600, description="Longest part of an alert a clip shows (around its peak)")
    preliminary_after_s: float = Field(1.0, ge=0, le=600, description="A first clip is written this long after `open`")
    final_grace_s: float = Field(5.0, ge=0, le=600, description="After end + after_s, wait at most this long (this "
                                 "host's clock) for the after-window's frames")  # fmt: skip
    max_open_s: float = Field(900.0, ge=10, le=86_400, description="An alert not closed after this is finalised")
    max_pending: int = Field(500, ge=1, le=100_000, description="Alerts awaiting evidence at most (the oldest is "
                             "finalised early beyond)")  # fmt: skip
    retention_s: int = Field(7 * 86_400, ge=60, le=366 * 86_400, description="TTL of every evidence key")
    clip_codec: Literal["auto", "h264", "vp9", "vp8"] = Field("auto", description="auto: H.264 (MP4) if the PyAV "
                                                              "build has an encoder, else VP9, else VP8 (WebM)")  # fmt: skip
    clip_crf: int = Field(26, ge=0, le=51, description="Quality of the clip (lower = better, larger)")
    clip_fps_max: float = Field(30.0, ge=1, le=120, description="Highest frame rate of a clip (frames are not dropped: "
                                "a faster camera plays slower)")  # fmt: skip
    max_clip_bytes: int = Field(4 << 20, ge=16 << 10, le=256 << 20, description="A larger clip is encoded again "
                                "smaller, then cut around the peak")  # fmt: skip
    snapshot_quality: int = Field(90, ge=10, le=100, description="JPEG quality of snapshots and latest frames")
    heat_alpha: float = Field(0.6, ge=0, le=1, description="Opacity of the error map where it is hottest")
    heat_floor: float = Field(0.35, ge=0, lt=1, description="Fraction of the map's top below which it is transparent")
    latest_frame_every_s: float = Field(2.0, ge=0.1, le=600, description="How often each camera's latest frame is written")
    latest_frame_ttl_s: int = Field(30, ge=1, le=86_400, description="TTL of a camera's latest frame")
    # footage for retraining (docs/evidence.md, `vigil retrain --footage`)
    footage_dir: Path | None = Field(None, description="Keep confidently normal segments of every camera here "
                                     "(<dir>/<camera>/*.mkv); unset: no footage is kept")  # fmt: skip
    footage_every_s: float = Field(600.0, ge=10, le=86_400, description="At most one segment per camera this often")
    footage_segment_s: float = Field(10.0, ge=1, le=120, description="Length of a segment")
    footage_guard_s: float = Field(10.0, ge=0, le=120, description="No alert within this of a segment; a segment "
                                   "is taken this long after its end")  # fmt: skip
    footage_margin: float = Field(1.0, ge=0, le=100, description="Every timeline score of a segment is at least "
                                  "this far below the camera's threshold (z units)")  # fmt: skip
    footage_max_segments: int = Field(200, ge=1, le=1_000_000, description="Segments kept per camera (oldest go)")
    footage_max_bytes: int = Field(500 << 20, ge=1 << 20, le=1 << 40, description="Bytes of footage per camera")
    # the loop
    poll_ms: int = Field(100, ge=1, le=5000, description="Longest wait for frames in one loop turn")
    max_records: int = Field(500, ge=1, le=100_000, description="Kafka records handled per loop turn")
    alerts_batch: int = Field(100, ge=1, le=10_000, description="Alert entries read per loop turn")
    retry_s: float = Field(2.0, gt=0, le=600, description="Wait before retrying a failed Redis write")

    @model_validator(mode="after")
    def _check_windows(self) -> EvidenceSettings:
        if self.latest_frame_ttl_s < self.latest_frame_every_s:
            raise ValueError(f"latest_frame_ttl_s must be >= latest_frame_every_s. Received: "
                             f"{self.latest_frame_ttl_s} < {self.latest_frame_every_s}")  # fmt: skip
        window = self.before_s + self.max_alert_s + self.after_s
        if window > self.ring_age_s:
            raise ValueError(f"before_s + max_alert_s + after_s ({window:g}s) must fit in ring_age_s. Received: "
                             f"ring_age_s={self.ring_age_s:g}")  # fmt: skip
        if self.footage_dir is not None and self.footage_segment_s + self.footage_guard_s > 0.9 * self.ring_age_s:
            raise ValueError(f"footage_segment_s + footage_guard_s must fit in 90% of ring_age_s. Received: "
                             f"{self.footage_segment_s:g} + {self.footage_guard_s:g} > 0.9 x {self.ring_age_s:g}")  # fmt: skip
        return self
