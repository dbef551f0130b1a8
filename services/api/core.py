"""The pure core of `vigil api`: the records it answers with and the rules of alert paging, without Redis.

The alert stream holds one entry per alert *change* (``open``, ``update``..., ``close``); the API lists
*alerts*, each once, as its latest change at or before the query's upper bound. Paging walks the stream
newest first; the cursor is the stream id of the last entry a page looked at, so the next page starts
just below it and never repeats an alert (an older change of an alert already shown is skipped because a
later change of it exists below the upper bound: :func:`is_latest`).

Example:
    >>> parse_stream_id("1795378018859-3")
    (1795378018859, 3)
    >>> latest_at_or_before(["5-0", "9-1", "12-0"], upper=(10, 0))
    (9, 1)
    >>> is_latest("9-1", ["5-0", "9-1", "12-0"], upper=(10, 0)), is_latest("5-0", ["5-0", "9-1"], upper=None)
    (True, False)
    >>> camera_view("cam-7", {"status": "alert", "score": "4.1000", "threshold": "", "last_seq": "12"}).score
    4.1
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from vigil.shared.schemas import Alert

MAX_PAGE = 500
"""Most alerts one GET /v1/alerts returns."""
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
ALERT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}:\d{1,20}:\d{1,20}$")
"""``<camera_id>:<start_seq>:<start capture ms>`` (see :meth:`Alert.make_id`)."""
CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
EventKind = Literal["open", "update", "close"]
StreamPos = tuple[int, int]


def parse_stream_id(text: str) -> StreamPos:
    """``"<ms>-<seq>"`` -> ``(ms, seq)``; raises ``ValueError`` with what was received."""
    if not STREAM_ID.match(text):
        raise ValueError(f"a cursor is a stream id such as 1795378018859-0. Received: {text[:60]!r}")
    ms, seq = text.split("-")
    return int(ms), int(seq)


def latest_at_or_before(stream_ids: list[str], upper: StreamPos | None) -> StreamPos | None:
    """The newest of ``stream_ids`` at or before ``upper`` (all of them when None)."""
    pos = [p for p in map(parse_stream_id, stream_ids) if upper is None or p <= upper]
    return max(pos) if pos else None


def is_latest(stream_id: str, change_ids: list[str], upper: StreamPos | None) -> bool:
    """Whether the entry ``stream_id`` is its alert's latest change at or before ``upper``.

    ``change_ids`` are the stream ids of the alert's published changes (the scorer's dedupe marks); when
    they are unknown (expired), the first entry a page meets is taken as the latest.
    """
    latest = latest_at_or_before(change_ids, upper)
    return latest is None or parse_stream_id(stream_id) == latest


@dataclass(frozen=True)
class AlertQuery:
    """A validated GET /v1/alerts query (times in epoch ms, both inclusive)."""

    camera: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    event: EventKind | None = None
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1..{MAX_PAGE}. Received: {self.limit}")
        if self.camera is not None and not CAMERA_ID.match(self.camera):
            raise ValueError(f"camera must be a camera id (letters, digits, _ . -). Received: {self.camera[:80]!r}")
        if self.cursor is not None:
            parse_stream_id(self.cursor)
        if self.since_ms is not None and self.until_ms is not None and self.since_ms > self.until_ms:
            raise ValueError(f"since must not be after until. Received: since={self.since_ms} until={self.until_ms}")

    @property
    def upper(self) -> StreamPos | None:
        """The newest stream position an alert's latest change may have."""
        return None if self.until_ms is None else (self.until_ms, 2**64 - 1)

    def range_max(self) -> str:
        """XREVRANGE's ``max``: just below the cursor, else ``until``, else the newest entry."""
        if self.cursor is not None:
            return "(" + self.cursor
        return "+" if self.until_ms is None else str(self.until_ms)

    def range_min(self) -> str:
        """XREVRANGE's ``min``."""
        return "-" if self.since_ms is None else str(self.since_ms)


class Label(BaseModel):
    """An operator's label of an alert (the ``vigil:alert-labels`` record)."""

    kind: str
    by: str = ""
    note: str = ""
    time_ns: int = 0


def parse_label(raw: bytes | str | None) -> Label | None:
    """The label record stored by ``vigil alerts label``, or None when absent or unreadable."""
    if raw is None:
        return None
    try:
        return Label.model_validate(json.loads(raw))
    except ValueError:
        return None


class AlertItem(BaseModel):
    """One alert as its latest change, with its label and evidence."""

    stream_id: str = Field(description="Stream id of this change (also the paging cursor)")
    alert: Alert = Field(description="The alert's latest change (event, times, peak, box, ...)")
    label: Label | None = None
    snapshot_url: str | None = Field(None, description="JPEG of the peak; absent once it expired")


class AlertPage(BaseModel):
    """A page of alerts, newest first."""

    items: list[AlertItem]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null at the end")
    scanned: int = Field(0, description="Stream entries read for this page")


class AlertChange(BaseModel):
    """One published change of an alert."""

    stream_id: str
    alert: Alert


class AlertDetail(BaseModel):
    """An alert with all its changes (oldest first)."""

    alert_id: str
    camera_id: str
    changes: list[AlertChange]
    label: Label | None = None
    snapshot_url: str | None = None


class CameraView(BaseModel):
    """What the scorer last wrote about a camera (its ``vigil:camera:<id>`` hash)."""

    camera_id: str
    status: str = Field("", description="warmup, learning, normal or alert")
    scoring_mode: str = Field("", description="calibrated or online")
    score: float | None = None
    threshold: float | None = None
    model: str = ""
    last_seq: int | None = None
    last_frame_ns: int | None = None
    last_frame_time: str = ""
    alert_id: str | None = Field(None, description="The camera's open alert, if any")
    updated_ns: int | None = None


def _number(text: str | None, kind: type) -> Any:
    try:
        return None if not text else kind(text)
    except ValueError:
        return None


def camera_view(camera_id: str, h: dict[str, str]) -> CameraView:
    """A camera's record from its hash fields (decoded to text); unreadable numbers become null."""
    return CameraView(
        camera_id=camera_id, status=h.get("status", ""), scoring_mode=h.get("scoring_mode", ""),
        score=_number(h.get("score"), float), threshold=_number(h.get("threshold"), float), model=h.get("model", ""),
        last_seq=_number(h.get("last_seq"), int), last_frame_ns=_number(h.get("last_frame_ns"), int),
        last_frame_time=h.get("last_frame_time", ""), alert_id=h.get("alert_id") or None,
        updated_ns=_number(h.get("updated_ns"), int),
    )  # fmt: skip


def snapshot_url(alert_id: str) -> str:
    """Where the API serves an alert's snapshot."""
    return f"/v1/alerts/{alert_id}/snapshot"


class FrameScore(BaseModel):
    """One frame of an uploaded clip, as the live path scores it."""

    frame: int
    warmup: bool = Field(description="A worker warm-up frame: not scored (score 0)")
    score: float = Field(description="Smoothed score in z units (threshold below)")
    mse: float | None = None
    psnr: float | None = Field(None, description="null when infinite (a perfect prediction)")
    patch_max: float | None = None
    motion_max: float | None = None


def finite(values: dict[str, Any]) -> dict[str, float | None]:
    """Numbers as JSON can carry them: NaN and infinities become null.

    Example:
        >>> finite({"mse": 2.5, "psnr": float("inf")})
        {'mse': 2.5, 'psnr': None}
    """
    return {k: (float(v) if math.isfinite(v) else None) for k, v in values.items()}


class ClipAlert(BaseModel):
    """An alert the live path raises on an uploaded clip (frame numbers of the clip)."""

    start_frame: int
    alert_frame: int
    end_frame: int | None
    peak_score: float
    box: tuple[float, float, float, float] | None = None


class ScoreResult(BaseModel):
    """The answer of POST /v1/score."""

    model_id: str
    model_version: str
    threshold: float
    frames: list[FrameScore]
    alerts: list[ClipAlert] = Field(description="Highest peak first")
    seconds: float = Field(description="Time spent decoding and scoring")
