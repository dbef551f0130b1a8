"""Evidence as `vigil evidence` writes it (a real JPEG frame, a real clip made with PyAV, the hash, the latest
frame, the timeline) written straight into the real Redis by the tests, and a helper to make the clip."""

from __future__ import annotations

import io
import os
import tempfile
import time

import numpy as np


def jpeg(width: int = 180, height: int = 120, shade: int = 90, text: str = "",
         box: tuple[float, float, float, float] | None = None) -> bytes:  # fmt: skip
    """A real JPEG: a gradient with a bright block, a caption and (as the evidence snapshot has) a red box."""
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([(x * 255 // width), (y * 255 // height), np.full_like(x, shade)], -1).astype(np.uint8)
    img[40:70, 70:100] = 255
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    if text:
        draw.text((6, 6), text, fill=(255, 255, 255))
    if box:
        draw.rectangle((box[0] * width, box[1] * height, box[2] * width, box[3] * height), outline=(255, 40, 40), width=2)
    out = io.BytesIO()
    pil.save(out, format="JPEG", quality=85)
    return out.getvalue()


def make_clip(frames: int = 30, fps: int = 10, width: int = 180, height: int = 120, container: str = "mp4") -> bytes:
    """A real clip: H.264 in MP4 (``+faststart``) or VP8 in WebM, a bright square crossing a gradient."""
    import av

    codec, options = ("libx264", {"preset": "veryfast", "crf": "28"}) if container == "mp4" else ("libvpx", {"b": "1M"})
    fd, path = tempfile.mkstemp(suffix="." + container)
    os.close(fd)
    try:
        with av.open(path, "w", format=container, options={"movflags": "+faststart"} if container == "mp4" else {}) as out:
            stream = out.add_stream(codec, rate=fps, options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            y, x = np.mgrid[0:height, 0:width]
            for i in range(frames):
                img = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 60)], -1).astype(np.uint8)
                c = i * (width - 30) // max(1, frames - 1)
                img[40:70, c : c + 30] = 255
                out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            out.mux(stream.encode())
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)


def write_evidence(client, alert_id: str, clip: bytes, snapshot: bytes, mime: str = "video/mp4",  # noqa: ANN001
                   status: str = "final", ttl_s: int = 600, publish: bool = True) -> None:  # fmt: skip
    """Write an alert's evidence the way `vigil evidence` does, then announce it on the evidence channel."""
    from vigil.shared.redis_keys import (
        EVIDENCE_READY_CHANNEL,
        evidence_clip_key,
        evidence_key,
        evidence_snapshot_key,
    )

    pipe = client.pipeline(transaction=True)
    pipe.set(evidence_snapshot_key(alert_id), snapshot, ex=ttl_s)
    pipe.set(evidence_clip_key(alert_id), clip, ex=ttl_s)
    pipe.hset(evidence_key(alert_id), mapping={"snapshot_bytes": len(snapshot), "clip_bytes": len(clip), "clip_mime": mime,
                                               "first_seq": 180, "last_seq": 260, "frames": 80, "status": status,
                                               "created_ns": time.time_ns()})  # fmt: skip
    pipe.expire(evidence_key(alert_id), ttl_s)
    pipe.execute()
    if publish:
        client.publish(EVIDENCE_READY_CHANNEL, alert_id)


def write_live_view(client, camera: str, points: int = 120, ttl_s: int = 600) -> None:  # noqa: ANN001
    """A camera's latest frame and a score timeline (one point a second, a bump in the middle)."""
    from vigil.shared.redis_keys import latest_frame_key, timeline_key

    client.set(latest_frame_key(camera), jpeg(text=camera), ex=ttl_s)
    now = time.time_ns()
    pipe = client.pipeline(transaction=False)
    for i in range(points):
        score = 0.8 + 0.3 * np.sin(i / 6) + (6.0 if points // 2 <= i < points // 2 + 8 else 0.0)
        pipe.xadd(timeline_key(camera), {"t_ns": now - (points - i) * 10**9, "score": f"{score:.4f}", "threshold": "2.6000"})
    pipe.expire(timeline_key(camera), ttl_s)
    pipe.execute()
