"""Measure what evidence costs on real frames: ring bytes per frame, snapshot + clip bytes per alert, encode time.

Run: ``.venv/bin/python -m tests.evidence.measure [--clip Test001] [--encoding gray8|jpeg]`` (no server needed:
the core renders exactly what the service writes). Prints a Markdown table for docs/evidence.md.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
S = 1_000_000_000
FPS = 10


@dataclass(frozen=True)
class AlertCost:
    """What one alert's final evidence costs."""

    alert_s: float
    frames: int
    snapshot_bytes: int
    clip_bytes: int
    encode_s: float
    codec: str


def ring_bytes_per_frame(images: np.ndarray, encoding: str) -> tuple[float, float, int]:
    """(memory per frame held, payload bytes per frame, Kafka record bytes) of decoded frame messages (tracemalloc)."""
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
    return held, sum(len(f.payload) for f in ring) / len(ring), len(records[0])


def alert_cost(images: np.ndarray, alert_s: float, encoding: str = "gray8") -> AlertCost:
    """Render the final evidence of an alert of ``alert_s`` seconds in the middle of ``images`` (10 fps)."""
    from vigil.services.evidence.clip import pick_format
    from vigil.services.evidence.core import EvidenceConfig, EvidenceCore
    from vigil.shared.schemas import Alert, ErrorFeatures, FrameMessage, ScoreMessage

    core = EvidenceCore(EvidenceConfig(), pick_format("auto"))
    t0 = time.time_ns() - len(images) * S // FPS
    for seq, image in enumerate(images):
        core.on_frame(FrameMessage.from_pixels("cam-1", seq=seq, pts=seq / FPS, capture_ns=t0 + seq * S // FPS,
                                               image=image, encoding=encoding).encode(), time.time_ns())  # fmt: skip
    length = int(alert_s * FPS)
    start = (len(images) - length) // 2
    peak = start + length // 2
    heat = np.zeros((15, 23), np.float32)
    heat[9:13, 14:20] = 1.0
    payload, scale = ScoreMessage.quantize_heatmap(heat)
    core.on_score(ScoreMessage(camera_id="cam-1", seq=peak, capture_ns=t0 + peak * S // FPS, processed_ns=time.time_ns(),
                               model_id="m", model_version="1", warmup=False, latency_ms=1.0, heatmap_height=15,
                               heatmap_width=23, heatmap_scale=scale, payload=payload,
                               features=ErrorFeatures(mse=0.01, psnr=30, patch_max=0.1)).encode(), time.time_ns())  # fmt: skip
    alert = Alert(alert_id="cam-1:x", camera_id="cam-1", event="close", start_seq=start, end_seq=start + length - 1,
                  start_ns=t0 + start * S // FPS, end_ns=t0 + (start + length - 1) * S // FPS, peak_score=6, score=6,
                  threshold=3, peak_seq=peak, box=(0.6, 0.55, 0.9, 0.9))  # fmt: skip
    core.on_alert("1-0", {b"json": alert.to_json().encode()}, time.time_ns())
    ev = core.render(core.jobs["cam-1:x"], "final", time.time_ns())
    return AlertCost(alert_s, ev.frames, len(ev.snapshot or b""), len(ev.clip or b""), ev.encode_s, core.fmt.codec)


def main() -> None:
    """Print the figures as Markdown."""
    from vigil.model.data import read_video

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clip", default="Test001", help="A clip of data/ped2-mini/test")
    parser.add_argument("--encoding", default="gray8", choices=("gray8", "jpeg"))
    args = parser.parse_args()
    images = read_video(REPO / "data" / "ped2-mini" / "test" / f"{args.clip}.mkv", 120, 180, 1)
    held, payload, record = ring_bytes_per_frame(images, args.encoding)
    print(f"ring, {args.encoding} 120x180: {held:,.0f} bytes held per frame (payload {payload:,.0f}, overhead "
          f"{held - payload:,.0f}); Kafka record {record:,} bytes\n")  # fmt: skip
    print("| alert | clip frames | snapshot bytes | clip bytes | per alert | encode s | codec |\n|---|---|---|---|---|---|---|")
    for alert_s in (1.0, 5.0, 10.0):
        c = min((alert_cost(images, alert_s, args.encoding) for _ in range(3)), key=lambda c: c.encode_s)
        print(f"| {alert_s:g} s | {c.frames} | {c.snapshot_bytes:,} | {c.clip_bytes:,} | "
              f"{c.snapshot_bytes + c.clip_bytes:,} | {c.encode_s:.3f} | {c.codec} |")  # fmt: skip


if __name__ == "__main__":
    main()
