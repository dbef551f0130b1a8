"""One camera's reader: connect, decode, sample, resize, encode, hand over; reconnect on failure.

Decoded frames become the model input with :func:`vigil.model.preprocess.to_model_input`, the same
conversion training uses, and are encoded as the camera's :class:`FrameMessage` encoding.

Each camera runs in its own thread (PyAV decoding, swscale and OpenCV release the GIL, so threads of
one process use several cores). A camera only ever talks to its :class:`FrameSink`, which never
blocks, so a slow or broken camera cannot hold up another one.

States, published on ``vigil.camera-status``: ``online`` when the first frame of a connection is
decoded; ``reconnecting`` (with the reason and attempt number) after a failed open or a dropped
stream; ``offline`` when the camera gives up (file ended or unreadable, ``max_attempts`` exhausted,
service stopping).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import av

from vigil.model.preprocess import InputSpec, to_model_input
from vigil.services.ingest import metrics
from vigil.services.ingest.sampling import Backoff, FpsSampler, LagTracker
from vigil.services.ingest.source import SOURCE_ERRORS, NoVideoError, describe_error, open_source
from vigil.shared.cameras import CameraConfig
from vigil.shared.schemas import CameraStatus, DeadLetter, FrameMessage, SchemaError

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    """Where a camera sends its output (the publisher); none of these may block."""

    def publish_frame(self, msg: FrameMessage) -> None: ...  # noqa: D102

    def publish_status(self, status: CameraStatus) -> None: ...  # noqa: D102

    def publish_dead_letter(self, letter: DeadLetter) -> None: ...  # noqa: D102


@dataclass
class StreamEnd:
    """How one connection ended."""

    reason: str
    frames: int  # frames decoded during the connection
    stopped: bool = False


class _FpsMeter:
    """Published frames per second over windows of about two seconds."""

    def __init__(self, camera_id: str) -> None:
        self.gauge = metrics.FPS.labels(camera_id)
        self.count = 0
        self.since = time.monotonic()

    def tick(self) -> None:
        self.count += 1
        elapsed = time.monotonic() - self.since
        if elapsed >= 2.0:
            self.gauge.set(self.count / elapsed)
            self.count, self.since = 0, time.monotonic()


class CameraReader:
    """Reads one camera until ``stop`` is set, reconnecting with backoff.

    Args:
        cam: the camera's validated config.
        sink: receives frames, status records and dead letters.
        stop: set to end the reader.
        realtime: read local files at native speed (unless the camera's ``realtime`` says otherwise).
    """

    def __init__(self, cam: CameraConfig, sink: FrameSink, stop: threading.Event, realtime: bool = True) -> None:
        self.cam = cam
        self.sink = sink
        self.stop = stop
        self.realtime = realtime if cam.realtime is None else cam.realtime
        r = cam.reconnect
        self.backoff = Backoff(r.initial_s, r.max_s, r.multiplier, r.jitter)
        self.input_spec = InputSpec(cam.height, cam.width, cam.channels, cam.interpolation)
        # Numbering starts at this runner's start time in ms, so a camera's sequence numbers and sessions keep
        # increasing across ingest restarts: downstream state resets cleanly and alert ids
        # ("<camera>:<start seq>") never repeat. Within a run both are gap-free counters.
        self.seq = self.session = self.first_seq = time.time_ns() // 1_000_000
        self.state: str | None = None
        self.thread = threading.Thread(target=self.run, name=f"camera-{cam.id}", daemon=True)
        self._fps = _FpsMeter(cam.id)
        self._m_decoded = metrics.FRAMES_DECODED.labels(cam.id)
        self._m_decode_s = metrics.DECODE_SECONDS.labels(cam.id)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the reader thread."""
        self.thread.start()

    def run(self) -> None:
        """Thread body: the connect / stream / reconnect loop; logs and reports a crash as offline."""
        try:
            self._loop()
        except Exception as exc:  # top of the camera loop: report, never take other cameras down
            log.exception("camera %s: reader crashed", self.cam.id)
            self._set_state("offline", f"internal error: {describe_error(exc)}")
            return
        if self.stop.is_set() and self.state != "offline":
            self._set_state("offline", "ingest service stopping")

    def _loop(self) -> None:
        while not self.stop.is_set():
            opened = self._connect()
            if opened is None:
                return
            container, stream = opened
            try:
                end = self._stream(container, stream)
            finally:
                container.close()
            if end.stopped or not self._after_end(end):
                return

    def _after_end(self, end: StreamEnd) -> bool:
        """Decide what follows the end of a connection; False ends the reader."""
        cam = self.cam
        if cam.is_file and end.frames == 0:
            self._set_state("offline", f"no decodable video frames in {cam.masked_url}: {end.reason}")
            return False
        if cam.is_file and not cam.loop:
            self._set_state("offline", f"end of file after {end.frames} frames ({end.reason})")
            return False
        if cam.is_file:
            log.info("camera %s: end of file, looping (session %d done)", cam.id, self.session)
            return True
        return self._wait_retry(f"stream ended: {end.reason}")

    # -- connecting ------------------------------------------------------------------------------
    def _connect(self) -> tuple[Any, Any] | None:
        """Open the source, retrying with backoff; None when giving up or stopping."""
        while not self.stop.is_set():
            try:
                return open_source(self.cam)
            except (*SOURCE_ERRORS, NoVideoError) as exc:
                reason = describe_error(exc)
            if self.cam.is_file:  # a local file that cannot be opened will not heal by waiting
                self._set_state("offline", f"cannot open {self.cam.masked_url}: {reason}")
                return None
            if not self._wait_retry(f"cannot connect: {reason}"):
                return None
        return None

    def _wait_retry(self, reason: str) -> bool:
        """Report ``reconnecting`` and sleep the backoff delay; False when giving up or stopping."""
        attempt = self.backoff.attempt + 1
        limit = self.cam.reconnect.max_attempts
        if limit and attempt > limit:
            self._set_state("offline", f"gave up after {limit} attempts: {reason}")
            return False
        delay = self.backoff.next_delay()
        self._set_state("reconnecting", reason, attempt)
        metrics.RECONNECTS.labels(self.cam.id).inc()
        log.warning("camera %s: %s; retry %d in %.1fs", self.cam.id, reason, attempt, delay)
        return not self.stop.wait(delay)

    def _set_state(self, state: str, reason: str = "", attempt: int = 0) -> None:
        if state == self.state and state != "reconnecting":
            return
        self.state = state
        status = CameraStatus(camera_id=self.cam.id, state=state, reason=reason[:2000], attempt=attempt, session=self.session)
        log.info("camera %s: %s%s", self.cam.id, state, f" ({reason})" if reason else "")
        self.sink.publish_status(status)

    # -- streaming -------------------------------------------------------------------------------
    def _stream(self, container: Any, stream: Any) -> StreamEnd:
        """Decode one connection until it ends; returns why it ended."""
        self.session += 1
        run = _Session(self, stream)
        packets = container.demux(stream)
        while not self.stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                return StreamEnd("end of stream", run.decoded)
            except SOURCE_ERRORS as exc:
                return StreamEnd(describe_error(exc), run.decoded)
            if (end := run.packet(packet)) is not None:
                return end
        return StreamEnd("stopped", run.decoded, stopped=True)


class _Session:
    """The per-connection state of a reader: sampling, pacing, lag and error counts."""

    def __init__(self, reader: CameraReader, stream: Any) -> None:
        self.r = reader
        self.cam = reader.cam
        self.sampler = FpsSampler(self.cam.fps)
        self.lag = LagTracker()
        rate = stream.average_rate or stream.guessed_rate
        self.frame_period = float(1 / rate) if rate else 1.0 / self.cam.fps
        self.decoded = 0
        self.corrupt = 0
        self.errors_in_row = 0
        self.skipping = False
        self.last_pts: float | None = None
        self.wall_anchor: float | None = None
        self.size: tuple[int, int] | None = None  # (height, width) of the source frames
        self.max_wait_s = max(self.cam.max_lag_s, 5 * self.frame_period)  # realtime files: longest pacing wait

    def packet(self, packet: Any) -> StreamEnd | None:
        """Decode one packet and handle its frames; a StreamEnd when too many errors in a row."""
        if self.skipping:
            if not packet.is_keyframe:
                metrics.FRAMES_DROPPED.labels(self.cam.id, "behind").inc()
                return None
            self.skipping = False
            self.lag.reset()
        started = time.perf_counter()
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            return self._decode_error(exc)
        self.errors_in_row = 0
        for frame in frames:
            self.r._m_decode_s.observe(time.perf_counter() - started)
            self.frame(frame)
            started = time.perf_counter()
        return None

    def _decode_error(self, exc: av.FFmpegError) -> StreamEnd | None:
        self.errors_in_row += 1
        self.corrupt += 1
        metrics.FRAMES_DROPPED.labels(self.cam.id, "corrupt").inc()
        log.debug("camera %s: corrupt packet skipped: %s", self.cam.id, exc)
        if self.errors_in_row >= self.cam.max_consecutive_errors:
            return StreamEnd(f"{self.errors_in_row} undecodable packets in a row ({describe_error(exc)})", self.decoded)
        return None

    def frame(self, frame: Any) -> None:
        """One decoded frame: count, drop if corrupt or late, pace, sample, convert and publish."""
        self.decoded += 1
        self.r._m_decoded.inc()
        if self.decoded == 1:
            self.r._set_state("online")
            self.r.backoff.reset()
        if frame.is_corrupt:
            self.corrupt += 1
            metrics.FRAMES_DROPPED.labels(self.cam.id, "corrupt").inc()
            return
        self._check_size(frame)
        pts = self._pts(frame)
        if not self._on_time(pts):
            return
        if self.sampler.accept(pts):
            self._publish(frame, pts, time.time_ns())  # capture time: when the frame is released (after pacing)

    def _check_size(self, frame: Any) -> None:
        """A source resolution change starts a new session: the worker restarts the camera's state (warm-up)."""
        size = (int(frame.height), int(frame.width))
        if self.size is not None and size != self.size:
            self.r.session += 1
            self.sampler.reset()
            metrics.STREAM_EVENTS.labels(self.cam.id, "resolution_change").inc()
            log.warning("camera %s: source resolution changed from %dx%d to %dx%d; new session %d (the worker "
                        "restarts this camera's state)", self.cam.id, *self.size[::-1], *size[::-1], self.r.session)
        self.size = size

    def _pts(self, frame: Any) -> float:
        t = frame.time
        if t is None:  # e.g. the first RTSP frame before RTCP sync: continue from the previous one
            t = 0.0 if self.last_pts is None else self.last_pts + self.frame_period
        self.last_pts = t
        return t

    def _on_time(self, pts: float) -> bool:
        """Live: drop (and skip to the next keyframe) when too late. Files in real time: wait for the pts."""
        now = time.monotonic()
        if self.cam.is_live:
            lag = self.lag.update(now, pts)
            if lag > self.cam.max_lag_s:
                log.warning("camera %s: %.1fs behind real time; skipping to the next keyframe", self.cam.id, lag)
                metrics.FRAMES_DROPPED.labels(self.cam.id, "behind").inc()
                self.skipping = True
                return False
            return True
        if self.r.realtime:
            self._pace(pts, now)
        return True

    def _pace(self, pts: float, now: float) -> None:
        """Realtime files: wait until the frame's time; a forward jump in pts re-anchors (counted) instead of
        sleeping through it, and a reader fallen behind by more than ``max_lag_s`` re-anchors too."""
        if self.wall_anchor is None or pts + self.wall_anchor < now - self.cam.max_lag_s:
            self.wall_anchor = now - pts
        delay = self.wall_anchor + pts - now
        if delay > self.max_wait_s:
            metrics.STREAM_EVENTS.labels(self.cam.id, "pts_jump").inc()
            log.warning("camera %s: presentation time jumped %+.1fs; pacing restarts at pts %.3f", self.cam.id,
                        delay, pts)  # fmt: skip
            self.wall_anchor, delay = now - pts, 0.0
        if delay > 0:
            self.r.stop.wait(delay)

    def _publish(self, frame: Any, pts: float, capture_ns: int) -> None:
        cam, r = self.cam, self.r
        image = to_model_input(frame, r.input_spec)
        try:
            msg = FrameMessage.from_pixels(
                cam.id, seq=r.seq, pts=pts, capture_ns=capture_ns, image=image, encoding=cam.encoding,
                jpeg_quality=cam.jpeg_quality, session=r.session,
            )  # fmt: skip
        except (ValueError, SchemaError) as exc:
            metrics.FRAMES_DROPPED.labels(cam.id, "encode").inc()
            r.sink.publish_dead_letter(DeadLetter.for_record(
                source_topic=f"camera:{cam.id}", partition=-1, offset=-1, service="ingest", error=exc,
                original=image.tobytes(), camera_id=cam.id,
            ))  # fmt: skip
            return
        r.seq += 1
        r.sink.publish_frame(msg)
        r._fps.tick()
