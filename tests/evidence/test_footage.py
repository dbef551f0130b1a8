"""Footage for retraining against a real Redis timeline: a confidently normal segment is kept as video that
training reads, a segment near an alert or above the margin is not, an alert vetoes what overlaps it, and each
camera's footage stays within its bounds."""

from __future__ import annotations

import uuid
from collections import Counter

import numpy as np

from vigil.model.data import list_videos, read_video
from vigil.services.evidence.footage import FootageConfig, FootageKeeper, S
from vigil.shared.redis_keys import timeline_key
from vigil.shared.schemas import Alert, FrameMessage

T0 = 1_790_000_000 * S


def _frames(cam: str, seconds: int, fps: int = 10) -> list[FrameMessage]:
    rng = np.random.default_rng(0)
    return [FrameMessage.from_pixels(cam, seq=i, pts=i / fps, capture_ns=T0 + i * S // fps,
                                     image=rng.integers(0, 255, (24, 36), dtype=np.uint8))
            for i in range(seconds * fps)]  # fmt: skip


def _timeline(client, cam: str, seconds: int, score=lambda t: 0.0) -> None:  # noqa: ANN001
    for t in range(seconds):
        client.xadd(timeline_key(cam), {"t_ns": T0 + t * S, "score": f"{score(t):.3f}", "threshold": "2.0"})


def _keeper(tmp_path, client, **kw: object) -> FootageKeeper:  # noqa: ANN001
    config = FootageConfig(tmp_path / "footage", every_ns=5 * S, segment_ns=4 * S, guard_ns=2 * S, **kw)
    return FootageKeeper(config, client, Counter())


def test_a_confidently_normal_segment_is_kept_as_training_video(tmp_path, redis_client) -> None:  # noqa: ANN001
    cam = f"fo-{uuid.uuid4().hex[:8]}"
    _timeline(redis_client, cam, 12)
    keeper = _keeper(tmp_path, redis_client)
    frames = _frames(cam, 10)
    [path] = keeper.sample({cam: frames})
    assert path.parent.name == cam and keeper.counts["kept"] == 1
    assert keeper.sample({cam: frames}) == []  # one segment per every_ns
    [video] = list_videos(tmp_path / "footage")
    pixels = read_video(video, 24, 36, 1)
    assert pixels.shape[0] == 41  # 4 s at 10 fps, both ends included
    # the segment ends guard_ns (2 s) before the newest frame (9.9 s): frames 39..79
    np.testing.assert_array_equal(pixels[:, :, :, 0], np.stack([f.pixels()[:, :, 0] for f in frames[39:80]]))  # lossless
    redis_client.delete(timeline_key(cam))


def test_no_segment_above_the_margin_or_near_an_alert_and_alerts_veto(tmp_path, redis_client) -> None:  # noqa: ANN001
    hot, near, later = (f"fo-{n}-{uuid.uuid4().hex[:6]}" for n in ("hot", "near", "later"))
    _timeline(redis_client, hot, 12, score=lambda t: 1.5 if t == 6 else 0.0)  # 0.5 below a threshold of 2.0
    for cam in (near, later):
        _timeline(redis_client, cam, 12)
    keeper = _keeper(tmp_path, redis_client)
    keeper.on_alert(Alert(alert_id=f"{near}:1:1", camera_id=near, event="open", start_seq=90, start_ns=T0 + 9 * S,
                          peak_score=5, score=5, threshold=2, peak_seq=90))  # fmt: skip
    kept = keeper.sample({cam: _frames(cam, 10) for cam in (hot, near, later)})
    assert [p.parent.name for p in kept] == [later] and keeper.counts["not_normal"] == 1
    keeper.on_alert(Alert(alert_id=f"{later}:1:1", camera_id=later, event="close", start_seq=70, end_seq=75,
                          start_ns=T0 + 7 * S, end_ns=T0 + 75 * S // 10, peak_score=5, score=1, threshold=2,
                          peak_seq=72))  # an alert that opened later, overlapping the kept segment  # fmt: skip
    assert not kept[0].exists() and keeper.counts["vetoed"] == 1
    for cam in (hot, near, later):
        redis_client.delete(timeline_key(cam))


def test_each_camera_keeps_at_most_its_bounds(tmp_path, redis_client) -> None:  # noqa: ANN001
    cam = f"fo-b-{uuid.uuid4().hex[:8]}"
    keeper = _keeper(tmp_path, redis_client, max_segments=2)
    frames = _frames(cam, 40)
    for end in range(10, 41, 6):  # the stream goes on (and the scorer's timeline with it); a segment every 5 s
        redis_client.delete(timeline_key(cam))
        _timeline(redis_client, cam, end)
        keeper.sample({cam: [f for f in frames if f.capture_ns < T0 + end * S]})
    assert keeper.counts["kept"] >= 4 and len(keeper.store.segments(cam)) == 2
    assert keeper.counts["trimmed"] == keeper.counts["kept"] - 2
    redis_client.delete(timeline_key(cam))
