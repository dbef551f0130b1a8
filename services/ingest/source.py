"""Opening a camera's source with PyAV: URL options, timeouts, and the video track.

Any URL FFmpeg opens works (rtsp, http(s), HLS ``.m3u8``, files). Other tracks (audio, data) are
ignored: only the best video track is demuxed.
"""

from __future__ import annotations

from typing import Any

import av

from vigil.shared.cameras import CameraConfig, url_scheme
from vigil.shared.logging import mask_url

# Network sources: probe briefly, so that opening takes well under a second and the probe does not
# hand the reader a burst of old frames.
NETWORK_DEFAULTS = {"analyzeduration": "500000", "probesize": "262144"}
SOURCE_ERRORS = (av.FFmpegError, OSError)


class NoVideoError(ValueError):
    """The source has no video track."""


def format_options(cam: CameraConfig) -> dict[str, str]:
    """FFmpeg format options for the camera: transport and probe limits, then the camera's own options."""
    opts: dict[str, str] = {}
    if not cam.is_file:
        opts |= NETWORK_DEFAULTS
    if url_scheme(cam.url) in ("rtsp", "rtsps"):
        opts["rtsp_transport"] = cam.rtsp_transport
    return opts | cam.options


def open_source(cam: CameraConfig) -> tuple[Any, Any]:
    """Open the camera; returns ``(container, video_stream)``.

    Raises:
        av.FFmpegError / OSError: the source cannot be opened (refused, not found, invalid data, timeout).
        NoVideoError: it opened but carries no video.
    """
    container = av.open(cam.av_url, options=format_options(cam), timeout=(cam.open_timeout_s, cam.read_timeout_s))
    stream = container.streams.best("video")
    if stream is None:
        container.close()
        raise NoVideoError(f"no video track in {cam.masked_url}")
    stream.thread_type = "AUTO" if not cam.is_live else "SLICE"  # frame threads add latency on live streams
    return container, stream


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a status record, with credentials masked."""
    if isinstance(exc, av.FFmpegError):
        text = f"{exc.strerror or type(exc).__name__} ({type(exc).__name__})"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return mask_url(text)[:500]
