"""Clips a browser plays: MP4 (H.264, ``yuv420p``, ``+faststart``) or, without an H.264 encoder, WebM.

:func:`pick_format` tries the encoders of the installed PyAV build in order of preference by encoding
a tiny clip with each (an encoder can be listed and still fail, e.g. a GPU one on a host without the
GPU) and returns the first that works. :func:`encode_capped` encodes a clip and, when it is larger than
the byte cap, encodes it again at a lower quality, then at half the size, then cut around the peak.

Example:
    >>> import numpy as np
    >>> fmt = pick_format("auto")
    >>> frames = [np.full((31, 45, 3), i * 20, np.uint8) for i in range(10)]
    >>> clip = encode_clip(frames, 10.0, fmt, crf=30)
    >>> fmt.mime in ("video/mp4", "video/webm"), len(clip) > 100
    (True, True)
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipFormat:
    """An encoder, its container and the options that make a clip browsers play."""

    codec: str
    container: str
    mime: str
    family: str
    options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)
    crf: bool = True
    """Whether the encoder takes ``crf`` (else a bit rate derived from it)."""


_MP4 = {"movflags": "+faststart"}
CANDIDATES: dict[str, tuple[ClipFormat, ...]] = {
    "h264": (
        ClipFormat("libx264", "mp4", "video/mp4", "h264", {"preset": "veryfast", "profile": "main"}, _MP4),
        ClipFormat("libopenh264", "mp4", "video/mp4", "h264", {}, _MP4, crf=False),
        ClipFormat("h264", "mp4", "video/mp4", "h264", {}, _MP4, crf=False),
    ),
    "vp9": (ClipFormat("libvpx-vp9", "webm", "video/webm", "vp9", {"b": "0", "deadline": "realtime", "cpu-used": "8",
                                                                   "row-mt": "1"}),),  # fmt: skip
    "vp8": (ClipFormat("libvpx", "webm", "video/webm", "vp8", {"b": "2M", "deadline": "realtime", "cpu-used": "8"}),),
}
PREFERENCE = {"auto": ("h264", "vp9", "vp8"), "h264": ("h264",), "vp9": ("vp9",), "vp8": ("vp8",)}


def pick_format(preference: str = "auto") -> ClipFormat:
    """The first encoder of ``preference`` (``auto``, ``h264``, ``vp9``, ``vp8``) that encodes a test clip.

    Raises:
        RuntimeError: none of them works in this PyAV build (the text lists what was tried and why).
    """
    tried = []
    probe = [np.zeros((16, 16, 3), np.uint8)] * 3
    for family in PREFERENCE[preference]:
        for fmt in CANDIDATES[family]:
            try:
                encode_clip(probe, 10.0, fmt, crf=30)
            except Exception as exc:  # noqa: BLE001 - PyAV raises many kinds for a missing or broken encoder
                tried.append(f"{fmt.codec}: {type(exc).__name__}: {exc}")
                continue
            log.info("clips: %s in %s (%s)%s", fmt.codec, fmt.container.upper(), fmt.mime,
                     f"; unusable: {'; '.join(tried)}" if tried else "")  # fmt: skip
            return fmt
    raise RuntimeError(f"no clip encoder works in this PyAV build (tried {'; '.join(tried)})")


def even(image: np.ndarray) -> np.ndarray:
    """``image`` padded by one edge row / column where its height / width is odd (yuv420p needs even sizes)."""
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def encode_clip(frames: Sequence[np.ndarray], fps: float, fmt: ClipFormat, crf: int) -> bytes:
    """Encode (H, W, 3) uint8 BGR frames at a constant ``fps`` into the bytes of a clip file.

    The file is written to a temporary file (MP4's ``+faststart`` moves the index to the front after
    writing, which needs a real file) and read back.
    """
    import av

    if not frames:
        raise ValueError("a clip needs at least one frame. Received: 0 frames")
    first = even(frames[0])
    fd, path = tempfile.mkstemp(prefix="vigil-clip-", suffix=f".{fmt.container}")
    os.close(fd)
    try:
        with av.open(path, "w", format=fmt.container, options=fmt.container_options) as out:
            stream = out.add_stream(fmt.codec, rate=_rate(fps), options=_options(fmt, crf))
            stream.width, stream.height, stream.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
            if not fmt.crf:
                stream.bit_rate = _bit_rate(first.shape, fps, crf)
            for image in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(even(image)), format="bgr24")
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)


def _rate(fps: float):  # noqa: ANN202 - fractions.Fraction
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def _options(fmt: ClipFormat, crf: int) -> dict[str, str]:
    return fmt.options | ({"crf": str(crf)} if fmt.crf else {})


def _bit_rate(shape: tuple[int, ...], fps: float, crf: int) -> int:
    """A bit rate for encoders without ``crf``: ~0.1 bit per pixel at crf 23, halving every 6 steps."""
    return max(50_000, int(shape[0] * shape[1] * fps * 0.1 * 2 ** ((23 - crf) / 6)))


@dataclass(frozen=True)
class CappedClip:
    """A clip within the byte cap: its bytes and which of the given frames it holds (``first``..``last``)."""

    data: bytes
    first: int
    last: int
    attempts: int


def encode_capped(
    frames: Sequence[np.ndarray], fps: float, fmt: ClipFormat, crf: int, max_bytes: int, keep: int = 0,
) -> CappedClip:  # fmt: skip
    """Encode within ``max_bytes``: as asked, then crf + 10, then half size, then halving the frames around ``keep``.

    Raises:
        ValueError: no frames, or even a single frame at half size does not fit.
    """
    lo, hi, attempts = 0, len(frames), 0
    plan = [(crf, 1), (min(51, crf + 10), 1), (min(51, crf + 10), 2)]
    while True:
        for quality, shrink in plan:
            attempts += 1
            data = encode_clip([_shrink(f, shrink) for f in frames[lo:hi]], fps, fmt, quality)
            if len(data) <= max_bytes:
                return CappedClip(data, lo, hi - 1, attempts)
        if hi - lo <= 1:
            raise ValueError(f"one frame encodes to {len(data)} bytes, over the cap of {max_bytes}")
        half = max(1, (hi - lo) // 2)
        lo = min(max(lo, keep - half // 2), hi - half)
        hi = lo + half
        plan = plan[-1:]


def _shrink(image: np.ndarray, factor: int) -> np.ndarray:
    import cv2

    if factor == 1:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (max(2, w // factor), max(2, h // factor)), interpolation=cv2.INTER_AREA)
