"""Ingest against a real RTSP server (GStreamer) and the real Kafka: counts, order, sizes, pixels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import decode_frames, decode_status, reference_frames, running_service, write_cameras

from vigil.shared.cameras import load_cameras

pytestmark = pytest.mark.integration


def _first_session(frames: list) -> list:
    first = frames[0].session
    return [f for f in frames if f.session == first]


def test_rtsp_cameras_publish_exact_frames(tmp_path, clips, rtsp_server, ingest_settings, topic_reader) -> None:
    server = rtsp_server([clips["a30"], clips["b30"]])
    cams = write_cameras(
        tmp_path / "cameras.yaml",
        [{"id": "cam1", "url": server.urls[0]}, {"id": "cam2", "url": server.urls[1], "fps": 5}],
        defaults={"fps": 10, "width": 180, "height": 120, "reconnect": {"initial_s": 0.2, "jitter": 0}},
    )
    frames_reader = topic_reader(ingest_settings.topics.frames)
    status_reader = topic_reader(ingest_settings.topics.camera_status)

    def second_session_started(records: list) -> bool:
        return all(len({m.session for m in decode_frames(records, cam)}) >= 2 for cam in ("cam1", "cam2"))

    with running_service(ingest_settings, load_cameras(cams)):
        assert frames_reader.until(second_session_started, timeout_s=25), "frames of a second connection never came"

    keys = {r.key for r in frames_reader.records}
    assert keys == {b"cam1", b"cam2"}
    for cam, clip, step in (("cam1", clips["a30"], 1), ("cam2", clips["b30"], 2)):
        frames = decode_frames(frames_reader.records, cam)
        first = _first_session(frames)
        # sampling rule: 10 fps source -> every frame at 10 fps, every second frame at 5 fps
        assert len(first) == 30 // step, f"{cam}: {len(first)} frames in the first session"
        # gap-free, increasing sequence numbers across the reconnect; session increments
        assert [f.seq for f in frames] == list(range(frames[0].seq, frames[0].seq + len(frames)))
        assert frames[-1].session > frames[0].session
        pts = [f.pts for f in first]
        assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), f"{cam}: pts not increasing: {pts}"
        captures = [f.capture_ns for f in frames]
        assert captures == sorted(captures)
        ref = reference_frames(clip)
        for f in first:
            assert (f.height, f.width, f.channels, f.encoding) == (120, 180, 1, "gray8")
            index = round((f.pts - first[0].pts) * 10)
            assert index % step == 0
            assert np.array_equal(f.pixels()[:, :, 0], ref[index]), f"{cam}: pixels of frame {index} differ"
    status_reader.until(lambda r: len(decode_status(r)) >= 6, timeout_s=5)
    states = [(s.camera_id, s.state) for s in decode_status(status_reader.records)]
    for cam in ("cam1", "cam2"):
        mine = [state for c, state in states if c == cam]
        # online, end of the clip -> reconnecting, online again, offline when the service stops
        assert mine[:3] == ["online", "reconnecting", "online"] and mine[-1] == "offline", f"{cam}: {mine}"
