"""``vigil bench model``: speed of the streaming step of every architecture on this machine, state memory,
parameters, FLOPs, % of peak and the CPU cores one camera at 10 frames/s needs.

Every point (architecture x batch, plus a short PredNet input-size sweep) is timed call by call, round-robin
over all the points, so that the load of a shared machine affects all of them alike and the ratios to batch 1
are measured in the same run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vigil.model.config import PredNetConfig

log = logging.getLogger(__name__)

START, END = "<!-- bench:model:start -->", "<!-- bench:model:end -->"
ARCHS = ("prednet", "convlstm-ae", "inpaint")
MIN_ROUNDS = 10
FPS_TARGET = 10.0
"""Frames per second of one camera in the cores-per-camera column."""


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


def _layer_flops(layer: Any, args: tuple, out: Any) -> int:
    """FLOPs (multiply-adds x 2) of one call of a Keras conv layer, from its kernel shape and its output (or, for
    a transposed conv, input) positions: ``2 x positions x prod(kernel shape)``."""
    import keras

    if isinstance(layer, keras.layers.ConvLSTM2D):  # (B, T, h, w, f): input and recurrent conv at every step
        kernels = int(np.prod(layer.cell.kernel.shape)) + int(np.prod(layer.cell.recurrent_kernel.shape))
        return 2 * int(np.prod(tuple(out.shape)[:-1])) * kernels
    positions = tuple(args[0].shape if isinstance(layer, keras.layers.Conv2DTranspose) else out.shape)[:-1]
    return 2 * int(np.prod(positions)) * int(np.prod(layer.kernel.shape))


@contextlib.contextmanager
def _python_map() -> Iterator[None]:
    """Make ``keras.ops.map`` a Python loop for a while: its function is then called exactly once per element
    (Keras's TensorFlow ``map`` calls it once more to infer the output signature; JAX's traces it once for all)."""
    from keras import ops, tree

    def loop_map(f: Any, xs: Any) -> Any:
        flat = tree.flatten(xs)
        outs = [f(tree.pack_sequence_as(xs, [x[i] for x in flat])) for i in range(int(flat[0].shape[0]))]
        return tree.map_structure(lambda *parts: ops.stack(parts), *outs)

    saved = ops.map
    ops.map = loop_map
    try:
        yield
    finally:
        ops.map = saved


def _count_step(arch: Any, config: Any, core: Any, convs: list[Any], batch: int) -> int:
    """Conv FLOPs of one eager streaming step of ``batch`` cameras, counted on the hooked ``convs``."""
    from keras import ops

    total = [0]

    def hook(layer: Any) -> Any:
        call = type(layer).call.__get__(layer)

        def counted(*args: Any, **kwargs: Any) -> Any:
            out = call(*args, **kwargs)
            total[0] += _layer_flops(layer, args, out)
            return out

        return counted

    for layer in convs:
        layer.call = hook(layer)
    frames = ops.convert_to_tensor(np.zeros((batch, *config.input_shape), np.uint8))
    states = [ops.convert_to_tensor(np.zeros((batch, *shape), dtype)) for shape, dtype in arch.state_specs(core)]
    with _python_map():
        arch.stream_step(core, config, frames, states)
    return total[0]


def keras_conv_flops(arch: Any, config: Any) -> int | None:
    """Convolution FLOPs of one streaming step per camera, counted on a fresh core of ``arch``: every call of a
    Keras ``Conv2D``, ``Conv2DTranspose`` or ``ConvLSTM2D`` layer during an eager step (a ConvLSTM counts its
    input and recurrent convs at each of its time steps). Counted at batch 1 and 2: None (not computable) when
    the core has no such layer or the batch-2 count is not twice the batch-1 count."""
    import keras

    core = arch.build_core(config)
    kinds = (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.ConvLSTM2D)
    convs = [lay for lay in core._flatten_layers(include_self=False, recursive=True) if isinstance(lay, kinds)]
    if not convs:
        return None
    one, two = (_count_step(arch, config, core, convs, b) for b in (1, 2))
    if two != 2 * one:
        log.warning("%s: conv FLOPs at batch 2 (%d) are not twice those at batch 1 (%d); not reported",
                    arch.name, two, one)
        return None
    return one


def analytic_flops(config: Any) -> int | None:
    """The config's own convolution count (PredNet's :func:`flops_per_frame`, the others' ``flops_per_frame``)."""
    if isinstance(config, PredNetConfig):
        return flops_per_frame(config)
    method = getattr(config, "flops_per_frame", None)
    return int(method()) if callable(method) else None


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


@dataclass
class Model:
    """One model timed: its predictor and the figures that do not depend on the batch.

    Attributes:
        name: Row label (the architecture, plus the input size for the PredNet sweep).
        predictor: The :class:`~vigil.model.streaming.StreamingPredictor`.
        source: Where it came from (model directory, or the untrained default config).
        params: Parameters of the core.
        state_bytes: Bytes of one camera's model state arrays.
        flops: Convolution FLOPs per frame shown in the table (PredNet: analytic; others: counted on the Keras
            layers), None when not computable.
        counted: The Keras-layer count (:func:`keras_conv_flops`).
        analytic: The config's own count, for the cross-check.
        motion_ms: Milliseconds per frame of the ``motion_max`` feature at this input size.
    """

    name: str
    predictor: Any
    source: str
    params: int = 0
    state_bytes: int = 0
    flops: int | None = None
    counted: int | None = None
    analytic: int | None = None
    motion_ms: float = 0.0


@dataclass
class Point:
    """One timed point: a model stepping ``batch`` cameras; ``times`` are the seconds of its timed calls."""

    model: Model
    batch: int
    frames: np.ndarray
    states: list[list[np.ndarray]]
    times: list[float] = field(default_factory=list)

    def call(self) -> None:
        """One streaming step of the batch (its new states are fed back, as the worker does)."""
        start = time.perf_counter()
        self.states = self.model.predictor.step(self.frames, self.states).new_states
        self.times.append(time.perf_counter() - start)


def default_dirs() -> dict[str, Path]:
    """The committed model directory of each architecture (the first one, by name, under ``model/weights``)."""
    from vigil.model.architectures import arch_of_dir
    from vigil.model.streaming import DEFAULT_MODEL_DIR

    found: dict[str, Path] = {}
    for path in sorted(DEFAULT_MODEL_DIR.parent.iterdir()):
        if (path / "config.json").is_file():
            found.setdefault(arch_of_dir(path), path)
    return found


def _shown(path: Path) -> str:
    from vigil.model.streaming import DEFAULT_MODEL_DIR

    root = DEFAULT_MODEL_DIR.parent
    return f"model/weights/{path.name}" if path.resolve().parent == root.resolve() else str(path)


def load_model(arch_name: str, model_dir: Path | None, seconds: float) -> Model:
    """The model of ``arch_name`` from ``model_dir``; an untrained model of the default config when there is none
    or it does not load (speed does not depend on the weights)."""
    from vigil.model.architectures import get_architecture
    from vigil.model.streaming import StreamingPredictor

    arch = get_architecture(arch_name)
    predictor, why = None, "no model directory"
    if model_dir is not None:
        try:
            predictor = StreamingPredictor.load(model_dir)
        except (OSError, ValueError, KeyError) as exc:
            why = f"{_shown(model_dir)} did not load: {exc}"
            log.warning("%s; timing an untrained %s", why, arch.config_type.__name__)
    if predictor is None:
        predictor = StreamingPredictor.build_untrained(arch.config_type())
        source = f"untrained {arch.config_type.__name__}() ({why})"
    else:
        source = f"{_shown(model_dir)} ({predictor.model_id}, weights {predictor.model_version})"
    return describe(Model(arch_name, predictor, source), seconds)


def describe(model: Model, seconds: float) -> Model:
    """Fill the batch-independent figures of ``model``: parameters, state bytes, FLOPs, motion time."""
    predictor = model.predictor
    model.params = sum(int(np.prod(v.shape)) for v in predictor.cell.weights)
    specs = predictor.arch.state_specs(predictor.cell)
    model.state_bytes = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in specs)
    model.counted = keras_conv_flops(predictor.arch, predictor.config)
    model.analytic = analytic_flops(predictor.config)
    model.flops = model.analytic if isinstance(predictor.config, PredNetConfig) else model.counted
    model.motion_ms = time_motion(predictor.input_shape, min(seconds, 2.0))
    return model


def _predictor(model_dir: Path | None, height: int, width: int):
    """The PredNet model at another input size: conv weights do not depend on the frame size."""
    from vigil.model.prednet import build_cell, load_cell_weights
    from vigil.model.streaming import WEIGHTS_FILE, StreamingPredictor

    base = StreamingPredictor.load(model_dir) if model_dir and (model_dir / WEIGHTS_FILE).is_file() else None
    config = base.config if base else PredNetConfig()
    if (height, width) == (config.height, config.width) and base:
        return base
    config = dataclasses.replace(config, height=height, width=width)
    cell = build_cell(config, "prediction")
    if base:
        load_cell_weights(cell, model_dir / WEIGHTS_FILE)
    return StreamingPredictor(config, cell, base.model_id if base else "prednet-untrained", "bench")


def make_points(models: list[Model], batches: list[int]) -> list[Point]:
    """A point per model and batch, with random frames and fresh states."""
    rng = np.random.default_rng(0)
    points = []
    for model in models:
        shape = model.predictor.input_shape
        for b in batches:
            frames = rng.integers(0, 255, size=(b, *shape), dtype=np.uint8)
            points.append(Point(model, b, frames, [model.predictor.initial_state() for _ in range(b)]))
    return points


def time_points(points: list[Point], seconds: float) -> int:
    """Time every point round-robin (one call each per round) for ``seconds`` per point and at least
    :data:`MIN_ROUNDS` rounds, after two warm-up calls each (compilation, the fresh-state step); returns the rounds."""
    from tqdm import tqdm

    for p in tqdm(points, desc="warm-up", unit="point"):
        p.call()
        p.call()
        p.times.clear()
    budget, start, rounds = seconds * len(points), time.perf_counter(), 0
    with tqdm(desc="rounds", unit="round") as bar:
        while rounds < MIN_ROUNDS or time.perf_counter() - start < budget:
            for p in points:
                p.call()
            rounds += 1
            bar.update()
    return rounds


def summarise(points: list[Point], peak: float) -> list[dict[str, Any]]:
    """A row per point: frames/s (batch / median call), ratio to the same model's batch 1, p90 ms per call,
    GFLOP/s, share of peak, CPU cores per camera at :data:`FPS_TARGET` frames/s."""
    cores = os.cpu_count() or 1
    base: dict[str, float] = {}
    rows = []
    for p in points:
        times = np.asarray(p.times)
        fps = p.batch / float(np.median(times))
        if p.batch == 1:
            base[p.model.name] = fps
        flops = p.model.flops
        rows.append({"model": p.model, "batch": p.batch, "fps": fps, "calls": len(times),
                     "ratio": fps / base[p.model.name] if p.model.name in base else None,
                     "p90_ms": 1000 * float(np.percentile(times, 90)),
                     "gflops": fps * flops / 1e9 if flops else None, "peak": fps * flops / peak if flops else None,
                     "cores": FPS_TARGET * cores / fps})
    return rows


def run_bench(archs: list[str], model: str | os.PathLike | None, batches: list[int], sizes: list[tuple[int, int]],
              seconds: float, docs: Path | None) -> str:
    """Time every architecture in ``archs`` (its committed model, or ``model`` for its own architecture) and the
    PredNet at the extra ``sizes``, at ``batches`` (batch 1 always); returns (and optionally writes) the report."""
    from vigil.model.architectures import arch_of_dir, get_architecture

    for name in archs:
        get_architecture(name)
    load_start = os.getloadavg()
    batches = sorted({1, *batches})
    dirs = default_dirs()
    if model is not None:
        dirs[arch_of_dir(model)] = Path(model)
    models = [load_model(name, dirs.get(name), seconds) for name in archs]
    if "prednet" in archs:
        own = models[archs.index("prednet")].predictor.input_shape[:2]
        for h, w in (s for s in sizes if tuple(s) != own):
            source = f"the same weights at {h}x{w}"
            models.append(describe(Model(f"prednet {h}x{w}", _predictor(dirs.get("prednet"), h, w), source), seconds))
    points = make_points(models, batches)
    rounds = time_points(points, seconds)
    peak = cpu_peak_flops()
    command = (f"nice -n {os.nice(0)} vigil bench model --arch {','.join(archs)} --batches "
               f"{','.join(map(str, batches))} --sizes {','.join(f'{h}x{w}' for h, w in sizes)!r} --seconds {seconds:g}"
               + (f" --model {model}" if model is not None else ""))
    text = _report(models, summarise(points, peak[0]), peak, command, rounds, (load_start, os.getloadavg()))
    if docs is not None:
        write_section(docs, text)
    return text


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _model_table(models: list[Model]) -> list[str]:
    lines = ["| model | from | input HxWxC | parameters | state/camera (KiB) | with previous frame (KiB) | "
             "MFLOP/frame | motion_max ms/frame |", "|---|---|---|---|---|---|---|---|"]
    for m in models:
        frame = int(np.prod(m.predictor.input_shape))
        lines.append(f"| {m.name} | {m.source} | {'x'.join(map(str, m.predictor.input_shape))} | {m.params:,} | "
                     f"{m.state_bytes / 1024:.1f} | {(m.state_bytes + frame) / 1024:.1f} | "
                     f"{_fmt(m.flops and m.flops / 1e6, '.0f')} | {m.motion_ms:.1f} |")
    return lines


def _speed_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"| model | batch | frames/s | ratio vs batch 1 | p90 ms/call | calls | GFLOP/s | % of peak | "
             f"CPU cores/camera at {FPS_TARGET:g} fps |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model'].name} | {r['batch']} | {r['fps']:.1f} | {_fmt(r['ratio'], '.2f')} | "
                     f"{r['p90_ms']:.0f} | {r['calls']} | {_fmt(r['gflops'], '.1f')} | "
                     f"{_fmt(r['peak'] and 100 * r['peak'], '.1f')} | {r['cores']:.2f} |")
    return lines


def _flops_check(models: list[Model]) -> str:
    """The Keras-layer count next to the analytic one, per model."""
    parts = [f"{m.name} {_fmt(m.counted and m.counted / 1e6, '.1f')} vs {_fmt(m.analytic and m.analytic / 1e6, '.1f')}"
             for m in models]
    return "; ".join(parts)


def _report(models: list[Model], rows: list[dict[str, Any]], peak: tuple[float, str], command: str, rounds: int,
            loads: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    import keras

    from vigil.tools.benchdoc import machine_line

    cores = os.cpu_count() or 1
    load = " at the start {}, at the end {}".format(*("/".join(f"{v:.1f}" for v in lv) for lv in loads))
    lines = [
        "## Model: streaming step of every architecture (`vigil bench model`)", "",
        f"Machine: {machine_line()}; Keras backend {keras.backend.backend()}, **CPU only: no GPU was lent to this "
        "task**, so there is no JAX-on-GPU row here (`tools/bench_gpu.sh` measures it, docs/gpu.md). fp32 peak "
        f"estimate {peak[0] / 1e9:.0f} GFLOP/s ({peak[1]}). Load average (1/5/15 min){load}: the machine is shared, "
        "so absolute figures are a lower bound; the ratios were measured in the same run.  ",
        f"Command: `{command}` ({platform.python_implementation()} {platform.python_version()}).", "",
        *_model_table(models), "",
        *_speed_table(rows), "",
        f"* Method: every point (model x batch) was timed call by call, round-robin over all {len(rows)} points for "
        f"{rounds} rounds after two warm-up calls each, so load affected all alike. frames/s = batch / median seconds "
        "per call; `ratio` = that over the same model's frames/s at batch 1; p90 = 90th percentile of the seconds of "
        "one call (one `StreamingPredictor.step` of the whole batch, motion included, as the worker calls it).",
        "* state/camera: bytes of the model's state arrays per camera (PredNet: its recurrent states, float32; the "
        "window models: their last frames, uint8, and a started flag). The worker also keeps the previous frame "
        "(uint8) for `motion_max`: the next column.",
        "* FLOPs: convolutions only. PredNet: the analytic count (`flops_per_frame`, elementwise ops < 2% left out). "
        "The others: counted on the Keras layers, every call of a `Conv2D` / `Conv2DTranspose` / `ConvLSTM2D` layer "
        "during one eager step (`ops.map` run as a Python loop, so that a window's layers are called once per "
        "window; checked: batch 2 counts twice batch 1), 2 x output positions (input positions for a transposed "
        "conv) x the "
        "product of the kernel shape (a ConvLSTM: its input and recurrent kernels at each time step). Not in the "
        "count: the inpainter's attention weighting and the 256-way exp/sum per pixel per shift, layer "
        "normalisation, activations. Counted vs analytic (the configs' `flops_per_frame`), MFLOP: "
        f"{_flops_check(models)}.",
        f"* CPU cores per camera at {FPS_TARGET:g} fps = {FPS_TARGET:g} / (frames/s / cores) = {FPS_TARGET:g} x "
        f"{cores} / frames/s: frames/s were measured with all {cores} cores (one step uses every core) on a loaded "
        "machine, so this is an upper bound. It includes `motion_max` (Farneback optical flow, CPU, one camera at a "
        "time; its ms/frame alone are in the first table), which the worker can turn off.",
    ]
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
