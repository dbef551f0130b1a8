#!/usr/bin/env python3
"""A small RTSP server that serves video files as live cameras, for tests and the demo.

Runs with Debian's system Python and GStreamer (``python3-gi``, ``gir1.2-gst-rtsp-server-1.0``,
``gstreamer1.0-rtsp``, ``gstreamer1.0-plugins-{base,good,bad}``), not the project's venv::

    /usr/bin/python3 infra/local/rtsp_server.py --port 8554 a.mkv b.mkv          # /cam1, /cam2
    /usr/bin/python3 infra/local/rtsp_server.py --port 0 --loop --mount lobby=a.mkv

Each file's H.264 track is demuxed once into memory (no re-encoding, so a lossless clip stays
bit-exact), then pushed through ``appsrc ! h264parse ! rtph264pay`` at the file's own pace, clocked
by the RTSP sinks like a real camera. ``--loop`` repeats the clip with increasing timestamps (a
gapless endless stream); otherwise the stream ends (RTCP BYE) after one pass. By default every client
gets its own copy from the first frame (deterministic for tests); ``--shared`` makes all clients of a
mount watch one stream, like a real camera.

When the server listens, it prints one line to stdout and flushes it::

    READY port=8554 rtsp://127.0.0.1:8554/cam1 rtsp://127.0.0.1:8554/cam2

SIGTERM / SIGINT stop it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PUSH_AHEAD = 8  # buffers pushed per need-data callback


@dataclass
class Clip:
    """The H.264 access units of one file, in memory."""

    caps: Gst.Caps
    buffers: list[tuple[bytes, int, int, bool]] = field(default_factory=list)  # data, pts_ns, dur_ns, delta
    duration_ns: int = 0


def load_clip(path: Path) -> Clip:
    """Demux the file's video track to byte-stream H.264 access units (SPS/PPS before each IDR)."""
    desc = (
        f'filesrc location="{path}" ! parsebin ! h264parse config-interval=-1 ! '
        "video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    )
    pipe = Gst.parse_launch(desc)
    sink = pipe.get_by_name("sink")
    pipe.set_state(Gst.State.PLAYING)
    clip: Clip | None = None
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        buf = sample.get_buffer()
        if clip is None:
            clip = Clip(caps=sample.get_caps())
        ok, info = buf.map(Gst.MapFlags.READ)
        if not ok:
            raise RuntimeError(f"cannot map a buffer of {path}")
        data = bytes(info.data)
        buf.unmap(info)
        dur = buf.duration if buf.duration != Gst.CLOCK_TIME_NONE else 0
        delta = bool(buf.get_flags() & Gst.BufferFlags.DELTA_UNIT)
        clip.buffers.append((data, buf.pts, dur, delta))
    bus = pipe.get_bus()
    err = bus.pop_filtered(Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    if err is not None:
        gerr, debug = err.parse_error()
        raise RuntimeError(f"cannot read {path}: {gerr.message}")
    if clip is None or not clip.buffers:
        raise RuntimeError(f"no H.264 video frames in {path}")
    _fix_durations(clip)
    return clip


def _fix_durations(clip: Clip) -> None:
    """Fill missing durations from the next timestamp and compute the clip duration."""
    first = clip.buffers[0][1]
    fixed = []
    for i, (data, pts, dur, delta) in enumerate(clip.buffers):
        if not dur:
            nxt = clip.buffers[i + 1][1] if i + 1 < len(clip.buffers) else None
            dur = (nxt - pts) if nxt is not None and nxt > pts else (fixed[-1][2] if fixed else 40_000_000)
        fixed.append((data, pts - first, dur, delta))
    clip.buffers = fixed
    last = fixed[-1]
    clip.duration_ns = last[1] + last[2]


class ClipFeeder:
    """Feeds one client's appsrc from a clip, once or looping, with increasing timestamps."""

    def __init__(self, clip: Clip, loop: bool) -> None:
        self.clip = clip
        self.loop = loop
        self.index = 0
        self.offset_ns = 0
        self.done = False

    def need_data(self, src: Gst.Element, _length: int) -> None:
        """Push the next few buffers (the appsrc asks again when its queue runs low)."""
        for _ in range(PUSH_AHEAD):
            if self.done:
                return
            if self.index >= len(self.clip.buffers):
                if not self.loop:
                    self.done = True
                    src.emit("end-of-stream")
                    return
                self.index = 0
                self.offset_ns += self.clip.duration_ns
            data, pts, dur, delta = self.clip.buffers[self.index]
            self.index += 1
            buf = Gst.Buffer.new_wrapped(data)
            buf.pts = buf.dts = pts + self.offset_ns
            buf.duration = dur
            if delta:
                buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
            src.emit("push-buffer", buf)


class ClipFactory(GstRtspServer.RTSPMediaFactory):
    """A media factory whose pipelines are fed from an in-memory clip."""

    def __init__(self, clips: list[Clip], loop: bool, shared: bool) -> None:
        super().__init__()
        self.clips = clips
        self.connections = 0
        self.loop = loop
        self.set_launch("( appsrc name=src format=time is-live=false ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )")
        self.set_shared(shared)
        self.set_eos_shutdown(False)
        self.connect("media-configure", self._on_media_configure)

    def _on_media_configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        clip = self.clips[self.connections % len(self.clips)]  # a playlist: each connection plays the next clip
        self.connections += 1
        src = media.get_element().get_child_by_name("src")
        src.set_property("caps", clip.caps)
        src.set_property("max-bytes", 4 * 1024 * 1024)
        feeder = ClipFeeder(clip, self.loop)
        media.feeder = feeder  # keep alive with the media
        src.connect("need-data", feeder.need_data)


def parse_mounts(files: list[str], mounts: list[str]) -> dict[str, list[Path]]:
    """Mount names to playlists: positional files become cam1, cam2, ...; --mount NAME=FILE[:FILE...] adds named ones.

    A mount with several files plays one file per client connection, in turn (the stream ends after each
    file unless --loop), like a camera that restarts between scenes.
    """
    out: dict[str, list[Path]] = {f"cam{i + 1}": [Path(f)] for i, f in enumerate(files)}
    for spec in mounts:
        name, sep, playlist = spec.partition("=")
        if not sep or not name or not playlist:
            raise SystemExit(f"--mount expects NAME=FILE[:FILE...], got {spec!r}")
        out[name.strip("/")] = [Path(f) for f in playlist.split(":") if f]
    if not out:
        raise SystemExit("give at least one file to serve")
    for name, paths in out.items():
        for path in paths:
            if not path.is_file():
                raise SystemExit(f"mount /{name}: file not found: {path}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the server, print the READY line and run until SIGTERM."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="files served as /cam1, /cam2, ...")
    ap.add_argument("--mount", action="append", default=[], metavar="NAME=FILE[:FILE...]",
                    help="serve FILE at /NAME; several files play one per connection, in turn")
    ap.add_argument("--port", type=int, default=8554, help="TCP port (0 = any free port)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--loop", action="store_true", help="repeat each clip forever (else end after one pass)")
    ap.add_argument("--shared", action="store_true", help="all clients of a mount watch one stream")
    args = ap.parse_args(argv)

    Gst.init(None)
    mounts = parse_mounts(args.files, args.mount)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    points = server.get_mount_points()
    for name, paths in mounts.items():
        points.add_factory(f"/{name}", ClipFactory([load_clip(p) for p in paths], args.loop, args.shared))
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on {args.host}:{args.port}", flush=True)
        return 1
    port = server.get_bound_port()
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    urls = " ".join(f"rtsp://{args.host}:{port}/{name}" for name in mounts)
    print(f"READY port={port} {urls}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
