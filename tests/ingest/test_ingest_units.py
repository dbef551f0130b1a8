"""Network-free tests: config validation, sampling, lag, backoff, resize, the drop-oldest publisher."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_cameras

from vigil.model.preprocess import InputSpec, resize, to_model_input
from vigil.services.ingest.publisher import DropOldestBuffer, Outgoing, Publisher
from vigil.services.ingest.sampling import Backoff, FpsSampler, LagTracker
from vigil.shared.cameras import ConfigError, expand_secrets, load_cameras, parse_cameras
from vigil.shared.schemas import FrameMessage
from vigil.shared.settings import TopicSettings


# -- config ------------------------------------------------------------------------------------
@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "v.mkv"
    path.write_bytes(b"not checked at load time")
    return path


def _errors(tmp_path: Path, cameras: list[dict], defaults: dict | None = None, env: dict | None = None) -> dict[str, str]:
    cfg = load_cameras(write_cameras(tmp_path / "c.yaml", cameras, defaults), env=env or {})
    return {e.who: e.message for e in cfg.errors}


def test_defaults_are_merged_and_camera_keys_win(tmp_path: Path, video: Path) -> None:
    cams = [{"id": "a", "url": str(video)}, {"id": "b", "url": "v.mkv", "fps": 5, "reconnect": {"max_s": 3}}]
    cfg = load_cameras(write_cameras(tmp_path / "c.yaml", cams, {"fps": 7.5, "width": 64, "reconnect": {"initial_s": 1}}))
    a, b = cfg.cameras
    assert (a.fps, a.width, a.height, a.channels, a.encoding) == (7.5, 64, 120, 1, "gray8")
    assert (b.fps, b.reconnect.initial_s, b.reconnect.max_s) == (5, 1, 3)
    assert b.url == str(video.resolve())  # relative to the YAML file
    assert a.is_file and not a.is_live


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"fsp": 10}, "fsp: unknown key"),
        ({"fps": 0}, "fps: Input should be greater than 0"),
        ({"fps": 500}, "fps: Input should be less than or equal to 120"),
        ({"width": 4}, "width: Input should be greater than or equal to 8"),
        ({"width": 4000, "height": 4000}, "exceeds the"),
        ({"encoding": "gray8", "channels": 3}, "encoding gray8 needs channels: 1"),
        ({"url": "ftp://host/x"}, "unsupported URL scheme 'ftp'"),
        ({"url": "rtsp:///nohost"}, "has no host"),
        ({"url": "rtsp://host:99999/x"}, "malformed URL"),
        ({"url": "/does/not/exist.mkv"}, "file not found"),
        ({"url": "rtsp://u:${NOPE}@h/x"}, "environment variable NOPE (or NOPE_FILE) is not set"),
        ({"id": "bad id!"}, "id: String should match pattern"),
    ],
)
def test_camera_errors_are_clear(tmp_path: Path, video: Path, entry: dict, expected: str) -> None:
    camera = {"id": "cam", "url": str(video)} | entry
    errors = _errors(tmp_path, [camera, {"id": "ok", "url": str(video)}])
    assert len(errors) == 1, errors
    assert expected in next(iter(errors.values()))


def test_duplicate_ids_reject_the_later_entry(tmp_path: Path, video: Path) -> None:
    cfg = load_cameras(write_cameras(tmp_path / "c.yaml", [{"id": "a", "url": str(video)}] * 2))
    assert [c.id for c in cfg.cameras] == ["a"]
    assert "duplicate camera id (entries 0 and 1)" in cfg.error_text()


def test_file_level_errors_are_fatal(tmp_path: Path, video: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_cameras(bad)
    with pytest.raises(ConfigError, match="unknown top-level keys \\['camras'\\]"):
        parse_cameras({"camras": []}, tmp_path)
    with pytest.raises(ConfigError, match="invalid defaults: fps: Input should be greater than 0"):
        parse_cameras({"defaults": {"fps": -1}, "cameras": [{"id": "a", "url": str(video)}]}, tmp_path)
    with pytest.raises(ConfigError, match="'cameras' must be a non-empty list"):
        parse_cameras({"cameras": []}, tmp_path)


def test_secrets_from_env_and_files_are_masked_in_errors(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    env = {"USER": "admin", "PW_FILE": str(secret)}
    assert expand_secrets("rtsp://${USER}:${PW}@h/x", env) == "rtsp://admin:hunter2@h/x"
    errors = _errors(tmp_path, [{"id": "c", "url": "ftp://${USER}:${PW}@h/x"}], env=env)
    assert "hunter2" not in errors["c"] and "ftp://***:***@h/x" in errors["c"]


# -- sampling ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("src_fps", "dst_fps"), [(30, 10), (25, 10), (29.97, 10), (10, 10), (10, 5), (5, 10), (12.5, 7)])
def test_sampler_rate_follows_timestamps(src_fps: float, dst_fps: float) -> None:
    sampler = FpsSampler(dst_fps)
    duration = 20.0
    times = np.arange(0, duration, 1 / src_fps)
    kept = [t for t in times if sampler.accept(float(t))]
    expected = min(src_fps, dst_fps) * duration
    assert abs(len(kept) - expected) <= 1, (len(kept), expected)
    gaps = np.diff(kept)
    assert gaps.min() >= 1 / dst_fps - 1 / src_fps - 1e-9  # never bunched up


def test_sampler_uses_timestamps_not_counts_with_jitter_and_gaps() -> None:
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.02, 0.05, 2000))  # irregular ~29 fps
    times = np.concatenate([times, times[-1] + 5 + np.arange(0, 10, 1 / 30)])  # a 5 s gap
    sampler = FpsSampler(10)
    kept = np.array([t for t in times if sampler.accept(float(t))])
    span = (times[1999] - times[0]) + 10
    assert abs(len(kept) - 10 * span) <= 3
    restarted = FpsSampler(10)
    assert restarted.accept(100.0) and restarted.accept(0.0)  # time jumped back: a new stream


def test_lag_tracker_ignores_constant_delay() -> None:
    lag = LagTracker()
    assert [lag.update(1000 + 0.3 + 0.1 * i, 0.1 * i) for i in range(5)] == [0.0] * 5
    assert lag.update(1003.0, 0.5) == pytest.approx(2.2)


def test_backoff_grows_is_capped_and_jittered() -> None:
    b = Backoff(initial_s=0.5, max_s=4, multiplier=2, jitter=0.5, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    caps = [0.5, 1, 2, 4, 4, 4, 4, 4]
    assert all(c * 0.5 <= d <= c for d, c in zip(delays, caps, strict=True))
    assert len(set(delays)) == len(delays)  # jitter: no two retries in lock step
    b.reset()
    assert b.next_delay() <= 0.5


# -- resize (vigil.model.preprocess, the conversion ingest and training share) ------------------
def test_to_model_input_sizes_and_channels() -> None:
    gray = np.random.default_rng(0).integers(0, 256, (240, 360), dtype=np.uint8)
    g, c = InputSpec(120, 180, 1), InputSpec(48, 64, 3)
    assert np.array_equal(to_model_input(gray, g)[:, :, 0], cv2.resize(gray, (180, 120), interpolation=cv2.INTER_AREA))
    assert to_model_input(gray, c).shape == (48, 64, 3)
    bgr = np.repeat(gray[:, :, None], 3, axis=2)
    assert to_model_input(bgr, g).shape == (120, 180, 1)


# -- publisher ---------------------------------------------------------------------------------
def _frame(cam: str, seq: int) -> FrameMessage:
    img = np.full((12, 18), seq % 256, np.uint8)
    return FrameMessage.from_pixels(cam, seq=seq, pts=seq / 10, capture_ns=time.time_ns(), image=img)


def test_drop_oldest_buffer_is_bounded_and_counts() -> None:
    dropped: list[Outgoing] = []
    buf = DropOldestBuffer(3, on_drop=dropped.append)
    for i in range(5):
        buf.put(Outgoing("t", b"k", bytes([i]), "c", capture_ns=1))
    assert len(buf) == 3 and [d.value for d in dropped] == [b"\x00", b"\x01"]
    assert [buf.get_nowait().value for _ in range(3)] == [b"\x02", b"\x03", b"\x04"]


class FlakyProducer:
    """Acts like kafka-python while Kafka is down (send times out) and when it is back."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"") -> _AckNow:
        from kafka.errors import KafkaTimeoutError

        if not self.up.is_set():
            raise KafkaTimeoutError("Failed to update metadata after 0.2 secs.")
        self.sent.append((topic, key, value))
        return _AckNow()

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


class _AckNow:
    def add_callback(self, f, *args):  # noqa: ANN001, ANN201
        f(*args, None)

    def add_errback(self, f, *args):  # noqa: ANN001, ANN201
        pass


def test_kafka_outage_drops_oldest_then_resumes() -> None:
    from prometheus_client import REGISTRY

    def dropped() -> float:
        return REGISTRY.get_sample_value("vigil_ingest_frames_dropped_total", {"camera": "pub", "reason": "buffer_full"}) or 0

    before = dropped()
    producer = FlakyProducer()
    pub = Publisher(producer, TopicSettings(), buffer_frames=20)
    pub.start()
    for seq in range(100):  # Kafka down: the buffer keeps the newest 20
        pub.publish_frame(_frame("pub", seq))
    deadline = time.monotonic() + 5
    while pub.kafka_ok and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pub.frames) <= 20 and not pub.kafka_ok
    assert dropped() - before >= 79
    producer.up.set()
    deadline = time.monotonic() + 5
    while len(producer.sent) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    seqs = [FrameMessage.decode(v).seq for _, _, v in producer.sent]
    assert len(seqs) >= 20 and seqs == list(range(100 - len(seqs), 100))  # the newest frames, in order
    pub.publish_frame(_frame("pub", 100))
    pub.stop(1.0)
    assert FrameMessage.decode(producer.sent[-1][2]).seq == 100 and pub.kafka_ok


@pytest.mark.parametrize("fmt", ["yuv420p", "yuvj420p", "nv12", "rgb24"])
def test_luma_path_matches_swscale_gray(fmt: str) -> None:
    import av

    rng = np.random.default_rng(1)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), np.uint8), (7, 7), 3)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt)
    ours = to_model_input(frame, InputSpec(height=120, width=160, channels=1))
    expected = cv2.resize(frame.to_ndarray(format="gray"), (160, 120), interpolation=cv2.INTER_AREA)
    assert ours.shape == (120, 160, 1) and ours.dtype == np.uint8
    assert np.abs(ours[:, :, 0].astype(int) - expected).max() <= (0 if fmt == "yuvj420p" else 2)


def test_two_stage_area_resize_is_close_to_direct_area() -> None:
    rng = np.random.default_rng(2)
    img = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280), np.uint8), (5, 5), 1.5)
    direct = cv2.resize(img, (180, 120), interpolation=cv2.INTER_AREA).astype(float)
    ours = resize(img, 180, 120, "area").astype(float)
    diff = np.abs(ours - direct)
    assert diff.max() <= 2 and diff.mean() < 0.5  # rounding of the intermediate image only
