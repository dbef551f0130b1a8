"""``vigil bench runtime``: the streaming step's model call on each inference runtime, against Keras in the same run.

What is timed is the graph call alone (:meth:`vigil.model.runtimes.StepRuntime.run`: frames and states in,
prediction, error features and new states out), on real Ped2 frames and the states a few real steps left,
at each batch size. Runtimes are timed in blocks (a few calls of one, then of the next, as a worker steps) and
again round-robin (one call of each in turn), both reported; the ratio is against Keras (TensorFlow) in the
same run. Peak FLOP/s is
measured in the same run by an fp32 matmul microbenchmark (numpy's BLAS and TensorFlow, the higher
counts), next to the /proc/cpuinfo estimate of :func:`vigil.tools.bench_model.cpu_peak_flops`.

With ``--auc`` it also scores the Ped2 test clips through the live scoring path (the worker's messages,
:func:`vigil.model.replay.clip_messages`, through the one scoring core with the model card's calibration,
as ``vigil evaluate`` does) on Keras, ONNX and the int8 runtimes, each predictor a
:class:`vigil.model.runtimes.RuntimePredictor` (a subclass; no production code is patched).
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

log = logging.getLogger(__name__)

VARIANTS: dict[str, tuple[str, str]] = {
    "keras": ("keras", "none"),
    "onnx": ("onnx", "none"),
    "onnx-int8": ("onnx", "int8"),
    "openvino": ("openvino", "none"),
    "openvino-int8": ("openvino", "int8"),
    "openvino-fp16": ("openvino", "fp16"),
    "openvino-bf16": ("openvino", "bf16"),
}
"""Runtime name -> (runtime kind, quantisation)."""
SECTION = "runtime"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure.

    Attributes:
        model_dir: The model directory (None: the packaged Ped2 model).
        batches: Batch sizes (cameras per call).
        runs: Timed calls per runtime and batch size.
        runtimes: Names from :data:`VARIANTS` (``keras`` is always measured: it is the reference).
        threads: Intra-op threads of ONNX Runtime and OpenVINO (0: their default).
        streams: OpenVINO streams, requests run at once (0: :func:`vigil.model.runtimes.default_streams`).
        data: UCSD Ped2 folder (None: ``$VIGIL_PED2_DIR``, ``../shared/data/ucsd_ped2``, else the mini set).
        auc: Also measure the live-path AUC of ``auc_runtimes`` on the Ped2 test clips.
        auc_runtimes: Runtimes whose AUC is measured.
        write: Write the section of ``doc``.
        doc: The benchmarks document.
    """

    model_dir: Path | None = None
    batches: tuple[int, ...] = (1, 8, 32)
    runs: int = 20
    runtimes: tuple[str, ...] = tuple(VARIANTS)
    threads: int = 0
    streams: int = 0
    data: Path | None = None
    auc: bool = False
    auc_runtimes: tuple[str, ...] = ("keras", "onnx", "onnx-int8", "openvino-int8", "openvino-bf16")
    write: bool = True
    doc: Path = field(default_factory=lambda: Path("docs/benchmarks.md"))


def measured_peak(size: int = 1024, seconds: float = 1.5) -> dict[str, float]:
    """fp32 FLOP/s of a ``size`` x ``size`` matmul (best of repeated calls) with numpy's BLAS and TensorFlow."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    out = {"numpy": _best_rate(lambda: a @ a, 2 * size**3, seconds)}
    try:
        import tensorflow as tf

        t = tf.constant(a)
        out["tensorflow"] = _best_rate(lambda: tf.linalg.matmul(t, t).numpy(), 2 * size**3, seconds)
    except ImportError:
        pass
    return out


def bf16_peak(size: int = 2048, seconds: float = 1.5) -> float | None:
    """bf16 FLOP/s of a ``size`` x ``size`` matmul on OpenVINO with bf16 inference precision (on a CPU with AMX,
    its AMX units), the peak the bf16 runtime's share is measured against; None without OpenVINO or bf16 units."""
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return None
    core = ov.Core()
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return None
    rng = np.random.default_rng(0)
    x = ops.parameter([size, size], ov.Type.f32)
    w = ops.constant(rng.standard_normal((size, size), dtype=np.float32))
    model = ov.Model([ops.matmul(x, w, False, False)], [x])
    request = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16",
                                                "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
    a = rng.standard_normal((size, size), dtype=np.float32)
    return _best_rate(lambda: request.infer({0: a}, share_inputs=True, share_outputs=True), 2 * size**3, seconds)


def _best_rate(call: Any, work: float, seconds: float) -> float:
    call()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return work / best


def _clips(data: Path | None, folder: str, shape: tuple[int, int, int], n: int, frames: int) -> tuple[list, Path]:
    from vigil.model.data import list_videos, ped2_dir, read_video

    root = ped2_dir(data) / folder
    videos = list_videos(root)[:n]
    return [read_video(v, *shape)[:frames] for v in videos], root


def make_exports(predictor: Any, names: tuple[str, ...], folder: Path, calib: list[np.ndarray], source: str
                 ) -> tuple[dict[str, tuple[Path, float]], dict[str, str]]:  # fmt: skip
    """Export every non-Keras runtime of ``names`` into ``folder``: ``{name: (export folder, seconds)}``, and
    ``{name: why}`` for those whose export failed (e.g. OpenVINO cannot convert a ConvLSTM's loop): the bench
    goes on without them and says so."""
    from vigil.model import runtimes

    out, failed = {}, {}
    for name in names:
        kind, quantize = VARIANTS[name]
        if kind == "keras":
            continue
        start = time.perf_counter()
        try:
            runtimes.export(predictor, kind, folder / name, quantize, calib if quantize == "int8" else None, source,
                            progress=lambda line: log.info("%s", line))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a converter's failure costs that runtime's rows only
            last = (str(exc).strip().splitlines() or [""])[-1]  # converters put the cause on the last line
            failed[name] = f"{type(exc).__name__}: {last[:200]}"
            typer.echo(f"export {name} failed, left out: {failed[name]}")
            continue
        out[name] = (folder / name, time.perf_counter() - start)
        typer.echo(f"exported {name} in {out[name][1]:.0f} s")
    return out, failed


def time_runtimes(runtimes: dict[str, Any], feed: list[np.ndarray], runs: int, block: int = 5
                  ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds of ``runs`` calls per runtime, on two schedules: ``(blocks, round_robin)``.

    Blocks: each runtime in turn makes one untimed call, then ``block`` timed ones, until each has ``runs``
    (as a worker steps one runtime call after call). Round-robin: one call of each, then again. Round-robin
    hits every runtime alike with a change in the machine's load, but each call then starts right after
    another runtime's, whose idle threads still spin on the cores (TensorFlow's and OpenVINO's both do), so it
    understates a dedicated worker. States are given in each runtime's own state dtypes, as a worker keeps them.
    """
    feeds = {name: _typed(feed, rt) for name, rt in runtimes.items()}
    for name, rt in runtimes.items():
        rt.run(feeds[name])
        rt.run(feeds[name])
    blocks: dict[str, list[float]] = {name: [] for name in runtimes}
    while any(len(t) < runs for t in blocks.values()):
        for name, rt in runtimes.items():
            rt.run(feeds[name])
            for _ in range(min(block, runs - len(blocks[name]))):
                blocks[name].append(_timed(rt, feeds[name]))
    rounds: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(runs):
        for name, rt in runtimes.items():
            rounds[name].append(_timed(rt, feeds[name]))
    return blocks, rounds


def _typed(feed: list[np.ndarray], runtime: Any) -> list[np.ndarray]:
    """``feed`` with its states in ``runtime``'s state dtypes (OpenVINO bf16 keeps some states in bf16)."""
    dtypes = getattr(runtime, "state_dtypes", None)
    if dtypes is None:
        return feed
    return [feed[0], *(a.astype(d) for a, d in zip(feed[1:], dtypes, strict=True))]


def _timed(runtime: Any, feed: list[np.ndarray]) -> float:
    start = time.perf_counter()
    runtime.run(feed)
    return time.perf_counter() - start


def run_bench(cfg: BenchConfig) -> str:
    """Export, time and (optionally) score every runtime; returns the Markdown section (written when asked)."""
    from vigil.model import runtimes
    from vigil.model.streaming import DEFAULT_MODEL_DIR, StreamingPredictor
    from vigil.tools.bench_model import analytic_flops, cpu_peak_flops

    load_start = os.getloadavg()
    names = ("keras", *[n for n in cfg.runtimes if n != "keras"])
    predictor = StreamingPredictor.load(cfg.model_dir or DEFAULT_MODEL_DIR)
    calib, calib_root = _clips(cfg.data, "train", predictor.input_shape, 4, 60)
    frames, _ = _clips(cfg.data, "test", predictor.input_shape, 1, 80)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-runtime-") as tmp:
        exports, failed = make_exports(predictor, names, Path(tmp), calib, f"{calib_root} (4 clips x 60 frames)")
        names = tuple(n for n in names if n not in failed)
        opened = {n: runtimes.KerasRuntime(predictor) if n == "keras"
                  else runtimes.open_runtime(VARIANTS[n][0], predictor, exports[n][0], cfg.threads, cfg.streams)
                  for n in names}
        rows = []
        for batch in cfg.batches:
            feed = runtimes.calibration_feeds(predictor, frames, batch=batch, steps=8, every=8)[-1]
            times, rounds = time_runtimes(opened, feed, cfg.runs)
            rows += [{"runtime": n, "batch": batch, "fps": batch / statistics.median(t), "best_fps": batch / min(t),
                      "rr_fps": batch / statistics.median(rounds[n]), "p90_ms": 1000 * float(np.percentile(t, 90))}
                     for n, t in times.items()]
            typer.echo(", ".join(f"{r['runtime']} {r['fps']:.1f}" for r in rows if r["batch"] == batch)
                       + f" frames/s at batch {batch}")
        auc = live_auc(cfg, predictor, exports) if cfg.auc else {}
    peak = measured_peak()
    if any(VARIANTS[n][1] == "bf16" for n in names):
        peak_bf16 = bf16_peak()
        if peak_bf16 is not None:
            peak["bf16"] = peak_bf16
    text = report(cfg, rows, peak, cpu_peak_flops(), analytic_flops(predictor.config) or 0,
                  {n: e[1] for n, e in exports.items()}, auc, (load_start, os.getloadavg()), predictor, failed)
    if cfg.write:
        from vigil.tools.benchdoc import write_section

        write_section(SECTION, text, cfg.doc)
    return text


def live_auc(cfg: BenchConfig, predictor: Any, exports: dict[str, tuple[Path, float]]) -> dict[str, dict[str, float]]:
    """Frame AUC of the Ped2 test clips through the live scoring path, per runtime (``vigil evaluate``'s headline)."""
    from vigil.model import runtimes
    from vigil.model.data import list_videos, load_ped2_labels, ped2_dir, read_video
    from vigil.model.evaluate import keep_maps, location_calibration, model_only, observations
    from vigil.model.live import frame_metrics, replay
    from vigil.model.replay import clip_messages

    root = ped2_dir(cfg.data)
    labels = load_ped2_labels(root)
    videos = {v.stem: v for v in list_videos(root / "test") if v.stem in labels}
    clips = {n: read_video(videos[n], *predictor.input_shape) for n in sorted(videos)}
    labels = {n: labels[n][: len(clips[n])] for n in clips}
    cal = location_calibration(predictor.card)
    out = {}
    for name in cfg.auc_runtimes:
        kind, quantize = VARIANTS[name]
        settings = runtimes.RuntimeSettings(kind=kind, quantize=quantize, threads=cfg.threads, streams=cfg.streams,  # type: ignore[arg-type]
                                            export_dir=exports[name][0] if name in exports else None)
        model = runtimes.RuntimePredictor.load(cfg.model_dir or runtimes.DEFAULT_MODEL_DIR, settings=settings)
        start = time.perf_counter()
        obs = observations(clip_messages(model, clips, progress=False))
        metrics = frame_metrics(labels, replay(obs, cal))
        alone = frame_metrics(labels, replay(keep_maps(obs, ("error",)), model_only(cal)))
        out[name] = {"auc": metrics["auc_all_frames"], "auc_scored": metrics["auc_scored_frames"],
                     "auc_model_only": alone["auc_all_frames"], "clips": len(clips),
                     "frames": sum(len(c) for c in clips.values()), "seconds": time.perf_counter() - start}
        typer.echo(f"live-path AUC {name}: {out[name]['auc']:.4f}, model alone {out[name]['auc_model_only']:.4f}")
    return out


def report(cfg: BenchConfig, rows: list[dict], peak: dict[str, float], cpuinfo: tuple[float, str], flops: int,
           export_s: dict[str, float], auc: dict[str, dict[str, float]], load: tuple[tuple, tuple],
           predictor: Any = None, failed: dict[str, str] | None = None) -> str:
    """The Markdown section."""
    from vigil.tools.benchdoc import machine_line

    peak = dict(peak)
    peak_bf16 = peak.pop("bf16", None)
    best = max(peak.values())
    keras_rows = {r["batch"]: r for r in rows if r["runtime"] == "keras"}
    lines = [
        "## Model step on each inference runtime (`vigil bench runtime`)", "",
        f"Machine: {machine_line()}. Load average (1/5/15 min) at the start {_load(load[0])}, at the end "
        f"{_load(load[1])}: the machine is shared, so absolute figures are a lower bound; the ratios were "
        f"measured in the same run ({cfg.runs} calls per runtime and batch, median), in blocks (an untimed call, "
        "then 5 timed ones of one runtime, in turn: how a worker steps) and again round-robin (one call of each in "
        "turn: every call starts while the previous runtime's idle threads still spin, so it is the lower "
        "figure).", "",
        (f"Model: `{predictor.model_id}` ({predictor.arch.name}, weights {predictor.model_version}, input "
         f"{'x'.join(map(str, predictor.input_shape))}). " if predictor is not None else "")
        + f"Timed: the model call alone (frames + states in; prediction, error features, new states out) on real "
        f"Ped2 frames and the states 7 real steps left; motion, batching and state gathering are not in it. "
        f"{flops / 1e6:.0f} MFLOP per frame (convolutions). Peak fp32 FLOP/s measured in the same run by a "
        f"1024x1024 matmul: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peak.items())
        + f" (% of peak uses the higher); /proc/cpuinfo estimate {cpuinfo[0] / 1e9:.0f} GFLOP/s ({cpuinfo[1]}). "
        + (f"bf16 rows: % of the bf16 peak, measured in the same run by a 2048x2048 matmul on OpenVINO in bf16 (on "
           f"AMX where the CPU has it): {peak_bf16 / 1e9:.0f} GFLOP/s. " if peak_bf16 else "")
        + f"Runtime threads: {cfg.threads or 'the runtime default'}; OpenVINO streams: "
        f"{cfg.streams or 'the default (2 on 2+ cores; an even batch split in requests of at most 8)'}; OpenVINO bf16 takes and returns the "
        "states that feed only convolutions in bf16, as the worker keeps them.", "",
        "`frames/s` is from the median call, `best` from the fastest call (the least disturbed by other jobs on "
        "a shared machine); each `x Keras` divides by Keras's same statistic at the same batch.", "",
        "| runtime | batch | frames/s | x Keras | best frames/s | x Keras (best) | round-robin frames/s | "
        "x Keras (round-robin) | p90 ms/call | % of measured peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        k = keras_rows[r["batch"]]
        ref = peak_bf16 if peak_bf16 and VARIANTS[r["runtime"]][1] == "bf16" else best
        lines.append(f"| {r['runtime']} | {r['batch']} | {r['fps']:.1f} | {r['fps'] / k['fps']:.2f} | "
                     f"{r['best_fps']:.1f} | {r['best_fps'] / k['best_fps']:.2f} | {r['rr_fps']:.1f} | "
                     f"{r['rr_fps'] / k['rr_fps']:.2f} | {r['p90_ms']:.1f} | {100 * r['fps'] * flops / ref:.1f} |")
    lines += ["", "Export times: " + ", ".join(f"{k} {v:.0f} s" for k, v in export_s.items()) + "."]
    lines += [f"Not available for this model: {k} (export failed: {v})." for k, v in (failed or {}).items()]
    if auc:
        lines += _auc_lines(auc)
    model = f" --model {cfg.model_dir}" if cfg.model_dir else ""
    streams = f" --streams {cfg.streams}" if cfg.streams else ""
    lines += ["", f"Reproduce: `nice -n 0 vigil bench runtime{model} --runtimes {','.join(cfg.runtimes)} --runs {cfg.runs} "
              f"--batches {','.join(map(str, cfg.batches))}{streams}{' --auc' if cfg.auc else ''}`."]
    return "\n".join(lines) + "\n"


def _auc_lines(auc: dict[str, dict[str, float]]) -> list[str]:
    first = next(iter(auc.values()))
    lines = ["", f"Ped2 frame AUC through the live scoring path ({int(first['clips'])} test clips, "
             f"{int(first['frames'])} frames; the worker's messages through the scoring core with the model "
             "card's calibration, causal, as `vigil evaluate`'s headline; int8 calibrated on training clips only):",
             "", "| runtime | live AUC (all frames) | live AUC (scored frames) | model alone: error map only | seconds |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {a['auc']:.4f} | {a['auc_scored']:.4f} | {a['auc_model_only']:.4f} | {a['seconds']:.0f} |"
              for n, a in auc.items()]
    return lines


def _load(values: tuple) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def bench_runtime_cmd(
    batches: Annotated[str, typer.Option(help="Comma-separated batch sizes (cameras per call)")] = "1,8,32",
    runs: Annotated[int, typer.Option(min=3, max=1000, help="Timed calls per runtime and batch")] = 20,
    runtimes: Annotated[str, typer.Option(help=f"Comma-separated runtimes of {', '.join(VARIANTS)}")] = ",".join(VARIANTS),
    threads: Annotated[int, typer.Option(min=0, max=256, help="ONNX Runtime / OpenVINO threads (0: their default)")] = 0,
    streams: Annotated[int, typer.Option(min=0, max=64, help="OpenVINO streams, requests run at once (0: its default)")] = 0,
    model: Annotated[Path | None, typer.Option(help="Model directory (default: the packaged Ped2 model)")] = None,
    data: Annotated[Path | None, typer.Option(help="UCSD Ped2 folder (default: $VIGIL_PED2_DIR, ../shared/data/ucsd_ped2, else data/ped2-mini)")] = None,
    auc: Annotated[bool, typer.Option("--auc/--no-auc", help="Also the live-path AUC on the Ped2 test clips (minutes)")] = False,
    write: Annotated[bool, typer.Option("--write/--no-write", help="Write the runtime section of docs/benchmarks.md")] = True,
) -> None:
    """Frames/s of the model call on Keras, ONNX Runtime and OpenVINO (fp32, int8, fp16, bf16), x Keras, % of peak."""
    from vigil.shared.logging import configure_logging

    configure_logging()
    names = tuple(n.strip() for n in runtimes.split(",") if n.strip())
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise typer.BadParameter(f"Unknown runtimes {unknown}; expected some of {tuple(VARIANTS)}")
    auc_names = tuple(n for n in BenchConfig.auc_runtimes if n in names or n == "keras")
    cfg = BenchConfig(model_dir=model, batches=tuple(int(b) for b in batches.split(",") if b.strip()), runs=runs,
                      runtimes=names, threads=threads, streams=streams, data=data, auc=auc, auc_runtimes=auc_names, write=write)
    typer.echo(run_bench(cfg))
