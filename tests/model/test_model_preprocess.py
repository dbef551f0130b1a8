"""The one frame -> model-input conversion: arrays, channel order in training vs live, gray unchanged."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from vigil.model.data import read_video
from vigil.model.preprocess import InputSpec, to_model_input
from vigil.services.ingest.camera import CameraReader
from vigil.shared.cameras import parse_cameras
from vigil.shared.schemas import CameraStatus, DeadLetter, FrameMessage

RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
"""Solid stripes of the colour test video, left to right."""
BGR_CHANNEL = {"red": 2, "green": 1, "blue": 0}


def _write_video(path: Path, frames: list[np.ndarray], fmt: str, pix_fmt: str, codec: str = "ffv1") -> Path:
    """Write ``frames`` (``fmt`` arrays, e.g. ``rgb24`` or ``gray``) at 10 fps."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format=fmt)))
        container.mux(stream.encode())
    return path


def _stripes(n_frames: int = 6, height: int = 240, width: int = 360) -> list[np.ndarray]:
    """RGB frames: red, green and blue vertical stripes, a little brighter each frame."""
    frame = np.zeros((height, width, 3), np.uint8)
    for i, rgb in enumerate(RGB.values()):
        frame[:, i * width // 3:(i + 1) * width // 3] = rgb
    return [np.clip(frame.astype(int) + 8 * t, 0, 255).astype(np.uint8) for t in range(n_frames)]


class _Sink:
    """Records what a camera reader hands over."""

    def __init__(self) -> None:
        self.frames: list[FrameMessage] = []
        self.status: list[CameraStatus] = []
        self.dead: list[DeadLetter] = []

    def publish_frame(self, msg: FrameMessage) -> None:
        self.frames.append(msg)

    def publish_status(self, status: CameraStatus) -> None:
        self.status.append(status)

    def publish_dead_letter(self, letter: DeadLetter) -> None:
        self.dead.append(letter)


def _ingest(path: Path, tmp_path: Path, channels: int, encoding: str) -> np.ndarray:
    """The live path: ingest's camera reader on ``path`` -> frame messages -> bytes -> pixels."""
    cam = parse_cameras({"cameras": [{"id": "cam", "url": str(path), "fps": 10, "width": 90, "height": 60,
                                      "channels": channels, "encoding": encoding}]}, tmp_path).cameras[0]
    sink = _Sink()
    CameraReader(cam, sink, threading.Event(), realtime=False).run()
    assert [s.state for s in sink.status] == ["online", "offline"] and not sink.dead, sink.status
    return np.stack([FrameMessage.decode(m.encode()).pixels() for m in sink.frames])


@pytest.mark.parametrize(("channels", "encoding"), [(3, "bgr8"), (1, "gray8")])
def test_a_frame_reaches_the_model_alike_in_training_and_live(tmp_path: Path, channels: int, encoding: str) -> None:
    path = _write_video(tmp_path / "stripes.mkv", _stripes(), "rgb24", "yuv420p")
    training = read_video(path, 60, 90, channels=channels)
    live = _ingest(path, tmp_path, channels, encoding)
    assert training.shape == live.shape == (6, 60, 90, channels) and training.dtype == live.dtype == np.uint8
    np.testing.assert_allclose(live.astype(int), training.astype(int), atol=1)  # same decoder, same conversion
    if channels == 3:
        for i, colour in enumerate(RGB):
            centre = training[0, 30, i * 30 + 15]  # the stripe's centre pixel, BGR
            assert centre[BGR_CHANNEL[colour]] > 200 and np.delete(centre, BGR_CHANNEL[colour]).max() < 60, centre


def test_gray_model_input_is_unchanged(tmp_path: Path) -> None:
    """Gray models see what the old training conversion gave: swscale gray, one ``cv2.INTER_AREA`` resize."""
    import av

    rng = np.random.default_rng(3)
    frames = [cv2.GaussianBlur(rng.integers(0, 256, (240, 360), np.uint8), (5, 5), 1.5) for _ in range(4)]
    path = _write_video(tmp_path / "gray.mkv", frames, "gray", "gray")
    with av.open(str(path)) as container:
        old = [cv2.resize(f.to_ndarray(format="gray"), (180, 120), interpolation=cv2.INTER_AREA)
               for f in container.decode(video=0)]
    np.testing.assert_array_equal(read_video(path, 120, 180, 1), np.stack(old)[..., None])


def test_ped2_frames_are_unchanged(ped2_root: Path) -> None:
    """The committed Ped2 model's input (yuvj420p H.264, 240x360 -> 120x180) is bit-identical to before."""
    import av

    path = ped2_root / "test" / "Test001.mkv"
    with av.open(str(path)) as container:
        old = [cv2.resize(f.to_ndarray(format="gray"), (180, 120), interpolation=cv2.INTER_AREA)
               for f in container.decode(video=0)]
    np.testing.assert_array_equal(read_video(path, 120, 180, 1), np.stack(old)[..., None])


def test_arrays_gray_and_bgr() -> None:
    bgr = np.zeros((240, 360, 3), np.uint8)
    bgr[..., 2] = 200  # red
    gray = to_model_input(bgr, InputSpec(120, 180, 1))
    assert gray.shape == (120, 180, 1) and int(gray.max()) == round(0.299 * 200)  # BT.601 luma of BGR red
    assert to_model_input(bgr[:, :, :1], InputSpec(120, 180, 3)).shape == (120, 180, 3)
    out = to_model_input(bgr, InputSpec(60, 90, 3, "nearest"))
    assert out.flags.c_contiguous and out[0, 0].tolist() == [0, 0, 200]


@pytest.mark.parametrize(("frame", "spec", "match"), [
    (np.zeros((8, 8), np.float32), InputSpec(4, 4), "uint8"),
    (np.zeros((8, 8, 2), np.uint8), InputSpec(4, 4), "shape"),
])
def test_bad_frames_raise(frame: np.ndarray, spec: InputSpec, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        to_model_input(frame, spec)


@pytest.mark.parametrize(("kwargs", "match"), [({"channels": 2}, "channels"), ({"interpolation": "bilinear"}, "interp")])
def test_bad_specs_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InputSpec(120, 180, **kwargs)
