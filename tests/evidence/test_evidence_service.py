"""`vigil evidence` against the real Kafka and Redis, on real Ped2 frames: snapshot, clip, TTLs, hostile alerts,
shutdown flush and a restart that resumes the alert stream and refills its ring."""

from __future__ import annotations

import io
import time

import cv2
import numpy as np

from tests.evidence.conftest import FPS, S, wait_for
from vigil.shared.redis_keys import (
    EVIDENCE_READY_CHANNEL,
    evidence_clip_key,
    evidence_key,
    evidence_snapshot_key,
    latest_frame_key,
)
from vigil.shared.schemas import Alert

BOX = (0.6, 0.55, 0.95, 0.95)
"""The alert's box (fractions): the bottom right; the top left of the snapshot keeps the real pixels."""


def _alert(feed, event: str, start: int, end: int | None, peak: int, **kw) -> Alert:  # noqa: ANN001
    fields = {"alert_id": Alert.make_id(feed.camera, start, feed.capture_ns(start)), "camera_id": feed.camera,
              "event": event, "start_seq": start, "end_seq": end, "start_ns": feed.capture_ns(start),
              "end_ns": feed.capture_ns(end) if end is not None else None, "peak_score": 6.0, "score": 6.0,
              "threshold": 3.0, "peak_seq": peak, "box": BOX, "box_px": (108, 66, 171, 114)}  # fmt: skip
    return Alert(**(fields | kw))


def _xadd(redis_client, settings, alert: Alert | str) -> str:  # noqa: ANN001
    text = alert if isinstance(alert, str) else alert.to_json()
    return redis_client.xadd(settings.alerts_stream, {"json": text}).decode()


def _hash(redis_client, alert_id: str) -> dict[str, str]:  # noqa: ANN001
    return {k.decode(): v.decode() for k, v in redis_client.hgetall(evidence_key(alert_id)).items()}


def _final(redis_client, alert_id: str, timeout_s: float = 40.0) -> dict[str, str]:  # noqa: ANN001
    return wait_for(lambda: (h := _hash(redis_client, alert_id)).get("status") == "final" and h, timeout_s,
                    f"no final evidence for {alert_id}")  # fmt: skip


def _clip_frames(data: bytes) -> tuple[list[np.ndarray], str]:
    import av

    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
        return frames, container.streams.video[0].codec_context.name


def _hot_heat(height: int = 15, width: int = 23) -> np.ndarray:
    heat = np.zeros((height, width), np.float32)
    heat[int(0.7 * height) :, int(0.7 * width) :] = 1.0
    return heat


def test_snapshot_is_the_real_peak_frame_and_clip_plays(
    evidence_settings, feed, run_evidence, redis_client, ped2_frames  # noqa: ANN001
) -> None:  # fmt: skip
    f = feed()
    f.frames(ped2_frames[:60])
    f.score(25, _hot_heat())
    f.flush()
    pubsub = redis_client.pubsub()
    pubsub.subscribe(EVIDENCE_READY_CHANNEL)
    running = run_evidence(evidence_settings)
    wait_for(lambda: (ring := running.service.core.rings.get(f.camera)) and ring.scores, 30, "the score never arrived")
    alert = _alert(f, "close", 20, 30, 25)
    _xadd(redis_client, evidence_settings, alert)

    h = _final(redis_client, alert.alert_id)
    # the clip: 1 s before start (frame 10) to 1 s after end (frame 40), at the camera's 10 fps
    assert (h["first_seq"], h["last_seq"], h["frames"], h["clip_mime"]) == ("10", "40", "31", "video/mp4"), h
    clip = redis_client.get(evidence_clip_key(alert.alert_id))
    assert clip[4:8] == b"ftyp" and int(h["clip_bytes"]) == len(clip)
    assert clip.find(b"moov") < clip.find(b"mdat"), "faststart: the index comes before the media"
    frames, codec = _clip_frames(clip)
    assert codec == "h264" and len(frames) == 31 and frames[0].shape == (120, 180, 3)
    # the clip's frame 15 is Ped2 frame 25 (away from the box drawn on it)
    assert np.abs(frames[15][:60, :100, 1].astype(int) - ped2_frames[25][:60, :100, 0]).mean() < 6

    snap = cv2.imdecode(np.frombuffer(redis_client.get(evidence_snapshot_key(alert.alert_id)), np.uint8), cv2.IMREAD_COLOR)
    assert snap.shape == (120, 180, 3) and int(h["snapshot_bytes"]) > 1000
    real = ped2_frames[:, :60, :100, 0].astype(int)
    diffs = [np.abs(snap[:60, :100, 1].astype(int) - real[i]).mean() for i in range(60)]
    assert int(np.argmin(diffs)) == 25 and diffs[25] < 2.0, diffs[20:31]
    # the error map and the box are drawn at the bottom right: its colours differ from the gray frame there
    corner = snap[100:, 150:].astype(int)
    assert np.abs(corner[..., 2] - corner[..., 0]).mean() > 20
    assert "error map" not in h["problem"], h["problem"]

    retention = evidence_settings.retention_s
    for key in (evidence_key(alert.alert_id), evidence_snapshot_key(alert.alert_id), evidence_clip_key(alert.alert_id)):
        assert 0 < redis_client.ttl(key) <= retention, key
    latest = wait_for(lambda: redis_client.get(latest_frame_key(f.camera)), 10, "no latest frame")
    assert latest[:2] == b"\xff\xd8" and 0 < redis_client.ttl(latest_frame_key(f.camera)) <= 30
    assert redis_client.xpending(evidence_settings.alerts_stream, evidence_settings.alerts_group)["pending"] == 0
    ids = [m["data"] for m in iter(lambda: pubsub.get_message(timeout=1.0), None) if m["type"] == "message"]
    assert alert.alert_id.encode() in ids
    pubsub.close()


def test_hostile_alerts_cost_one_alert_each(
    evidence_settings, feed, run_evidence, redis_client, ped2_frames  # noqa: ANN001
) -> None:  # fmt: skip
    f = feed()
    f.frames(ped2_frames[:60])
    f.flush()
    running = run_evidence(evidence_settings)
    running.wait_assigned()
    unknown = _alert(f, "close", 20, 30, 25, camera_id="no-such-camera", alert_id="no-such-camera:20:1")
    future = _alert(f, "close", 20, 30, 25, alert_id=f"{f.camera}:future", start_ns=f.capture_ns(20) + 10**6 * S,
                    end_ns=f.capture_ns(30) + 10**6 * S)  # fmt: skip
    backwards = _alert(f, "close", 30, 20, 99, alert_id=f"{f.camera}:backwards", start_ns=f.capture_ns(30),
                       end_ns=f.capture_ns(20))  # fmt: skip
    good = _alert(f, "close", 20, 30, 25)
    for entry in ("{not json", '{"alert_id": "x"}', unknown, future, backwards, good):
        _xadd(redis_client, evidence_settings, entry)

    h = _final(redis_client, good.alert_id)
    assert h["frames"] == "31" and h["problem"].startswith("no error map"), h
    bad = _final(redis_client, unknown.alert_id)
    assert "no frames of camera no-such-camera" in bad["problem"] and "clip_bytes" not in bad
    assert not redis_client.exists(evidence_clip_key(unknown.alert_id), evidence_snapshot_key(unknown.alert_id))
    assert "in the future" in _final(redis_client, future.alert_id)["problem"]
    odd = _final(redis_client, backwards.alert_id)
    assert "peak_seq 99" in odd["problem"] and int(odd["snapshot_bytes"]) > 0, odd
    wait_for(lambda: redis_client.xpending(evidence_settings.alerts_stream, evidence_settings.alerts_group)["pending"] == 0,
             10, "every entry, malformed ones too, is acknowledged")  # fmt: skip
    assert running.service.core.counts["alerts_malformed"] == 2


def test_shutdown_flushes_pending_evidence(
    evidence_settings, feed, run_evidence, redis_client, ped2_frames  # noqa: ANN001
) -> None:  # fmt: skip
    f = feed()
    f.frames(ped2_frames[:40])
    f.flush()
    running = run_evidence(evidence_settings)
    alert = _alert(f, "open", 20, None, 25)
    _xadd(redis_client, evidence_settings, alert)
    pre = wait_for(lambda: (h := _hash(redis_client, alert.alert_id)).get("status") == "preliminary" and h, 30,
                   "no preliminary evidence soon after open")  # fmt: skip
    assert pre["first_seq"] == "10" and pre["last_seq"] == "39", pre
    running.stop()
    h = _hash(redis_client, alert.alert_id)
    assert h["status"] == "final" and "alert not closed" in h["problem"], h
    assert redis_client.xpending(evidence_settings.alerts_stream, evidence_settings.alerts_group)["pending"] == 0


def test_restart_resumes_the_alert_stream_and_refills_the_ring(
    evidence_settings, feed, run_evidence, redis_client, ped2_frames  # noqa: ANN001
) -> None:  # fmt: skip
    f = feed()
    f.frames(ped2_frames[:30])
    f.flush()
    first = run_evidence(evidence_settings)
    alert = _alert(f, "open", 20, None, 25)
    _xadd(redis_client, evidence_settings, alert)
    wait_for(lambda: _hash(redis_client, alert.alert_id).get("status") == "preliminary", 30, "no preliminary evidence")
    first.stop(flush=False)  # a crash: the open entry stays pending, the ring is lost
    assert redis_client.xpending(evidence_settings.alerts_stream, evidence_settings.alerts_group)["pending"] == 1

    f.frames(ped2_frames[30:60], first=30)
    f.flush()
    closed = _alert(f, "close", 20, 32, 25)
    later = _alert(f, "close", 40, 45, 42)
    _xadd(redis_client, evidence_settings, closed)
    _xadd(redis_client, evidence_settings, later)
    second = run_evidence(evidence_settings)
    h = _final(redis_client, alert.alert_id)
    assert (h["first_seq"], h["last_seq"], h["frames"]) == ("10", "42", "33"), h
    assert _final(redis_client, later.alert_id)["frames"] == "26"
    assert second.service.core.rings.get(f.camera).frames[0].seq == 0, "the ring refilled from Kafka"
    wait_for(lambda: redis_client.xpending(evidence_settings.alerts_stream, evidence_settings.alerts_group)["pending"] == 0,
             10, "the resumed entries are acknowledged")  # fmt: skip
    assert FPS == 10 and time.time_ns() - f.t0_ns < evidence_settings.ring_age_s * S
