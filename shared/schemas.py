"""Typed, versioned messages for every Vigil topic (see ../shared/DESIGN.md).

Wire format of every Kafka message is one compact envelope::

    b"VG" | kind: u8 | schema_version: u8 | meta_len: u32 BE | meta (UTF-8 JSON) | payload (raw bytes)

The JSON part holds only small metadata; pixels and heat maps travel as raw bytes in the payload,
never JSON-encoded. Decoding checks magic, kind, version, lengths and payload size and raises a
:class:`SchemaError` subclass whose text says what was wrong, ready for a dead-letter record.

Example:
    >>> import numpy as np
    >>> img = np.zeros((4, 6, 1), dtype=np.uint8)
    >>> msg = FrameMessage.from_pixels("cam-1", seq=0, pts=0.0, capture_ns=1, image=img)
    >>> FrameMessage.decode(msg.encode()).pixels().shape
    (4, 6, 1)
"""

from __future__ import annotations

import json
import struct
import time
from typing import Annotated, Any, ClassVar, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1
MAGIC = b"VG"
_HEADER = struct.Struct(">2sBBI")
# Kafka's default max message size is 1 MiB; frames are resized at ingest and stay far below this.
MAX_PAYLOAD_BYTES = 900 * 1024
MAX_META_BYTES = 64 * 1024
MAX_META_DEPTH = 8
"""Deepest nesting of JSON arrays / objects the metadata may have (the schemas need 2)."""
MAX_RECORD_BYTES = 1_000_000
"""Default bound of one produced record (key + value): under Kafka's 1 MiB default ``max.message.bytes`` and
``max.request.size``, leaving room for the record batch framing."""
RECORD_HEADROOM_BYTES = 512
"""Bytes kept free in a record for Kafka's per-record and batch framing (varints, headers, CRC)."""

# Integer bounds of every message (documented in docs/reliability.md).
MAX_INT64 = 2**63 - 1
"""Largest sequence number, session, offset: Kafka and Java readers use signed 64-bit integers."""
MAX_TIME_NS = 4_102_444_800 * 10**9
"""Latest wall-clock time a message may carry (2100-01-01T00:00:00Z, ns since epoch). A time between now and
this bound is still checked against the receiver's clock (the worker's ``max_future_skew_s``)."""
MAX_PTS_S = 1e10
"""Largest absolute presentation timestamp (seconds, ~317 years of stream)."""
MAX_PARTITION = 2**31 - 1

CameraId = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Camera id")
]


class SchemaError(ValueError):
    """A message could not be decoded or validated; the text says why."""


class TruncatedMessageError(SchemaError):
    """The bytes end before the header, metadata or payload they announce."""


class UnsupportedVersionError(SchemaError):
    """The message carries a schema version this build does not read."""


class WrongKindError(SchemaError):
    """The envelope holds another message type than the one expected (e.g. a score on the frames topic)."""


class PayloadSizeError(SchemaError):
    """The payload does not match the sizes in the metadata, or is larger than allowed."""


class Topics:
    """Default topic names (overridable through :class:`vigil.shared.settings.TopicSettings`)."""

    FRAMES = "vigil.frames"
    SCORES = "vigil.scores"
    CAMERA_STATUS = "vigil.camera-status"
    DLQ = "vigil.dlq"


class _Message(BaseModel):
    """Base of all envelope messages: metadata in JSON, optional raw payload."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    KIND: ClassVar[int]
    TOPIC: ClassVar[str]
    schema_version: int = Field(SCHEMA_VERSION, ge=0, le=255)

    def _payload(self) -> bytes:
        return b""

    def encode(self) -> bytes:
        """Serialise to the envelope bytes."""
        meta = self.model_dump_json(exclude={"payload"}).encode()
        payload = self._payload()
        return _HEADER.pack(MAGIC, self.KIND, self.schema_version, len(meta)) + meta + payload

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Parse envelope bytes into this message type.

        Raises:
            SchemaError: (a subclass) with a message that says what is wrong.
        """
        meta, payload = _split_envelope(data, cls)
        try:
            if "payload" in cls.model_fields:
                return cls.model_validate({**meta, "payload": payload})
            if payload:
                raise PayloadSizeError(f"{cls.__name__} carries no payload, got {len(payload)} bytes")
            return cls.model_validate(meta)
        except ValidationError as exc:
            inner = _inner_schema_error(exc)
            if inner is not None:
                raise inner from exc
            raise SchemaError(f"invalid {cls.__name__}: {_short(exc)}") from exc


def _inner_schema_error(exc: ValidationError) -> SchemaError | None:
    """The SchemaError a validator raised, if that is the only error (keeps its specific class)."""
    errors = exc.errors()
    if len(errors) == 1 and isinstance(err := errors[0].get("ctx", {}).get("error"), SchemaError):
        return err
    return None


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])


def peek_kind(data: bytes) -> int:
    """Return the message kind byte of an envelope (for routing), or raise SchemaError."""
    if len(data) < _HEADER.size or data[:2] != MAGIC:
        raise SchemaError("not a Vigil message (missing VG magic or shorter than the 8-byte header)")
    return data[2]


def _split_envelope(data: bytes, cls: type[_Message]) -> tuple[dict[str, Any], bytes]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SchemaError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise TruncatedMessageError(f"message is {len(data)} bytes, shorter than the {_HEADER.size}-byte header")
    magic, kind, version, meta_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SchemaError(f"not a Vigil message: magic {magic!r}, expected {MAGIC!r}")
    if kind != cls.KIND:
        raise WrongKindError(f"expected {cls.__name__} (kind {cls.KIND}), got kind {kind} ({_KIND_NAMES.get(kind, '?')})")
    if version != SCHEMA_VERSION:
        raise UnsupportedVersionError(
            f"{cls.__name__} schema version {version} is not supported (this build reads {SCHEMA_VERSION})"
        )
    if meta_len > MAX_META_BYTES:
        raise SchemaError(f"metadata of {meta_len} bytes exceeds the {MAX_META_BYTES}-byte limit")
    end = _HEADER.size + meta_len
    if len(data) < end:
        raise TruncatedMessageError(f"metadata announces {meta_len} bytes but only {len(data) - _HEADER.size} follow")
    meta = _parse_meta(data[_HEADER.size : end])
    if meta.get("schema_version", version) != version:
        raise SchemaError("schema_version in the metadata disagrees with the header")
    payload = data[end:]
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadSizeError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    return meta, payload


def _parse_meta(raw: bytes) -> dict[str, Any]:
    """Parse the JSON metadata; any failure (bad JSON, too deep, huge numbers) is a SchemaError."""
    if _nesting_depth(raw) > MAX_META_DEPTH:
        raise SchemaError(f"metadata nests JSON arrays / objects deeper than {MAX_META_DEPTH} levels")
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSON errors, >4300-digit ints
        raise SchemaError(f"metadata is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(meta, dict):
        raise SchemaError("metadata must be a JSON object")
    return meta


def _nesting_depth(raw: bytes) -> int:
    """The JSON nesting depth of ``raw``, or a number above :data:`MAX_META_DEPTH` as soon as it exceeds it.

    Cheap (C-level byte counts) and run before parsing, so a 60 KB ``[[[[...`` never reaches the parser's
    recursion. Only when the bracket count could exceed the limit are the brackets outside strings walked.

    Example:
        >>> _nesting_depth(b'{"a": [1, {"b": 2}]}'), _nesting_depth(b"[" * 50) > MAX_META_DEPTH
        (3, True)
        >>> _nesting_depth(b'{"reason": "' + b"[" * 50 + b'"}')
        1
    """
    opens = raw.count(b"[") + raw.count(b"{")
    if opens <= MAX_META_DEPTH:
        return opens
    depth = deepest = 0
    in_str = escaped = False
    for byte in raw:
        if in_str:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_str = False
        elif byte == 0x22:
            in_str = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_META_DEPTH:
                return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def jpeg_size(data: bytes) -> tuple[int, int, int]:
    """``(height, width, components)`` declared by a JPEG's start-of-frame marker, read without decoding.

    Raises:
        PayloadSizeError: no SOI marker, or no readable start-of-frame marker.

    Example:
        >>> import cv2
        >>> ok, buf = cv2.imencode(".jpg", np.zeros((5, 7), np.uint8))
        >>> jpeg_size(buf.tobytes())
        (5, 7, 1)
    """
    if not data.startswith(b"\xff\xd8"):
        raise PayloadSizeError("jpeg payload does not start with a JPEG SOI marker")
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise PayloadSizeError(f"jpeg payload has no marker at byte {i}: not a valid JPEG")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if length < 8 or i + 10 > n:
                break
            height, width = int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
            return height, width, data[i + 9]
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        i += 2 + length
    raise PayloadSizeError("jpeg payload has no readable start-of-frame (SOF) marker: not a valid JPEG")


# --------------------------------------------------------------------------------------------------
# frame (vigil.frames)
# --------------------------------------------------------------------------------------------------
FrameEncoding = Literal["gray8", "bgr8", "jpeg"]


class FrameMessage(_Message):
    """One decoded, resized camera frame. Key: camera_id."""

    KIND: ClassVar[int] = 1
    TOPIC: ClassVar[str] = Topics.FRAMES

    camera_id: CameraId
    seq: int = Field(ge=0, le=MAX_INT64, description="Per-camera sequence number, gap-free unless frames were dropped")
    pts: float = Field(ge=-MAX_PTS_S, le=MAX_PTS_S, description="Presentation timestamp in seconds, from the stream")
    capture_ns: int = Field(ge=0, le=MAX_TIME_NS,
                            description="Wall-clock time the frame was decoded at ingest (ns since epoch)")
    width: int = Field(ge=1, le=4096)
    height: int = Field(ge=1, le=4096)
    channels: Literal[1, 3] = 1
    encoding: FrameEncoding = "gray8"
    session: int = Field(
        default=0, ge=0, le=MAX_INT64,
        description="Changes when the camera (re)connects, increasing across ingest restarts too (ingest uses "
        "its start time in ms plus the reconnect count); a change resets state. Order is (session, seq)",
    )
    payload: bytes = Field(default=b"", repr=False)

    @model_validator(mode="after")
    def _check_payload(self) -> Self:
        if self.encoding in ("gray8", "bgr8"):
            want_c = 1 if self.encoding == "gray8" else 3
            if self.channels != want_c:
                raise ValueError(f"encoding {self.encoding} needs channels={want_c}, got {self.channels}")
            expected = self.width * self.height * self.channels
            if len(self.payload) != expected:
                raise PayloadSizeError(
                    f"{self.encoding} payload of {len(self.payload)} bytes does not match "
                    f"{self.height}x{self.width}x{self.channels} = {expected}"
                )
        else:
            height, width, _components = jpeg_size(self.payload)
            if (height, width) != (self.height, self.width):
                raise PayloadSizeError(
                    f"jpeg payload declares {height}x{width} but the metadata says {self.height}x{self.width}"
                )
        return self

    def _payload(self) -> bytes:
        return self.payload

    @classmethod
    def from_pixels(
        cls,
        camera_id: str,
        *,
        seq: int,
        pts: float,
        capture_ns: int,
        image: np.ndarray,
        encoding: FrameEncoding = "gray8",
        jpeg_quality: int = 90,
        session: int = 0,
    ) -> FrameMessage:
        """Build a frame message from a (H, W) or (H, W, C) uint8 image."""
        img = image if image.ndim == 3 else image[:, :, None]
        if img.dtype != np.uint8:
            raise ValueError(f"image must be uint8. Received: dtype={img.dtype}")
        h, w, c = img.shape
        if encoding == "jpeg":
            import cv2  # local: keeps schema import light

            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not ok:
                raise ValueError("JPEG encoding failed")
            payload = buf.tobytes()
        else:
            payload = np.ascontiguousarray(img).tobytes()
        return cls(
            camera_id=camera_id, seq=seq, pts=pts, capture_ns=capture_ns, width=w, height=h,
            channels=c, encoding=encoding, payload=payload, session=session,
        )  # fmt: skip

    def pixels(self) -> np.ndarray:
        """Decode the payload to a (height, width, channels) uint8 array."""
        if self.encoding != "jpeg":
            return np.frombuffer(self.payload, dtype=np.uint8).reshape(self.height, self.width, self.channels)
        import cv2

        flag = cv2.IMREAD_GRAYSCALE if self.channels == 1 else cv2.IMREAD_COLOR
        img = cv2.imdecode(np.frombuffer(self.payload, dtype=np.uint8), flag)
        if img is None:
            raise PayloadSizeError("jpeg payload could not be decoded")
        img = img.reshape(img.shape[0], img.shape[1], -1)
        if img.shape != (self.height, self.width, self.channels):
            raise PayloadSizeError(
                f"jpeg decodes to {img.shape}, metadata says {(self.height, self.width, self.channels)}"
            )
        return img


# --------------------------------------------------------------------------------------------------
# score (vigil.scores)
# --------------------------------------------------------------------------------------------------
class ErrorFeatures(BaseModel):
    """Prediction-error features of one frame (all finite: NaN and infinities are rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mse: float = Field(ge=0, description="Frame mean squared error, pixels in [0, 1]")
    psnr: float = Field(description="Peak signal-to-noise ratio in dB (higher = better predicted)")
    patch_max: float = Field(ge=0, description="Largest mean squared error over local patches")
    motion_max: float = Field(
        default=0.0, ge=0, description="Largest mean optical-flow speed over local patches (model pixels/frame); "
        "0 from workers that predate it",
    )  # fmt: skip


LOG_DECADES = 5.0
"""Decades below a map's largest value that the ``log`` map encoding resolves (smaller values become 0)."""


class ScoreMessage(_Message):
    """Prediction-error features of one frame from a worker. Key: camera_id."""

    KIND: ClassVar[int] = 2
    TOPIC: ClassVar[str] = Topics.SCORES

    camera_id: CameraId
    seq: int = Field(ge=0, le=MAX_INT64)
    session: int = Field(default=0, ge=0, le=MAX_INT64, description="Copied from the frame; order is (session, seq)")
    pts: float = Field(0.0, ge=-MAX_PTS_S, le=MAX_PTS_S)
    capture_ns: int = Field(ge=0, le=MAX_TIME_NS, description="Copied from the frame")
    processed_ns: int = Field(ge=0, le=MAX_TIME_NS, description="When the worker produced this score (ns since epoch)")
    model_id: str = Field(min_length=1, max_length=128)
    model_version: str = Field(min_length=1, max_length=128)
    warmup: bool = Field(description="True for the first frames after a state reset: no alerts on these")
    features: ErrorFeatures
    latency_ms: float = Field(ge=0, le=1e9, description="Worker processing latency for this frame")
    heatmap_height: int = Field(default=0, ge=0, le=512)
    heatmap_width: int = Field(default=0, ge=0, le=512)
    heatmap_scale: float = Field(default=0.0, ge=0, description="Largest value of the error map (plane 0)")
    heatmap_planes: int = Field(default=1, ge=1, le=2, description="1: error map; 2: error map, then motion map")
    heatmap_encoding: Literal["linear", "log"] = Field(
        default="linear", description="linear: value = byte / 255 * scale; log: value = scale * 10**(5 * (byte / 255 - 1)), "
        "byte 0 = 0",
    )  # fmt: skip
    motion_scale: float = Field(default=0.0, ge=0, description="Largest value of the motion map (plane 1)")
    frame_width: int = Field(default=0, ge=0, le=4096, description="Width of the scored frame (pixels), 0 if unknown")
    frame_height: int = Field(default=0, ge=0, le=4096, description="Height of the scored frame (pixels), 0 if unknown")
    payload: bytes = Field(default=b"", repr=False, description="uint8 maps, plane after plane, row-major, or empty")

    @model_validator(mode="after")
    def _check_heatmap(self) -> Self:
        expected = self.heatmap_height * self.heatmap_width * self.heatmap_planes if self.payload else 0
        if len(self.payload) != expected or (self.payload and expected == 0):
            raise PayloadSizeError(
                f"map payload of {len(self.payload)} bytes does not match {self.heatmap_planes} plane(s) of "
                f"{self.heatmap_height}x{self.heatmap_width}"
            )
        return self

    def _payload(self) -> bytes:
        return self.payload

    @staticmethod
    def quantize_heatmap(heatmap: np.ndarray, encoding: str = "linear") -> tuple[bytes, float]:
        """Quantise a float (h, w) map to uint8 bytes and the scale (the map's largest value) that restores it.

        ``log`` spans :data:`LOG_DECADES` decades below the largest value in equal ratio steps (4.6% each),
        so a quiet background next to a bright anomaly keeps its level, which per-location statistics of
        the log error need; ``linear`` (older workers) keeps steps of 1/255 of the largest value.

        Example:
            >>> hm = np.array([[0.0, 1e-4], [0.01, 1.0]], np.float32)
            >>> data, scale = ScoreMessage.quantize_heatmap(hm, "log")
            >>> back = ScoreMessage.dequantize(data, (2, 2), scale, "log")
            >>> bool(back[0, 0] == 0), bool(np.allclose(back.ravel()[1:], [1e-4, 0.01, 1.0], rtol=0.03))
            (True, True)
        """
        scale = float(np.max(heatmap)) if heatmap.size else 0.0
        if not np.isfinite(scale) or scale <= 0:
            return np.zeros(heatmap.shape, np.uint8).tobytes(), 0.0
        unit = np.clip(np.asarray(heatmap, np.float64) / scale, 0.0, 1.0)
        if encoding == "log":
            with np.errstate(divide="ignore"):
                code = 255.0 * (1.0 + np.log10(unit) / LOG_DECADES)
            return np.clip(np.rint(np.nan_to_num(code, neginf=0.0)), 0, 255).astype(np.uint8).tobytes(), scale
        return np.rint(unit * 255.0).astype(np.uint8).tobytes(), scale

    @staticmethod
    def dequantize(data: bytes, shape: tuple[int, int], scale: float, encoding: str = "linear") -> np.ndarray:
        """Inverse of :meth:`quantize_heatmap`: float32 ``shape``."""
        code = np.frombuffer(data, np.uint8).reshape(shape).astype(np.float32)
        if encoding == "log":
            return np.where(code > 0, np.float32(scale) * 10.0 ** (LOG_DECADES * (code / 255.0 - 1.0)), 0.0).astype(np.float32)
        return code / 255.0 * np.float32(scale)

    def _plane(self, i: int, scale: float) -> np.ndarray | None:
        if not self.payload or i >= self.heatmap_planes:
            return None
        n = self.heatmap_height * self.heatmap_width
        shape = (self.heatmap_height, self.heatmap_width)
        return self.dequantize(self.payload[i * n:(i + 1) * n], shape, scale, self.heatmap_encoding)

    def heatmap(self) -> np.ndarray | None:
        """The error map as float32 (h, w), or None when the score carries none."""
        return self._plane(0, self.heatmap_scale)

    def motion_map(self) -> np.ndarray | None:
        """The motion (optical-flow speed) map as float32 (h, w), or None when the score carries none."""
        return self._plane(1, self.motion_scale)


# --------------------------------------------------------------------------------------------------
# camera status (vigil.camera-status)
# --------------------------------------------------------------------------------------------------
class CameraStatus(_Message):
    """A camera's connection state changed. Key: camera_id."""

    KIND: ClassVar[int] = 3
    TOPIC: ClassVar[str] = Topics.CAMERA_STATUS

    camera_id: CameraId
    state: Literal["online", "reconnecting", "offline"]
    reason: str = Field(default="", max_length=2000)
    time_ns: int = Field(default_factory=time.time_ns, ge=0, le=MAX_TIME_NS)
    attempt: int = Field(default=0, ge=0, le=MAX_PARTITION, description="Reconnect attempt number (0 when online)")
    session: int = Field(default=0, ge=0, le=MAX_INT64)


# --------------------------------------------------------------------------------------------------
# dead letter (vigil.dlq)
# --------------------------------------------------------------------------------------------------
class DeadLetter(_Message):
    """A record that could not be processed, with the original bytes as payload. Key: the original key."""

    KIND: ClassVar[int] = 4
    TOPIC: ClassVar[str] = Topics.DLQ

    source_topic: str = Field(max_length=249)
    partition: int = Field(default=-1, ge=-1, le=MAX_PARTITION)
    offset: int = Field(default=-1, ge=-1, le=MAX_INT64)
    service: str = Field(max_length=64)
    error: str = Field(max_length=4000)
    camera_id: str | None = Field(default=None, max_length=256)
    time_ns: int = Field(default_factory=time.time_ns, ge=0, le=MAX_TIME_NS)
    payload: bytes = Field(default=b"", repr=False)

    @classmethod
    def for_record(
        cls, *, source_topic: str, partition: int, offset: int, service: str, error: str | Exception,
        original: bytes | None, camera_id: str | None = None, key_bytes: int = 0,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> DeadLetter:  # fmt: skip
        """Build a dead letter for a failed record, truncating what would not fit.

        The whole Kafka record (key of ``key_bytes`` + the encoded letter + :data:`RECORD_HEADROOM_BYTES`)
        stays within ``max_record_bytes``: the original bytes are cut to fit, and the error text says so
        (``[original record of N bytes truncated to M]``).
        """
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        original = bytes(original or b"")
        fields = {"source_topic": source_topic[:249], "partition": partition, "offset": offset, "service": service[:64],
                  "camera_id": None if camera_id is None else camera_id[:256]}  # fmt: skip
        note = f" [original record of {len(original)} bytes truncated to {{kept}}]"
        head = cls(error=text[:4000 - len(note) - 12] + note, **fields)  # the largest the metadata can get
        budget = max_record_bytes - key_bytes - RECORD_HEADROOM_BYTES - len(head.encode())
        kept = max(0, min(len(original), budget, MAX_PAYLOAD_BYTES))
        if kept < len(original):
            text = text[:4000 - len(note) - 12] + note.format(kept=kept)
        return cls(error=text[:4000], payload=original[:kept], **fields)

    def _payload(self) -> bytes:
        return self.payload


# --------------------------------------------------------------------------------------------------
# alert (Redis: stream vigil:alerts, pub/sub vigil:alerts:<camera>) -- JSON, not an envelope
# --------------------------------------------------------------------------------------------------
class Alert(BaseModel):
    """One alert event change. Serialised as JSON into Redis (stream field ``json``, pub/sub message)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    schema_version: int = SCHEMA_VERSION
    alert_id: str = Field(max_length=200, description="Unique per incident, the same on replay: "
                          "'<camera_id>:<start_seq>:<start capture time in ms>'")
    camera_id: CameraId
    event: Literal["open", "update", "close"]
    start_seq: int = Field(ge=0, le=MAX_INT64)
    end_seq: int | None = Field(default=None, ge=0, le=MAX_INT64)
    start_ns: int = Field(ge=0, le=MAX_TIME_NS, description="Capture time of the first frame of the event")
    end_ns: int | None = Field(default=None, ge=0, le=MAX_TIME_NS)
    peak_score: float = Field(ge=-1e6, le=1e6, description="Highest anomaly score in the event so far (z units)")
    score: float = Field(ge=-1e6, le=1e6, description="Anomaly score of the frame that caused this change (z units)")
    threshold: float = Field(ge=-1e6, le=1e6, description="The camera's threshold at the time (z units)")
    peak_seq: int = Field(ge=0, le=MAX_INT64)
    trigger_seq: int | None = Field(default=None, ge=0, le=MAX_INT64, description="The frame whose score caused this change")
    trigger_capture_ns: int | None = Field(
        default=None, ge=0, le=MAX_TIME_NS, description="Capture time of that frame; time_ns - trigger_capture_ns = end-to-end latency"
    )
    snapshot_key: str | None = None
    box: tuple[float, float, float, float] | None = Field(
        default=None, description="Where: (x0, y0, x1, y1) of the patch that scored highest at the peak, as fractions "
        "of the frame",
    )  # fmt: skip
    box_px: tuple[int, int, int, int] | None = Field(default=None, description="The same box in frame pixels")
    scoring_mode: Literal["calibrated", "online", ""] = Field(
        default="", description="calibrated: from the model's (or camera's) calibration; online: learnt on the camera")
    model_id: str = ""
    model_version: str = ""
    kind: str = Field(default="", max_length=40, pattern=r"^([a-z][a-z0-9_]{0,39})?$",
                      description="Kind predicted from operators' labels ('unknown' with too few labels, '' when off)")
    kind_confidence: float = Field(default=0.0, ge=0.0, le=1.0, description="The classifier's probability of that kind")
    kind_labels: int = Field(default=0, ge=0, le=MAX_INT64, description="How many labels the prediction stands on")
    suppressed: bool = Field(default=False, description="A kind operators mark as false positive, predicted with "
                             "high confidence: kept in the record and the console, not notified")
    time_ns: int = Field(default_factory=time.time_ns, ge=0, le=MAX_TIME_NS, description="When this change was published")

    @staticmethod
    def make_id(camera_id: str, start_seq: int, start_ns: int) -> str:
        """The alert id of an event that started at frame ``start_seq`` captured at ``start_ns``: the same when
        the same scores are replayed, different when a camera's numbering restarts or two sources publish it."""
        return f"{camera_id}:{start_seq}:{start_ns // 1_000_000}"

    def to_json(self) -> str:
        """Serialise to JSON text."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> Alert:
        """Parse JSON text; raises SchemaError with a clear message."""
        try:
            alert = cls.model_validate_json(text)
        except ValidationError as exc:
            raise SchemaError(f"invalid Alert: {_short(exc)}") from exc
        if alert.schema_version != SCHEMA_VERSION:
            raise UnsupportedVersionError(f"Alert schema version {alert.schema_version} is not supported")
        return alert


_KIND_NAMES = {m.KIND: m.__name__ for m in (FrameMessage, ScoreMessage, CameraStatus, DeadLetter)}
