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
    snapshot_url: str | None = Field(None, description="JPEG of the peak (the real frame when the evidence service "
                                     "wrote one, else the scorer's heat map); null once both expired")  # fmt: skip
    snapshot_kind: Literal["frame", "heatmap"] | None = Field(None, description="What `snapshot_url` serves: the real "
                                                              "frame (evidence) or the scorer's heat map")  # fmt: skip
    clip_url: str | None = Field(None, description="The alert's clip (MP4 or WebM); null when none was written or it expired")
    evidence_status: str | None = Field(None, description="preliminary (the alert is still open) or final; null = none")


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
    snapshot_kind: Literal["frame", "heatmap"] | None = None
    clip_url: str | None = None
    evidence_status: str | None = None


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


def clip_url(alert_id: str) -> str:
    """Where the API serves an alert's clip."""
    return f"/v1/alerts/{alert_id}/clip"


# -- evidence ---------------------------------------------------------------------------------------------------
CLIP_TYPES = {"video/mp4": b"ftyp", "video/webm": b"\x1a\x45\xdf\xa3"}
"""The clip types the console plays, and the bytes that identify each (MP4 at offset 4, WebM/EBML at 0)."""
EVIDENCE_STATUS = ("preliminary", "final")


def clip_type(declared: str | None, head: bytes) -> str:
    r"""The clip's content type: the declared one when it is a known type, else sniffed from its first bytes.

    Example:
        >>> clip_type("video/webm", b""), clip_type("text/html", b"\x00\x00\x00\x18ftypisom"), clip_type(None, b"??")
        ('video/webm', 'video/mp4', 'application/octet-stream')
    """
    base = (declared or "").split(";")[0].strip().lower()
    if base in CLIP_TYPES:
        return base
    if head[4:8] == CLIP_TYPES["video/mp4"]:
        return "video/mp4"
    if head[:4] == CLIP_TYPES["video/webm"]:
        return "video/webm"
    return "application/octet-stream"


class Evidence(BaseModel):
    """What the evidence service wrote for an alert (its ``vigil:evidence:<id>`` hash), with the URLs to fetch it."""

    alert_id: str
    status: str = Field("", description="preliminary (the alert was still open) or final")
    snapshot_bytes: int | None = None
    clip_bytes: int | None = None
    clip_mime: str = ""
    first_seq: int | None = Field(None, description="Frame range of the clip")
    last_seq: int | None = None
    frames: int | None = None
    created_ns: int | None = None
    snapshot_url: str | None = None
    clip_url: str | None = None


def evidence_view(alert_id: str, h: dict[str, str], has_snapshot: bool, has_clip: bool) -> Evidence:
    """The evidence record from its hash fields (decoded); unreadable numbers become null, unknown status ''."""
    status = h.get("status", "")
    return Evidence(
        alert_id=alert_id, status=status if status in EVIDENCE_STATUS else "",
        snapshot_bytes=_number(h.get("snapshot_bytes"), int), clip_bytes=_number(h.get("clip_bytes"), int),
        clip_mime=clip_type(h.get("clip_mime"), b"") if has_clip else "", first_seq=_number(h.get("first_seq"), int),
        last_seq=_number(h.get("last_seq"), int), frames=_number(h.get("frames"), int),
        created_ns=_number(h.get("created_ns"), int),
        snapshot_url=snapshot_url(alert_id) if has_snapshot else None, clip_url=clip_url(alert_id) if has_clip else None,
    )  # fmt: skip


_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


class RangeError(ValueError):
    """A ``Range`` header the API cannot satisfy (416)."""


def parse_range(header: str) -> tuple[int | None, int | None]:
    """One HTTP byte range: ``(start, end)`` inclusive; ``(None, n)`` is the last n bytes, ``(start, None)`` to the end.

    Raises:
        RangeError: not one ``bytes=`` range (several ranges are refused too: a clip needs one).

    Example:
        >>> parse_range("bytes=0-1023"), parse_range("bytes=500-"), parse_range("bytes=-200")
        ((0, 1023), (500, None), (None, 200))
    """
    m = _RANGE.match(header.strip().replace(" ", ""))
    if m is None or (not m.group(1) and not m.group(2)):
        raise RangeError(f"Range must be one `bytes=START-END`, `bytes=START-` or `bytes=-LAST`. Received: {header[:60]!r}")
    start = int(m.group(1)) if m.group(1) else None
    end = int(m.group(2)) if m.group(2) else None
    if start is not None and end is not None and end < start:
        raise RangeError(f"Range end is before its start. Received: {header[:60]!r}")
    if start is None and end == 0:
        raise RangeError("Range `bytes=-0` selects nothing")
    return start, end


def range_indexes(rng: tuple[int | None, int | None]) -> tuple[int, int]:
    """The ``GETRANGE`` indexes of a parsed range (negative from the end, as Redis takes them).

    Example:
        >>> range_indexes((0, 1023)), range_indexes((500, None)), range_indexes((None, 200))
        ((0, 1023), (500, -1), (-200, -1))
    """
    start, end = rng
    if start is None:
        return -int(end or 0), -1
    return start, -1 if end is None else end


def content_range(rng: tuple[int | None, int | None], length: int) -> tuple[int, int]:
    """The first and last byte a range selects of a ``length``-byte body.

    Raises:
        RangeError: the range starts at or beyond the end (416).

    Example:
        >>> content_range((0, 99), 50), content_range((None, 200), 50), content_range((10, None), 50)
        ((0, 49), (0, 49), (10, 49))
    """
    start, end = rng
    if start is None:
        return max(0, length - int(end or 0)), length - 1
    if start >= length:
        raise RangeError(f"Range starts at byte {start}; the clip has {length} bytes")
    return start, length - 1 if end is None else min(end, length - 1)


# -- timeline, zones ------------------------------------------------------------------------------------------
MAX_TIMELINE = 10_000
"""Most timeline points one request returns."""


class TimelinePoint(BaseModel):
    """One point of a camera's score timeline (the scorer writes at most one a second)."""

    t_ns: int = Field(description="Capture time of the frame (ns since the epoch)")
    score: float
    threshold: float | None = None


def timeline_point(fields: dict[str, str]) -> TimelinePoint | None:
    """A timeline point from a stream entry's fields, or None when it is not a finite, plausible one.

    Example:
        >>> timeline_point({"t_ns": "1795378018859000000", "score": "1.25", "threshold": "2.6"}).score
        1.25
        >>> timeline_point({"t_ns": "x", "score": "1"}) is None, timeline_point({"t_ns": "1", "score": "nan"}) is None
        (True, True)
    """
    t_ns, score, thr = _number(fields.get("t_ns"), int), _number(fields.get("score"), float), _number(fields.get("threshold"), float)
    if t_ns is None or score is None or not 0 <= t_ns < 2**63 or not math.isfinite(score) or abs(score) > 1e6:
        return None
    return TimelinePoint(t_ns=t_ns, score=score, threshold=thr if thr is not None and math.isfinite(thr) else None)


def zones_yaml(camera_id: str, zones: Any) -> str:
    """The ``zones:`` block of a camera, as it goes into the cameras file (points rounded to 4 digits).

    Example:
        >>> from vigil.shared.cameras import Zones
        >>> print(zones_yaml("lobby", Zones(exclude=[[(0, 0), (0.5, 0), (0.5, 0.25)]])), end="")
        # in the cameras file, under the camera `lobby`:
        zones:
          include: []
          exclude:
          - [[0.0, 0.0], [0.5, 0.0], [0.5, 0.25]]
    """

    def poly(p: list[tuple[float, float]]) -> str:
        return "[" + ", ".join(f"[{round(x, 4)}, {round(y, 4)}]" for x, y in p) + "]"

    lines = [f"# in the cameras file, under the camera `{camera_id}`:", "zones:"]
    for kind in ("include", "exclude"):
        polys = getattr(zones, kind)
        lines += [f"  {kind}: []"] if not polys else [f"  {kind}:"] + [f"  - {poly(p)}" for p in polys]
    return "\n".join(lines) + "\n"


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
