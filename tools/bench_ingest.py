"""`vigil bench ingest`: throughput per core against `ffmpeg -benchmark`, message sizes, latency.

Everything is measured in the same run on the same machine:

1. ``ffmpeg -benchmark -threads 1 -i FILE -f null -`` decodes each file; its user+system CPU time gives
   ffmpeg's frames per CPU-second (= per core).
2. PyAV decodes the same file single-threaded (decode stage), then the full ingest path runs on it:
   decode, gray conversion, resize, encode and publish to a temporary Kafka topic (every frame kept),
   timed as this process's CPU seconds until Kafka has acknowledged every frame.
3. Frame encodings (gray8, JPEG q90/q75) on UCSD Ped2 frames at the model size: bytes per message,
   lz4-compressed bytes (as the producer batches them), encode + decode CPU, pixel error.
4. Resize interpolations: time and difference to ``area``.
5. End-to-end latency (capture time -> acknowledged by Kafka) replaying a Ped2 clip in real time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

FFMPEG = "ffmpeg"


def _ffmpeg_rate(path: Path) -> tuple[float, int]:
    """ffmpeg's single-thread decode rate (frames per CPU second) and frame count."""
    cmd = [FFMPEG, "-hide_banner", "-nostats", "-benchmark", "-threads", "1", "-i", str(path), "-f", "null", "-"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    m = re.search(r"bench: utime=([\d.]+)s stime=([\d.]+)s", out)
    frames = re.findall(r"frame=\s*(\d+)", out)
    if m is None or not frames:
        raise RuntimeError(f"cannot parse ffmpeg -benchmark output: {out[-500:]}")
    return int(frames[-1]) / (float(m.group(1)) + float(m.group(2))), int(frames[-1])


def _pyav_decode_rate(path: Path) -> tuple[float, int]:
    """PyAV single-thread decode rate, frames per CPU second (decode only, no conversion)."""
    import av

    cpu0 = time.process_time()
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for _ in container.decode(stream):
            n += 1
    return n / (time.process_time() - cpu0), n


def _best(fn: Any, path: Path, repeat: int) -> tuple[float, int]:
    runs = [fn(path) for _ in range(repeat)]
    return max(r[0] for r in runs), runs[0][1]


def make_test_files(tmp: Path, seconds: float, ped2_dir: Path | None) -> dict[str, Path]:
    """A 1280x720 25 fps H.264 testsrc file, and a 360x240 one (Ped2 clips, or testsrc without them)."""
    hd = tmp / "testsrc_1280x720.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=1280x720:rate=25:duration={seconds}",
                    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "50", str(hd)], check=True)  # fmt: skip
    small = tmp / "ped2_360x240.mkv"
    clips = sorted((ped2_dir / "train").glob("Train00[1-4].mkv")) if ped2_dir else []
    if clips:
        listing = tmp / "list.txt"
        listing.write_text("".join(f"file '{c}'\n" for c in clips))
        subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(small)], check=True)
    else:
        small = tmp / "testsrc_360x240.mp4"
        subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=360x240:rate=10:duration={seconds * 6}",
                        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(small)], check=True)  # fmt: skip
    return {"1280x720": hd, "360x240": small}


def _pipeline_rate(path: Path, settings: Any, n_frames: int) -> tuple[float, float]:
    """Full ingest (decode, resize, encode, publish) of every frame: frames per CPU second and wall seconds."""
    from vigil.services.ingest.core import IngestService
    from vigil.shared.cameras import parse_cameras

    cams = parse_cameras({"cameras": [{"id": "bench", "url": str(path), "fps": 120}]}, path.parent)
    service = IngestService(settings, cams)
    done = threading.Event()
    service.publisher.on_ack = lambda _item: done.set() if service.publisher.sent >= n_frames + 1 else None
    cpu0, wall0 = time.process_time(), time.monotonic()
    service.start()
    done.wait(120)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    service.stop()
    return service.readers[0].seq / cpu, wall


def _latency(clip: Path, settings: Any, seconds: float) -> list[float]:
    """Capture -> Kafka ack latencies (s) replaying a clip in real time."""
    from vigil.services.ingest.core import IngestService
    from vigil.shared.cameras import parse_cameras

    cams = parse_cameras({"cameras": [{"id": "latency", "url": str(clip), "loop": True, "realtime": True}]}, clip.parent)
    service = IngestService(settings, cams)
    latencies: list[float] = []
    service.publisher.on_ack = lambda item: latencies.append((time.time_ns() - item.capture_ns) / 1e9) if item.is_frame else None
    service.start()
    time.sleep(seconds)
    service.stop()
    return latencies


def encoding_table(ped2_dir: Path | None, n: int = 200) -> list[dict[str, Any]]:
    """Bytes, lz4 bytes, encode+decode CPU and pixel error per encoding, on Ped2 frames at 120x180."""
    import av
    import cv2
    import lz4.frame

    from vigil.shared.schemas import FrameMessage

    clip = (ped2_dir / "test" / "Test001.mkv") if ped2_dir else None
    if clip is not None and clip.exists():
        with av.open(str(clip)) as c:
            frames = [cv2.resize(f.to_ndarray(format="gray"), (180, 120), interpolation=cv2.INTER_AREA) for f in c.decode(video=0)][:n]
    else:
        rng = np.random.default_rng(0)
        frames = [cv2.GaussianBlur(rng.integers(0, 256, (120, 180), np.uint8), (5, 5), 2) for _ in range(n)]
    rows = []
    for name, enc, q in (("gray8 (raw)", "gray8", 90), ("jpeg q90", "jpeg", 90), ("jpeg q75", "jpeg", 75)):
        t0 = time.process_time()
        msgs = [FrameMessage.from_pixels("c", seq=i, pts=0, capture_ns=1, image=f, encoding=enc, jpeg_quality=q).encode()
                for i, f in enumerate(frames)]  # fmt: skip
        t1 = time.process_time()
        decoded = [FrameMessage.decode(m).pixels()[:, :, 0] for m in msgs]
        t2 = time.process_time()
        batches = [b"".join(msgs[i : i + 16]) for i in range(0, len(msgs), 16)]
        lz4_bytes = sum(len(lz4.frame.compress(b)) for b in batches) / len(msgs)
        err = np.mean([np.mean((d.astype(np.float64) - f) ** 2) for d, f in zip(decoded, frames, strict=True)]) / 255**2
        rows.append({
            "encoding": name, "bytes": np.mean([len(m) for m in msgs]), "lz4_bytes": lz4_bytes,
            "encode_ms": (t1 - t0) / len(frames) * 1e3, "decode_ms": (t2 - t1) / len(frames) * 1e3,
            "mse": err, "psnr": 10 * np.log10(1 / err) if err > 0 else float("inf"),
        })  # fmt: skip
    return rows


def interpolation_table(files: dict[str, Path], repeat: int = 50) -> list[dict[str, Any]]:
    """Resize time per frame and RMS difference to INTER_AREA, per interpolation and source size."""
    import av
    import cv2

    from vigil.model.preprocess import INTERPOLATIONS, resize

    rows = []
    for label, path in files.items():
        with av.open(str(path)) as c:
            frame = next(c.decode(video=0)).to_ndarray(format="gray")
        ref = cv2.resize(frame, (180, 120), interpolation=cv2.INTER_AREA).astype(np.float64)
        for name, flag in INTERPOLATIONS.items():
            t0 = time.perf_counter()
            for _ in range(repeat):
                out = cv2.resize(frame, (180, 120), interpolation=flag)
            ms = (time.perf_counter() - t0) / repeat * 1e3
            rows.append({"source": label, "interpolation": name, "ms": ms, "rms_vs_area": float(np.sqrt(np.mean((out - ref) ** 2)))})
        t0 = time.perf_counter()
        for _ in range(repeat):
            out = resize(frame, 180, 120, "area")
        ms = (time.perf_counter() - t0) / repeat * 1e3
        rms = float(np.sqrt(np.mean((out - ref) ** 2)))
        rows.append({"source": label, "interpolation": "area, two-stage (ingest default)", "ms": ms, "rms_vs_area": rms})
    return rows


def run_bench(seconds: float = 8.0, ped2_dir: Path | None = None, latency_s: float = 10.0, write: bool = True) -> str:
    """Run every measurement, print the markdown and (optionally) write it to docs/benchmarks.md."""

    from vigil.services.ingest.settings import IngestSettings
    from vigil.shared.kafka import delete_topics, ensure_topics
    from vigil.shared.logging import configure_logging
    from vigil.shared.settings import TopicSettings
    from vigil.tools.benchdoc import machine_line, write_section

    configure_logging("WARNING")
    if shutil.which(FFMPEG) is None:
        raise SystemExit("ffmpeg is not installed (sudo apt-get install -y ffmpeg)")
    if ped2_dir is None:
        from vigil.tools.launcher import default_ped2_dir

        guess = default_ped2_dir()
        ped2_dir = guess if guess.exists() else None
    token = uuid.uuid4().hex[:8]
    topics = TopicSettings(frames=f"bench.ingest.frames.{token}", camera_status=f"bench.ingest.status.{token}",
                           dlq=f"bench.ingest.dlq.{token}", scores=f"bench.ingest.scores.{token}", partitions=1)  # fmt: skip
    settings = IngestSettings(topics=topics, ensure_topics=False, realtime=False, buffer_frames=100_000, max_frame_age_s=3600)
    ensure_topics(settings.kafka, {topics.frames: 1, topics.camera_status: 1, topics.dlq: 1})
    lines: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="vigil-bench-ingest-") as tmp:
            files = make_test_files(Path(tmp), seconds, ped2_dir)
            lines += _throughput_section(files, settings)
            lines += _encoding_section(ped2_dir)
            lines += _interpolation_section(files)
            clip = files["360x240"]
            lat = np.array(_latency(clip, settings, latency_s)) * 1e3
    finally:
        delete_topics(settings.kafka, [topics.frames, topics.camera_status, topics.dlq])
    lines += [
        "", f"End-to-end latency, capture time -> acknowledged by Kafka (acks=all, linger 10 ms), {len(lat)} frames of a "
        f"360x240 clip replayed in real time for {latency_s:g} s: **p50 {np.percentile(lat, 50):.1f} ms, "
        f"p99 {np.percentile(lat, 99):.1f} ms**, max {lat.max():.1f} ms.",
    ]  # fmt: skip
    header = [
        "## Ingest", "",
        f"`vigil bench ingest --seconds {seconds:g} --latency-s {latency_s:g}` on {machine_line()}; "
        f"kafka-python record CRC32C: {_crc_impl()}.", "",
    ]  # fmt: skip
    text = "\n".join(header + lines) + "\n"
    print(text)
    if write:
        print(f"written to {write_section('ingest', text)}")
    return text


def _crc_impl() -> str:
    try:
        import crc32c  # noqa: F401
    except ImportError:
        return "pure Python (the `crc32c` package is not installed)"
    return "C extension (`crc32c` package)"


def _throughput_section(files: dict[str, Path], settings: Any) -> list[str]:
    lines = [
        "Throughput per core (frames per CPU second, single-threaded decode; Kafka's own CPU not counted). "
        "Full path = decode + gray + resize to 120x180 (INTER_AREA) + gray8 message + publish, until acknowledged.",
        "",
        "| file | frames | ffmpeg -benchmark decode | PyAV decode | decode ratio | full ingest path | full / ffmpeg |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, path in files.items():
        ff, n = _best(_ffmpeg_rate, path, 3)
        py, _ = _best(_pyav_decode_rate, path, 3)
        full, _wall = _pipeline_rate(path, settings, n)
        lines.append(f"| {label} H.264 ({path.name}) | {n} | {ff:.0f} | {py:.0f} | **{py / ff:.2f}** | {full:.0f} | {full / ff:.2f} |")
    return lines


def _encoding_section(ped2_dir: Path | None) -> list[str]:
    lines = [
        "", "Frame encodings at the model size (120x180 gray, UCSD Ped2 Test001), per frame. `lz4` = bytes after the "
        "producer's lz4 batch compression (16 frames per batch); MSE on [0, 1] pixels vs the raw frame.", "",
        "| encoding | message bytes | after lz4 | encode ms | decode ms | MSE | PSNR dB |", "|---|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in encoding_table(ped2_dir):
        lines.append(
            f"| {r['encoding']} | {r['bytes']:.0f} | {r['lz4_bytes']:.0f} | {r['encode_ms']:.3f} | {r['decode_ms']:.3f} | "
            f"{r['mse']:.2e} | {r['psnr']:.1f} |"
        )
    return lines


def _interpolation_section(files: dict[str, Path]) -> list[str]:
    lines = ["", "Resize to 180x120 (one gray frame): time and RMS difference to INTER_AREA (gray levels).", "",
             "| source | interpolation | ms | RMS vs area |", "|---|---|---:|---:|"]  # fmt: skip
    for r in interpolation_table(files):
        lines.append(f"| {r['source']} | {r['interpolation']} | {r['ms']:.3f} | {r['rms_vs_area']:.2f} |")
    return lines
