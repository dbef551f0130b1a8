"""The pure parts of `vigil evidence` (no server): ring bounds, the byte estimate, capped clips, long alerts, settings."""

from __future__ import annotations

import io

import numpy as np
import pytest

from vigil.services.evidence.clip import encode_capped, pick_format
from vigil.services.evidence.core import EvidenceConfig, EvidenceCore
from vigil.services.evidence.ring import FRAME_OVERHEAD_BYTES, RingBounds, Rings, frame_bytes
from vigil.services.evidence.settings import EvidenceSettings
from vigil.shared.schemas import Alert, FrameMessage
from vigil.tools.bench_evidence import ring_bytes_per_frame

S = 1_000_000_000
T0 = 1_800_000_000 * S


def _frame(cam: str, seq: int, t_ns: int, size: tuple[int, int] = (4, 6)) -> FrameMessage:
    return FrameMessage.from_pixels(cam, seq=seq, pts=seq / 10, capture_ns=t_ns, image=np.zeros(size, np.uint8))


def _consistent(rings: Rings) -> None:
    assert rings.nbytes == sum(frame_bytes(f) for r in rings.cameras.values() for f in r.frames)
    assert all(r.nbytes == sum(frame_bytes(f) for f in r.frames) for r in rings.cameras.values())


def test_ring_holds_its_frame_and_age_bounds() -> None:
    rings = Rings(RingBounds(max_frames=5, max_age_ns=2 * S, max_bytes=10**9, max_cameras=10))
    for seq in range(8):
        assert rings.add_frame(_frame("a", seq, T0 + seq * S // 10), now_ns=T0)
    assert [f.seq for f in rings.get("a").frames] == [3, 4, 5, 6, 7] and rings.evicted["max_frames"] == 3
    assert rings.add_frame(_frame("a", 8, T0 + 5 * S), now_ns=T0 + 5 * S)  # 5 s later: the older frames age out
    assert [f.seq for f in rings.get("a").frames] == [8] and rings.evicted["max_age"] == 4  # and one more max_frames
    assert not rings.add_frame(_frame("a", 9, T0), now_ns=T0 + 10 * S) and rings.dropped["stale"] == 1
    assert not rings.add_frame(_frame("a", 8, T0 + 5 * S), now_ns=T0 + 5 * S) and rings.dropped["out_of_order"] == 1
    _consistent(rings)


def test_ring_holds_its_byte_camera_and_idle_bounds() -> None:
    one = frame_bytes(_frame("a", 0, T0))
    rings = Rings(RingBounds(max_frames=100, max_age_ns=60 * S, max_bytes=10 * one, max_cameras=2))
    for seq in range(8):
        rings.add_frame(_frame("a", seq, T0 + seq), now_ns=T0)
    for seq in range(4):
        rings.add_frame(_frame("b", seq, T0 + seq), now_ns=T0 + S)
    assert rings.nbytes <= 10 * one and rings.evicted["max_bytes"] == 2
    assert len(rings.get("a").frames) == 6 and len(rings.get("b").frames) == 4, "the largest ring gives way"
    assert not rings.add_frame(_frame("c", 0, T0), now_ns=T0) and rings.dropped["max_cameras"] == 1
    assert rings.evict_idle(now_ns=T0 + 61 * S, idle_ns=60 * S) == ["a"] and rings.evicted["idle"] == 6
    assert rings.add_frame(_frame("c", 0, T0 + 61 * S), now_ns=T0 + 61 * S)
    _consistent(rings)


def test_frame_overhead_estimate_matches_the_measured_memory(ped2_frames) -> None:  # noqa: ANN001
    for encoding in ("gray8", "jpeg"):
        held, payload, _ = ring_bytes_per_frame(ped2_frames[:50], encoding)
        assert abs((held - payload) - FRAME_OVERHEAD_BYTES) < 0.25 * FRAME_OVERHEAD_BYTES, (encoding, held, payload)


def test_clip_over_the_cap_is_made_smaller_then_cut_around_the_peak() -> None:
    import av

    fmt = pick_format("auto")
    noise = np.random.default_rng(0).integers(0, 256, (60, 120, 180, 3), dtype=np.uint8)  # incompressible
    capped = encode_capped(list(noise), 10.0, fmt, crf=20, max_bytes=60_000, keep=40)
    assert len(capped.data) <= 60_000 and capped.attempts > 1
    assert capped.first <= 40 <= capped.last and capped.last - capped.first + 1 < 60
    with av.open(io.BytesIO(capped.data)) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == capped.last - capped.first + 1
    with pytest.raises(ValueError, match="over the cap"):
        encode_capped(list(noise[:2]), 10.0, fmt, crf=20, max_bytes=100)


def test_long_alert_clip_is_capped_around_its_peak() -> None:
    config = EvidenceConfig(before_ns=S, after_ns=S, max_alert_ns=2 * S)
    core = EvidenceCore(config, pick_format("auto"))
    for seq in range(120):
        core.on_frame(_frame("a", seq, T0 + seq * S // 10, (24, 36)).encode(), now_ns=T0)
    alert = Alert(alert_id="a:5", camera_id="a", event="close", start_seq=5, end_seq=110, start_ns=T0 + S // 2,
                  end_ns=T0 + 11 * S, peak_score=9, score=1, threshold=2, peak_seq=80)  # fmt: skip
    core.on_alert("1-0", {b"json": alert.to_json().encode()}, now_ns=T0)
    ev = core.render(core.jobs["a:5"], "final", now_ns=T0)
    assert (ev.first_seq, ev.last_seq, ev.frames) == (60, 100, 41), ev
    assert ev.snapshot is not None and ev.clip is not None


def test_settings_come_from_the_environment_and_are_checked(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("VIGIL_EVIDENCE_RETENTION_S", "3600")
    monkeypatch.setenv("VIGIL_EVIDENCE_CLIP_CODEC", "vp8")
    s = EvidenceSettings()
    assert (s.retention_s, s.clip_codec, s.ring_frames) == (3600, "vp8", 300)
    with pytest.raises(ValueError, match="must fit in ring_age_s"):
        EvidenceSettings(ring_age_s=10)
    with pytest.raises(ValueError):
        EvidenceSettings(retention_s=1)
    assert pick_format("vp8").mime == "video/webm"


def test_a_shutdown_never_replaces_a_better_snapshot_and_says_why() -> None:
    core = EvidenceCore(EvidenceConfig(), pick_format("auto"))
    for seq in range(40):
        core.on_frame(_frame("s", seq, T0 + seq * S // 10, size=(24, 36)).encode(), now_ns=T0)
    alert = Alert(alert_id="s:5:0", camera_id="s", event="open", start_seq=5, start_ns=T0 + S // 2, peak_score=5,
                  score=5, threshold=2, peak_seq=20, box=(0.0, 0.0, 0.5, 0.5))  # fmt: skip
    core.on_alert("1-0", {b"json": alert.to_json().encode()}, now_ns=T0)
    job = core.jobs["s:5:0"]
    first = core.render(job, "preliminary", now_ns=T0)
    assert first.snapshot is not None and job.snapshot_grade == (20, 2)
    core.done(first)
    ring = core.rings.get("s")
    ring.frames = type(ring.frames)(f for f in ring.frames if f.seq > 25)  # the peak frame has left the ring
    [(job, status)] = core.flush(now_ns=T0)
    final = core.render(job, status, now_ns=T0)
    assert final.snapshot is None and final.clip is not None
    assert "finalised at shutdown" in final.problem and "earlier snapshot is kept" in final.problem, final.problem
