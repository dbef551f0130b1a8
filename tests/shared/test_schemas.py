"""Schema round trips and rejection of bad bytes with clear errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from vigil.shared.schemas import (
    MAX_PAYLOAD_BYTES,
    Alert,
    CameraStatus,
    DeadLetter,
    ErrorFeatures,
    FrameMessage,
    PayloadSizeError,
    SchemaError,
    ScoreMessage,
    TruncatedMessageError,
    UnsupportedVersionError,
    WrongKindError,
    peek_kind,
)


def _frame(encoding: str = "gray8", channels: int = 1) -> FrameMessage:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (24, 36, channels), dtype=np.uint8)
    return FrameMessage.from_pixels("cam-1", seq=7, pts=0.7, capture_ns=123, image=img, encoding=encoding)


def _score(heatmap: bool = True) -> ScoreMessage:
    hm = np.linspace(0, 0.5, 15 * 22, dtype=np.float32).reshape(15, 22)
    payload, scale = ScoreMessage.quantize_heatmap(hm) if heatmap else (b"", 0.0)
    return ScoreMessage(
        camera_id="cam-1", seq=7, capture_ns=123, processed_ns=456, model_id="prednet", model_version="v1",
        warmup=False, features=ErrorFeatures(mse=0.01, psnr=20.0, patch_max=0.2), latency_ms=3.5,
        heatmap_height=15 if heatmap else 0, heatmap_width=22 if heatmap else 0, heatmap_scale=scale, payload=payload,
    )  # fmt: skip


@pytest.mark.parametrize(("encoding", "channels"), [("gray8", 1), ("bgr8", 3)])
def test_frame_round_trip_raw(encoding: str, channels: int) -> None:
    msg = _frame(encoding, channels)
    back = FrameMessage.decode(msg.encode())
    assert back == msg
    np.testing.assert_array_equal(back.pixels(), msg.pixels())
    assert back.pixels().shape == (24, 36, channels)


def test_frame_round_trip_jpeg_is_close() -> None:
    img = np.tile(np.arange(36, dtype=np.uint8) * 7, (24, 1))
    msg = FrameMessage.from_pixels("cam-1", seq=0, pts=0, capture_ns=0, image=img, encoding="jpeg", jpeg_quality=95)
    back = FrameMessage.decode(msg.encode()).pixels()
    assert back.shape == (24, 36, 1)
    assert np.abs(back[:, :, 0].astype(int) - img).mean() < 2.0


def test_frame_payload_is_raw_bytes_not_json() -> None:
    msg = _frame()
    data = msg.encode()
    assert data.endswith(msg.payload)
    assert len(data) < len(msg.payload) + 400


def test_score_round_trip_and_heatmap() -> None:
    msg = _score()
    back = ScoreMessage.decode(msg.encode())
    assert back == msg
    hm = back.heatmap()
    assert hm is not None and hm.shape == (15, 22)
    assert hm.max() == pytest.approx(0.5, rel=1e-3)
    assert _score(heatmap=False).heatmap() is None


def test_status_dead_letter_alert_round_trip() -> None:
    status = CameraStatus(camera_id="cam-1", state="reconnecting", reason="connection refused", attempt=2)
    assert CameraStatus.decode(status.encode()) == status
    letter = DeadLetter.for_record(source_topic="vigil.frames", partition=1, offset=9, service="worker",
                                   error=ValueError("bad"), original=b"\x00garbage")  # fmt: skip
    back = DeadLetter.decode(letter.encode())
    assert back.payload == b"\x00garbage" and back.error == "ValueError: bad"
    alert = Alert(alert_id=Alert.make_id("cam-1", 10, 1), camera_id="cam-1", event="open", start_seq=10,
                  start_ns=1, peak_score=0.9, score=0.9, threshold=0.5, peak_seq=10)  # fmt: skip
    assert Alert.from_json(alert.to_json()) == alert
    assert alert.alert_id == "cam-1:10:0"


def test_wrong_version_is_rejected_clearly() -> None:
    data = bytearray(_frame().encode())
    data[3] = 99
    with pytest.raises(UnsupportedVersionError, match="schema version 99 is not supported"):
        FrameMessage.decode(bytes(data))


def test_truncated_messages_are_rejected_clearly() -> None:
    data = _frame().encode()
    with pytest.raises(TruncatedMessageError, match="shorter than the 8-byte header"):
        FrameMessage.decode(data[:5])
    meta_len = struct.unpack(">I", data[4:8])[0]
    with pytest.raises(TruncatedMessageError, match="metadata announces"):
        FrameMessage.decode(data[: 8 + meta_len - 3])
    with pytest.raises(PayloadSizeError, match="does not match 24x36x1"):
        FrameMessage.decode(data[:-10])


def test_wrong_kind_and_garbage_are_rejected() -> None:
    with pytest.raises(WrongKindError, match="expected FrameMessage .* got kind 2 \\(ScoreMessage\\)"):
        FrameMessage.decode(_score().encode())
    with pytest.raises(SchemaError, match="not a Vigil message"):
        FrameMessage.decode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(SchemaError, match="not a Vigil message"):
        peek_kind(b"{}")
    assert peek_kind(_score().encode()) == ScoreMessage.KIND


def test_wrong_sizes_are_rejected() -> None:
    msg = _frame()
    with pytest.raises(ValueError, match="does not match"):
        FrameMessage(**(msg.model_dump() | {"width": 37}))
    with pytest.raises(ValueError, match="map payload"):
        ScoreMessage(**(_score().model_dump() | {"heatmap_width": 5}))
    with pytest.raises(ValueError, match="needs channels=3"):
        FrameMessage(**(msg.model_dump() | {"encoding": "bgr8"}))


def test_oversize_payload_is_rejected() -> None:
    big = np.zeros((1000, 1000, 1), np.uint8)  # 1 MB raw, above the limit
    data = FrameMessage.from_pixels("cam-1", seq=0, pts=0, capture_ns=0, image=big).encode()
    with pytest.raises(PayloadSizeError, match=f"exceeds the {MAX_PAYLOAD_BYTES}-byte limit"):
        FrameMessage.decode(data)


def test_invalid_metadata_is_rejected() -> None:
    msg = _frame().model_dump() | {"camera_id": "bad id with spaces"}
    with pytest.raises(ValueError, match="camera_id"):
        FrameMessage(**msg)
    header = struct.pack(">2sBBI", b"VG", 1, 1, 3) + b"{x]"
    with pytest.raises(SchemaError, match="not valid JSON"):
        FrameMessage.decode(header)
    with pytest.raises(SchemaError, match="invalid Alert"):
        Alert.from_json('{"alert_id": "x"}')
