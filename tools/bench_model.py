"""``vigil bench model``: speed of the streaming step on this machine, state memory, FLOPs, % of peak."""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import re
import time
from pathlib import Path

import numpy as np

from vigil.model.config import PredNetConfig

log = logging.getLogger(__name__)

START, END = "<!-- bench:model:start -->", "<!-- bench:model:end -->"


def conv_flops(k: int, cin: int, cout: int, h: int, w: int) -> int:
    """Multiply-adds x 2 of a same-padded ``k x k`` convolution on an ``h x w`` map.

    Example:
        >>> conv_flops(3, 2, 4, 10, 10)
        14400
    """
    return 2 * k * k * cin * cout * h * w


def flops_per_frame(config: PredNetConfig) -> int:
    """Convolution FLOPs of one PredNet step (elementwise ops, < 2%, are left out)."""
    total = 0
    n, s, r = config.n_layers, config.stack_sizes, config.r_stack_sizes
    for lay in range(n):
        h, w = config.height // 2**lay, config.width // 2**lay
        r_in = 2 * s[lay] + r[lay] + (r[lay + 1] if lay < n - 1 else 0)
        total += conv_flops(config.r_filt_sizes[lay], r_in, 4 * r[lay], h, w)
        total += conv_flops(config.ahat_filt_sizes[lay], r[lay], s[lay], h, w)
        if lay < n - 1:
            total += conv_flops(config.a_filt_sizes[lay], 2 * s[lay], s[lay + 1], h, w)
    return total


def cpu_peak_flops() -> tuple[float, str]:
    """fp32 peak of this CPU from /proc/cpuinfo: cores x GHz x 2 FMA units x SIMD lanes x 2."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()) if "flags" in text else set()
    mhz = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    ghz = (max(mhz) if mhz else 2000.0) / 1000
    cores = os.cpu_count() or 1
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fma = 2 if "fma" in flags else 1
    peak = cores * ghz * 1e9 * 2 * lanes * fma
    units = "2 FMA units x 2 flops" if fma == 2 else "2 units"
    return peak, f"{cores} cores x {ghz:.2f} GHz x {lanes} fp32 lanes x {units}"


def time_step(predictor, batch: int, seconds: float) -> float:
    """Frames per second of ``predictor.step`` on ``batch`` cameras (after one compile step)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(batch, *predictor.input_shape), dtype=np.uint8)
    states = [predictor.initial_state() for _ in range(batch)]
    states = predictor.step(frames, states).new_states
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        states = predictor.step(frames, states).new_states
        steps += 1
    return batch * steps / (time.perf_counter() - start)


def time_motion(shape: tuple[int, int, int], seconds: float) -> float:
    """Milliseconds per frame of the ``motion_max`` feature (Farneback flow) alone, one camera."""
    from vigil.model.motion import motion_max

    rng = np.random.default_rng(1)
    prev = rng.integers(0, 255, size=(1, *shape), dtype=np.uint8)
    frame = np.roll(prev, 2, axis=2)
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        motion_max(prev, frame)
        n += 1
    return 1000 * (time.perf_counter() - start) / n


def _predictor(model_dir: Path, height: int, width: int):
    """The model at another input size: conv weights do not depend on the frame size."""
    from vigil.model.prednet import build_cell, load_cell_weights
    from vigil.model.streaming import WEIGHTS_FILE, StreamingPredictor

    base = StreamingPredictor.load(model_dir) if (model_dir / WEIGHTS_FILE).is_file() else None
    config = base.config if base else PredNetConfig()
    if (height, width) == (config.height, config.width) and base:
        return base
    config = dataclasses.replace(config, height=height, width=width)
    cell = build_cell(config, "prediction")
    if base:
        load_cell_weights(cell, model_dir / WEIGHTS_FILE)
    return StreamingPredictor(config, cell, base.model_id if base else "prednet-untrained", "bench")


def run_bench(model_dir: str | os.PathLike, batches: list[int], sizes: list[tuple[int, int]], seconds: float,
              docs: Path | None) -> str:
    """Time the streaming step over ``batches`` x ``sizes``; returns (and optionally writes) a Markdown report."""
    import keras
    from tqdm import tqdm

    peak, peak_text = cpu_peak_flops()
    rows, motion = [], {}
    for h, w in sizes:
        predictor = _predictor(Path(model_dir), h, w)
        motion[f"{h}x{w}"] = time_motion(predictor.input_shape, min(seconds, 2.0))
        flops = flops_per_frame(predictor.config)
        fps1 = None
        for b in tqdm(batches, desc=f"{h}x{w}", unit="batch"):
            fps = time_step(predictor, b, seconds)
            fps1 = fps if b == 1 else fps1
            rows.append({"size": f"{h}x{w}", "batch": b, "fps": fps, "ratio": fps / fps1 if fps1 else None,
                         "gflops": fps * flops / 1e9, "peak": fps * flops / peak,
                         "state_kib": predictor.state_nbytes() / 1024, "mflops": flops / 1e6})
    text = _report(rows, peak, peak_text, keras.backend.backend(), motion)
    if docs is not None:
        write_section(docs, text)
    return text


def _report(rows: list[dict], peak: float, peak_text: str, backend: str, motion: dict[str, float]) -> str:
    lines = [
        "## Model: PredNet streaming step (`vigil bench model`)", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, Keras backend "
        f"{backend}, CPU only (no GPU lent to this task, so no JAX-on-GPU figures). fp32 peak estimate "
        f"{peak / 1e9:.0f} GFLOP/s ({peak_text}). Shared machine: other jobs were running, so figures are a "
        "lower bound.", "",
        "`ratio` = frames/s of one batched step over frames/s of stepping the same cameras one at a time "
        "(batch 1), measured in the same run. FLOPs count the convolutions of one step. The step includes "
        "the `motion_max` feature (Farneback optical flow on the CPU, one camera at a time): "
        + ", ".join(f"{k}: {v:.1f} ms/frame" for k, v in motion.items()) + " of it.", "",
        "| input | batch | frames/s | ratio vs batch 1 | GFLOP/s | % of peak | state/camera (KiB) | MFLOP/frame |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        lines.append(f"| {r['size']} | {r['batch']} | {r['fps']:.1f} | {ratio} | {r['gflops']:.1f} | "
                     f"{100 * r['peak']:.1f} | {r['state_kib']:.0f} | {r['mflops']:.0f} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace (or append) the model section of ``docs/benchmarks.md``, keeping other sections."""
    path.parent.mkdir(parents=True, exist_ok=True)
    current = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = f"{START}\n{text}{END}"
    if START in current and END in current:
        before, rest = current.split(START, 1)
        current = before + block + rest.split(END, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(current)
