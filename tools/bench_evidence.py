"""`vigil bench evidence`: what evidence costs on real frames: bytes per frame in the ring, snapshot + clip bytes
per alert (1, 5 and 10 s alerts), and the time to render and encode them.

No server is needed: the evidence core (:class:`~vigil.services.evidence.core.EvidenceCore`) renders exactly
what `vigil evidence` writes, from UCSD Ped2 frames as ingest publishes them (120x180 gray, 10 fps). The
figures go into the ``evidence`` section of docs/benchmarks.md. :func:`render_alert` is also how
`vigil bench api` makes the real snapshots and clips it serves.
"""

from __future__ import annotations

import gc
import logging
import os
import time
import tracemalloc
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

S = 1_000_000_000
FPS = 10
ALERT_LENGTHS_S = (1.0, 5.0, 10.0)
ENCODINGS = ("gray8", "jpeg")


@dataclass(frozen=True)
class RingCost:
    """What one frame costs in a camera's ring (bytes)."""

    encoding: str
    held: float
    """Memory held per decoded frame message (tracemalloc)."""
    payload: float
    record: int
    """The Kafka record of the frame."""


@dataclass(frozen=True)
class AlertCost:
    """What one alert's final evidence costs."""

    alert_s: float
    frames: int
    snapshot_bytes: int
    clip_bytes: int
    encode_s: float
    codec: str


def load_frames(data: Path, clip: str) -> np.ndarray:
    """The clip's frames as ingest publishes them: ``(T, 120, 180, 1)`` uint8 gray."""
    from vigil.model.data import read_video

    return read_video(data / "test" / f"{clip}.mkv", 120, 180, 1)


def ring_cost(images: np.ndarray, encoding: str) -> RingCost:
    """Memory held per frame by a ring of decoded frame messages, their payload and Kafka record bytes."""
    from vigil.shared.schemas import FrameMessage

    records = [FrameMessage.from_pixels("cam-1", seq=i, pts=i / FPS, capture_ns=time.time_ns(), image=im,
                                        encoding=encoding).encode() for i, im in enumerate(images)]  # fmt: skip
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    ring = deque(FrameMessage.decode(r) for r in records)
    gc.collect()
    held = (tracemalloc.get_traced_memory()[0] - before) / len(ring)
    tracemalloc.stop()
    return RingCost(encoding, held, sum(len(f.payload) for f in ring) / len(ring), len(records[0]))


def ring_bytes_per_frame(images: np.ndarray, encoding: str) -> tuple[float, float, int]:
    """:func:`ring_cost` as ``(memory held per frame, payload bytes per frame, Kafka record bytes)``."""
    cost = ring_cost(images, encoding)
    return cost.held, cost.payload, cost.record


def _peak_score(camera: str, seq: int, capture_ns: int) -> bytes:
    """The worker's score message of the alert's peak frame, with an error map where the box is."""
    from vigil.shared.schemas import ErrorFeatures, ScoreMessage

    heat = np.zeros((15, 23), np.float32)
    heat[9:13, 14:20] = 1.0
    payload, scale = ScoreMessage.quantize_heatmap(heat)
    return ScoreMessage(camera_id=camera, seq=seq, capture_ns=capture_ns, processed_ns=time.time_ns(), model_id="m",
                        model_version="1", warmup=False, latency_ms=1.0, heatmap_height=15, heatmap_width=23,
                        heatmap_scale=scale, payload=payload,
                        features=ErrorFeatures(mse=0.01, psnr=30, patch_max=0.1)).encode()  # fmt: skip


def render_alert(images: np.ndarray, alert_s: float, encoding: str = "gray8", alert_id: str = "cam-1:x") -> tuple[Any, str]:
    """The final :class:`~vigil.services.evidence.core.Evidence` of an alert of ``alert_s`` seconds in the middle
    of ``images`` (10 fps), rendered by the evidence core from its ring, and the clip's codec."""
    from vigil.services.evidence.clip import pick_format
    from vigil.services.evidence.core import EvidenceConfig, EvidenceCore
    from vigil.shared.schemas import Alert, FrameMessage

    camera = alert_id.split(":", 1)[0]
    core = EvidenceCore(EvidenceConfig(), pick_format("auto"))
    t0 = time.time_ns() - len(images) * S // FPS
    for seq, image in enumerate(images):
        core.on_frame(FrameMessage.from_pixels(camera, seq=seq, pts=seq / FPS, capture_ns=t0 + seq * S // FPS,
                                               image=image, encoding=encoding).encode(), time.time_ns())  # fmt: skip
    length = int(alert_s * FPS)
    start = (len(images) - length) // 2
    peak = start + length // 2
    core.on_score(_peak_score(camera, peak, t0 + peak * S // FPS), time.time_ns())
    alert = Alert(alert_id=alert_id, camera_id=camera, event="close", start_seq=start, end_seq=start + length - 1,
                  start_ns=t0 + start * S // FPS, end_ns=t0 + (start + length - 1) * S // FPS, peak_score=6, score=6,
                  threshold=3, peak_seq=peak, box=(0.6, 0.55, 0.9, 0.9))  # fmt: skip
    core.on_alert("1-0", {b"json": alert.to_json().encode()}, time.time_ns())
    return core.render(core.jobs[alert_id], "final", time.time_ns()), core.fmt.codec


def alert_cost(images: np.ndarray, alert_s: float, encoding: str = "gray8", repeats: int = 3) -> AlertCost:
    """The final evidence of an alert of ``alert_s`` seconds: bytes, and the best of ``repeats`` render times."""
    best = None
    for _ in range(repeats):
        ev, codec = render_alert(images, alert_s, encoding)
        if best is None or ev.encode_s < best.encode_s:
            best = AlertCost(alert_s, ev.frames, len(ev.snapshot or b""), len(ev.clip or b""), ev.encode_s, codec)
    assert best is not None
    return best


def shown(path: Path) -> str:
    """A data folder as the docs show it: relative to the checkout's parent when it is below it."""
    from vigil.tools.launcher import repo_root

    try:
        root = repo_root()
    except FileNotFoundError:
        return str(path)
    full = path.resolve()
    if full.is_relative_to(root):
        return str(full.relative_to(root))
    return "../" + str(full.relative_to(root.parent)) if full.is_relative_to(root.parent) else str(path)


def markdown(data: Path, clip: str, rings: list[RingCost], costs: list[AlertCost]) -> str:
    """The ``evidence`` section of docs/benchmarks.md."""
    from vigil.tools.benchdoc import machine_line

    gray = next(r for r in rings if r.encoding == "gray8")
    mid = next((c for c in costs if c.alert_s == 5.0), costs[0])
    lines = [
        "## Evidence (`vigil bench evidence`)",
        "",
        f"Command: `vigil bench evidence --clip {clip}`  ",
        f"Machine: {machine_line()}; shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end).  ",
        f"Frames: UCSD Ped2 {clip} from `{shown(data)}` as ingest publishes them (120x180 gray, {FPS} fps); the evidence "
        "core renders exactly what `vigil evidence` writes (3 s before + the alert + 3 s after, crf 26), best of 3.",
        "",
        "| frames published as | memory per ring frame | of which payload | Kafka record |",
        "|---|---|---|---|",
        *[f"| `{r.encoding}` | {r.held:,.0f} B | {r.payload:,.0f} B | {r.record:,} B |" for r in rings],
        "",
        f"A camera's full ring (300 frames, 30 s at {FPS} fps) holds {300 * gray.held / 1e6:.1f} MB of `gray8` frames. "
        "Per frame, evidence adds no bytes to Kafka (the service reads the existing frame and score topics).",
        "",
        "| alert length | clip frames | snapshot | clip | per alert | render + encode | codec |",
        "|---|---|---|---|---|---|---|",
        *[f"| {c.alert_s:g} s | {c.frames} | {c.snapshot_bytes:,} B | {c.clip_bytes:,} B | "
          f"{(c.snapshot_bytes + c.clip_bytes) / 1000:.1f} kB | {c.encode_s:.3f} s | {c.codec} |" for c in costs],  # fmt: skip
        "",
        f"At {(mid.snapshot_bytes + mid.clip_bytes) / 1000:.0f} kB per {mid.alert_s:g} s alert, 10,000 alerts kept for "
        f"the retention period hold about {(mid.snapshot_bytes + mid.clip_bytes) * 10_000 / 1e6:.0f} MB of Redis.",
    ]  # fmt: skip
    return "\n".join(lines)


def run_bench(data: Path | None = None, clip: str = "Test001", write: bool = True, doc: Path | None = None) -> str:
    """Measure, write the ``evidence`` section of docs/benchmarks.md (unless ``write`` is False), return the markdown."""
    from vigil.tools.benchdoc import DEFAULT_DOC, write_section
    from vigil.tools.launcher import default_ped2_dir

    data = data or default_ped2_dir()
    images = load_frames(data, clip)
    rings = [ring_cost(images, e) for e in ENCODINGS]
    costs = [alert_cost(images, s) for s in ALERT_LENGTHS_S]
    text = markdown(data, clip, rings, costs)
    if write:
        write_section("evidence", text, doc or DEFAULT_DOC)
    return text
