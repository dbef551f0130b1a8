#!/usr/bin/env bash
# GPU measurements of the streaming step (issue 18), in one run of under 8 minutes.
#
# Runs on a machine with JAX (and PyTorch) but no TensorFlow, from a copy of the repository, WITHOUT
# installing anything: it imports the `vigil` package through a folder of symbolic links (the same
# package mapping as pyproject.toml) and uses KERAS_BACKEND=jax. Needs keras (3.x), jax, numpy and
# nothing else on that Python (the step imports no pydantic, OpenCV or TensorFlow); it says what is missing and stops if they are not there.
#
# For every architecture (PredNet, the ConvLSTM autoencoder and the inpainter, from their packaged Ped2 weights)
# and every batch size it measures:
#   * device-resident step: the jitted stateless step, frames and states already on the GPU, the new
#     states fed back on the GPU: frames/s, p50 / p99 step latency;
#   * host step: StreamingPredictor.step as the worker calls it today (numpy states in and out, motion
#     off), which adds the host<->GPU copies of 2.3 MiB of state per camera: frames/s, p99;
#   * GPU memory: bytes in use and peak (jax memory_stats) per batch, state bytes per camera;
#   * cameras at 10 fps one GPU holds: the largest batch with p99 < 100 ms, frames/s / 10.
# Output: $OUT (or runs/gpu) gets gpu.json and gpu.md, the table docs/gpu.md takes.
#
# Usage:  tools/bench_gpu.sh            # the full run (GPU)
#         QUICK=1 JAX_PLATFORMS=cpu tools/bench_gpu.sh   # the CPU path check: tiny batches, seconds
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${OUT:-$REPO/runs/gpu}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
export KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # so memory_stats shows what a batch really needs
export TF_CPP_MIN_LOG_LEVEL=2

SHIM="$(mktemp -d)"
trap 'rm -rf "$SHIM"' EXIT
mkdir -p "$SHIM/vigil"
for f in "$REPO"/vigil/*.py; do ln -s "$f" "$SHIM/vigil/$(basename "$f")"; done
ln -s "$REPO/shared" "$SHIM/vigil/shared"
ln -s "$REPO/model" "$SHIM/vigil/model"
export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"

echo "== machine"; (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi")
"$PY" - <<'EOF'
import importlib, sys
missing = [m for m in ("jax", "keras", "numpy") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {missing}; this script installs nothing (see docs/gpu.md)")
EOF

"$PY" - "$OUT_DIR" <<'EOF'
import json, os, sys, time
from pathlib import Path

import numpy as np
import jax
import keras

QUICK = os.environ.get("QUICK") == "1"
OUT = Path(sys.argv[1])
BATCHES = (1, 4) if QUICK else (1, 16, 64, 256, 1024)
HOST_BATCHES = (1, 4) if QUICK else (1, 64, 256)
SECONDS = 0.5 if QUICK else 4.0
BUDGET_S = 420  # stop adding points after 7 minutes
T0 = time.time()

import vigil.model
from vigil.model.streaming import DEFAULT_MODEL_DIR, StreamingPredictor, build_step_model
from vigil.model.architectures import get_architecture

print(f"== vigil.model from {Path(vigil.model.__file__).parent}", flush=True)

dev = jax.devices()[0]
print(f"== jax {jax.__version__} on {dev.platform}: {dev.device_kind}; keras {keras.__version__} ({keras.backend.backend()})", flush=True)


def predictors():
    """Every architecture, from its committed Ped2 model (untrained at the default config when it is missing:
    the speed does not depend on the weights); the inpainter last, the slowest (20 decoder passes a frame)."""
    for name, folder in (("prednet", "ped2"), ("convlstm-ae", "ped2-convlstm-ae"), ("inpaint", "ped2-inpaint")):
        path = DEFAULT_MODEL_DIR.parent / folder
        if (path / "config.json").is_file():
            yield name, StreamingPredictor.load(path), f"packaged Ped2 weights ({folder})"
        else:
            yield name, StreamingPredictor.build_untrained(get_architecture(name).config_type()), "untrained (speed only)"


def memory():
    stats = dev.memory_stats() or {}
    return stats.get("bytes_in_use", 0), stats.get("peak_bytes_in_use", 0)


def timed(call, seconds):
    call()  # compile / warm
    times, start = [], time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return np.asarray(times)


def device_step(predictor, batch):
    model = build_step_model(predictor.config, predictor.cell, predictor.arch)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    n_out = 1 + 4  # prediction, mse, psnr, patch_max, heatmap, then the new states

    @jax.jit
    def step(frames, states):
        outs, _ = model.stateless_call(tv, ntv, [frames, *states], training=False)
        return outs[n_out:], outs[1]

    rng = np.random.default_rng(0)
    frames = jax.device_put(rng.integers(0, 255, (batch, *predictor.input_shape), dtype=np.uint8))
    states = [jax.device_put(np.zeros((batch, *s.shape), s.dtype)) for s in predictor.initial_state()[:-1]]
    holder = {"states": states}

    def call():
        new, mse = step(frames, holder["states"])
        jax.block_until_ready(mse)
        holder["states"] = new

    return timed(call, SECONDS)


def host_step(predictor, batch):
    predictor.motion = False
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (batch, *predictor.input_shape), dtype=np.uint8)
    holder = {"states": [predictor.initial_state() for _ in range(batch)]}

    def call():
        holder["states"] = predictor.step(frames, holder["states"]).new_states

    return timed(call, SECONDS)


rows = []
for name, predictor, weights in predictors():
    for mode, batches, fn in (("device", BATCHES, device_step), ("host", HOST_BATCHES, host_step)):
        for batch in batches:
            if time.time() - T0 > BUDGET_S:
                print(f"time budget reached: skipping {name} {mode} {batch}", flush=True)
                continue
            try:
                t = fn(predictor, batch)
            except Exception as exc:  # noqa: BLE001 - an out-of-memory batch ends the row, not the run
                print(f"{name} {mode} batch {batch}: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                break
            in_use, peak = memory()
            row = {"arch": name, "weights": weights, "mode": mode, "batch": batch,
                   "fps": batch / float(np.median(t)), "p50_ms": 1000 * float(np.median(t)),
                   "p99_ms": 1000 * float(np.percentile(t, 99)), "calls": len(t),
                   "gpu_bytes_in_use": in_use, "gpu_peak_bytes": peak,
                   "state_bytes_per_camera": predictor.state_nbytes()}
            rows.append(row)
            print(f"{name:12s} {mode:6s} batch {batch:5d}: {row['fps']:9.1f} frames/s  p50 {row['p50_ms']:7.2f} ms  "
                  f"p99 {row['p99_ms']:7.2f} ms  peak {peak / 2**20:8.1f} MiB", flush=True)


def cameras(arch, mode):
    ok = [r for r in rows if r["arch"] == arch and r["mode"] == mode and r["p99_ms"] < 100]
    return max((r["fps"] / 10 for r in ok), default=0.0)


lines = [f"GPU: {dev.device_kind} ({dev.platform}), jax {jax.__version__}, keras {keras.__version__}; "
         f"{time.strftime('%Y-%m-%d %H:%M')}; {'QUICK CPU-path check, not a GPU figure' if QUICK else 'full run'}.", "",
         "| arch | mode | batch | frames/s | p50 ms | p99 ms | GPU peak MiB | state KiB/camera |",
         "|---|---|---|---|---|---|---|---|"]
lines += [f"| {r['arch']} | {r['mode']} | {r['batch']} | {r['fps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
          f"{r['gpu_peak_bytes'] / 2**20:.0f} | {r['state_bytes_per_camera'] / 1024:.0f} |" for r in rows]
lines += ["", "Cameras at 10 fps one GPU holds (largest batch with p99 < 100 ms): " + "; ".join(
    f"{a} {m} {cameras(a, m):.0f}" for a in dict.fromkeys(r["arch"] for r in rows) for m in ("device", "host"))]
(OUT / "gpu.json").write_text(json.dumps({"rows": rows, "quick": QUICK}, indent=2) + "\n")
(OUT / "gpu.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"== done in {time.time() - T0:.0f} s; wrote {OUT}/gpu.json and gpu.md")
EOF
