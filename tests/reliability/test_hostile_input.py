"""Hostile input at the schema (issue #15): non-finite numbers, absurd integers, deep JSON, JPEG bombs,
oversized dead letters. Each becomes a :class:`SchemaError` (or a bounded record), never a crash."""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest

from vigil.shared.schemas import (
    MAGIC,
    MAX_INT64,
    MAX_RECORD_BYTES,
    MAX_TIME_NS,
    RECORD_HEADROOM_BYTES,
    SCHEMA_VERSION,
    Alert,
    CameraStatus,
    DeadLetter,
    ErrorFeatures,
    FrameMessage,
    PayloadSizeError,
    SchemaError,
    ScoreMessage,
)

_HEADER = struct.Struct(">2sBBI")


def envelope(kind: int, meta: dict | bytes, payload: bytes = b"") -> bytes:
    """Hand-made envelope bytes (what a hostile producer can send)."""
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return _HEADER.pack(MAGIC, kind, SCHEMA_VERSION, len(raw)) + raw + payload


def frame_meta(**over: object) -> dict:
    meta = {"camera_id": "cam", "seq": 1, "pts": 0.1, "capture_ns": time.time_ns(), "width": 2, "height": 2,
            "channels": 1, "encoding": "gray8", "session": 1, "schema_version": SCHEMA_VERSION}  # fmt: skip
    return meta | over


def score_meta(**over: object) -> dict:
    meta = {"camera_id": "cam", "seq": 1, "capture_ns": 1, "processed_ns": 2, "model_id": "m", "model_version": "v",
            "warmup": False, "features": {"mse": 0.1, "psnr": 20.0, "patch_max": 0.2}, "latency_ms": 1.0}  # fmt: skip
    return meta | over


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected_in_every_message(bad: str) -> None:
    def with_bad(meta: dict, path: tuple[str, ...]) -> bytes:
        text = json.dumps(meta)
        return text.replace(f'"{path[-1]}": {json.dumps(_get(meta, path))}', f'"{path[-1]}": {bad}', 1).encode()

    cases = [(FrameMessage, frame_meta(), ("pts",), b"\0" * 4)]
    cases += [(ScoreMessage, score_meta(), (f,), b"") for f in ("pts", "latency_ms", "heatmap_scale", "motion_scale")]
    cases += [(ScoreMessage, score_meta(), ("features", f), b"") for f in ("mse", "psnr", "patch_max", "motion_max")]
    for cls, meta, path, payload in cases:
        meta = _set(json.loads(json.dumps(meta)), path, 0.5)
        with pytest.raises(SchemaError):
            cls.decode(envelope(cls.KIND, with_bad(meta, path), payload))
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError):
            ErrorFeatures(mse=0.1, psnr=value, patch_max=0.1)
        with pytest.raises(ValueError):
            Alert(alert_id="a", camera_id="cam", event="open", start_seq=1, start_ns=1, peak_score=0.5, score=0.5,
                  threshold=value, peak_seq=1)  # fmt: skip


def _get(meta: dict, path: tuple[str, ...]) -> object:
    for key in path:
        meta = meta[key]
    return meta


def _set(meta: dict, path: tuple[str, ...], value: object) -> dict:
    _get(meta, path[:-1])[path[-1]] = value  # type: ignore[index]
    return meta


@pytest.mark.parametrize(("field", "value"), [
    ("seq", 2**63), ("seq", -1), ("session", 2**64), ("capture_ns", MAX_TIME_NS + 1), ("capture_ns", 2**63),
    ("pts", 1e300), ("seq", "9" * 5000),
])  # fmt: skip
def test_integers_and_times_are_bounded(field: str, value: int | float | str) -> None:
    raw = json.dumps(frame_meta(**{field: 0})).replace(f'"{field}": 0', f'"{field}": {value}').encode()
    with pytest.raises(SchemaError):
        FrameMessage.decode(envelope(FrameMessage.KIND, raw, b"\0" * 4))
    assert FrameMessage.decode(envelope(FrameMessage.KIND, frame_meta(seq=MAX_INT64), b"\0" * 4)).seq == MAX_INT64
    for kind, meta in ((2, score_meta(processed_ns=2**63)), (3, {"camera_id": "c", "state": "online", "time_ns": 2**70}),
                       (4, {"source_topic": "t", "service": "s", "error": "e", "offset": 2**64})):  # fmt: skip
        cls = {2: ScoreMessage, 3: CameraStatus, 4: DeadLetter}[kind]
        with pytest.raises(SchemaError):
            cls.decode(envelope(kind, meta))


@pytest.mark.parametrize("nest", [b"[" * 60_000 + b"]" * 60_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
                                  b"[" * 60_000])  # fmt: skip
def test_deeply_nested_metadata_is_a_schema_error(nest: bytes) -> None:
    meta = json.dumps(frame_meta(camera_id="PLACEHOLDER")).encode().replace(b'"PLACEHOLDER"', nest[:64_000])
    with pytest.raises(SchemaError, match="deeper|not valid JSON"):
        FrameMessage.decode(envelope(FrameMessage.KIND, meta[:64_000], b"\0" * 4))


def test_brackets_inside_strings_are_not_nesting() -> None:
    reason = "[" * 500 + "{\\\"" + "]" * 10
    status = CameraStatus(camera_id="cam", state="reconnecting", reason=reason)
    assert CameraStatus.decode(status.encode()).reason == reason


def _jpeg_declaring(height: int, width: int) -> bytes:
    """A small JPEG whose SOF0 marker is rewritten to declare ``height`` x ``width``."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_jpeg_bomb_is_rejected_from_its_header_without_decoding() -> None:
    bomb = _jpeg_declaring(4000, 4000)
    assert len(bomb) < 400
    meta = frame_meta(encoding="jpeg", width=4, height=4)
    with pytest.raises(PayloadSizeError, match="declares 4000x4000"):
        FrameMessage.decode(envelope(FrameMessage.KIND, meta, bomb))
    with pytest.raises(PayloadSizeError, match="declares 8x8 but the metadata says 4x6"):
        FrameMessage.decode(envelope(FrameMessage.KIND, frame_meta(encoding="jpeg", width=6, height=4),
                                     _jpeg_declaring(8, 8)))  # fmt: skip
    with pytest.raises(PayloadSizeError, match="start-of-frame"):
        FrameMessage.decode(envelope(FrameMessage.KIND, frame_meta(encoding="jpeg"), b"\xff\xd8\xff\xd9"))
    good = FrameMessage.decode(envelope(FrameMessage.KIND, frame_meta(encoding="jpeg", width=8, height=8),
                                        _jpeg_declaring(8, 8)))  # fmt: skip
    assert good.pixels().shape == (8, 8, 1)


@pytest.mark.parametrize(("key_bytes", "limit"), [(0, MAX_RECORD_BYTES), (300_000, MAX_RECORD_BYTES), (10, 50_000)])
def test_dead_letter_record_fits_kafkas_limit_with_key_and_long_error(key_bytes: int, limit: int) -> None:
    original = bytes(range(256)) * 4000  # 1,024,000 bytes: the original record was already at the limit
    letter = DeadLetter.for_record(source_topic="t" * 300, partition=3, offset=7, service="worker",
                                   error="x" * 10_000, original=original, camera_id="c" * 300,
                                   key_bytes=key_bytes, max_record_bytes=limit)  # fmt: skip
    value = letter.encode()
    assert key_bytes + len(value) + RECORD_HEADROOM_BYTES <= limit
    back = DeadLetter.decode(value)
    assert f"original record of {len(original)} bytes truncated to {len(back.payload)}" in back.error
    assert back.payload == original[: len(back.payload)] and len(back.payload) > 0
    small = DeadLetter.for_record(source_topic="t", partition=0, offset=0, service="w", error="e", original=b"abc")
    assert small.payload == b"abc" and "truncated" not in small.error
