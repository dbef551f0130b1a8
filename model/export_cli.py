"""``vigil export``: the streaming step as a SavedModel, ONNX or OpenVINO IR graph (:mod:`vigil.model.runtimes`).

Heavy imports (Keras, TensorFlow, tf2onnx, the runtimes) happen inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_ROOT = Path(".state/export")
"""Default export root (relative to the working directory): ``<root>/<model_id>-<version>/<format>-<quantize>``."""


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add ``vigil export`` to the root CLI (``bench``: unused, every area's ``register`` takes it)."""
    app.command("export")(export_cmd)


def export_cmd(
    fmt: Annotated[str, typer.Option("--format", help="saved_model, onnx or openvino")],
    model: Annotated[Path | None, typer.Option(help="Model directory (default: the packaged Ped2 model)")] = None,
    out: Annotated[Path | None, typer.Option(help="Export folder (default: .state/export/<model_id>-<version>/<format>-<quantize>, "
                                                  "where a worker with VIGIL_RUNTIME_KIND looks)")] = None,
    quantize: Annotated[str, typer.Option(help="none; int8 (onnx, openvino: calibrated on --calib-data); "
                                               "fp16 (openvino: fp16 weights); bf16 (openvino: bf16 arithmetic on "
                                               "CPUs with AMX / AVX-512 BF16)")] = "none",
    calib_data: Annotated[Path | None, typer.Option(help="Folder of NORMAL videos for int8 calibration (default: "
                                                         "the Ped2 train/ folder of $VIGIL_PED2_DIR or ../shared/data/ucsd_ped2)")] = None,
    calib_clips: Annotated[int, typer.Option(min=1, max=64, help="Calibration clips used")] = 4,
    calib_frames: Annotated[int, typer.Option(min=8, max=10_000, help="Frames read per calibration clip")] = 60,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Compare the export with the Keras step on "
                                                                  "real frames afterwards (onnx, openvino)")] = True,
) -> None:
    """Export the streaming step (frames + states in; prediction, error features, new states out) for another runtime."""
    from vigil.shared.logging import configure_logging

    configure_logging()
    from vigil.model import runtimes

    try:
        runtimes.check_combination(fmt, quantize)
        _export(fmt, model, out, quantize, calib_data, calib_clips, calib_frames, check)
    except runtimes.RuntimeMissingError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(3) from err
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err


def _export(fmt: str, model: Path | None, out: Path | None, quantize: str, calib_data: Path | None, n_clips: int,
            n_frames: int, check: bool) -> None:
    from vigil.model import runtimes
    from vigil.model.streaming import DEFAULT_MODEL_DIR, StreamingPredictor

    predictor = StreamingPredictor.load(model or DEFAULT_MODEL_DIR)
    typer.echo(f"model {predictor.model_id}:{predictor.model_version} ({predictor.arch.name}, "
               f"input {predictor.input_shape})")
    out = out or runtimes.export_dir_for(DEFAULT_ROOT, predictor.model_id, predictor.model_version, fmt, quantize)
    clips, source = ([], "")
    if quantize == "int8" or (check and fmt != "saved_model"):
        clips, source = _clips(predictor, calib_data, n_clips, n_frames, required=quantize == "int8")
    runtimes.export(predictor, fmt, out, quantize, clips if quantize == "int8" else None, source, progress=typer.echo)
    if check and fmt != "saved_model" and clips:
        typer.echo(_check(predictor, fmt, out, clips))
    root = out.parent.parent if out.parent.name == f"{predictor.model_id}-{predictor.model_version}" else None
    where = "" if root is None else f" VIGIL_WORKER_RUNTIME_EXPORT_ROOT={root}" if root != DEFAULT_ROOT else ""
    hint = (f"VIGIL_WORKER_RUNTIME={fmt} VIGIL_WORKER_RUNTIME_QUANTIZE={quantize}{where}" if root is not None
            else "a folder the worker does not look in: pass --out ROOT/<model_id>-<version>/<format>-<quantize>")
    typer.echo(f"done: {out}  (worker: {hint})" if fmt != "saved_model" else f"done: {out}")


def _clips(predictor: object, folder: Path | None, n_clips: int, n_frames: int, required: bool) -> tuple[list, str]:
    """Up to ``n_clips`` normal clips at the model's input shape, and a description of where they came from."""
    from vigil.model.data import list_videos, ped2_dir, read_video

    if folder is None:
        try:
            folder = ped2_dir(None) / "train"
        except FileNotFoundError:
            folder = None
    if folder is None or not folder.is_dir():
        if required:
            raise FileNotFoundError("--quantize int8 needs normal footage to calibrate on: pass --calib-data DIR "
                                    "(a folder of videos of the scene in normal conditions, e.g. Ped2's train/).")
        typer.echo("no normal footage found for --check (pass --calib-data DIR); skipping the check")
        return [], ""
    videos = list_videos(folder)[:n_clips]
    h, w, c = predictor.input_shape  # type: ignore[attr-defined]
    typer.echo(f"reading {len(videos)} clips from {folder} ({n_frames} frames each)")
    clips = [read_video(v, h, w, c)[:n_frames] for v in videos]
    return clips, f"{folder} ({', '.join(v.stem for v in videos)}; {n_frames} frames each)"


def _check(predictor: object, fmt: str, out: Path, clips: list) -> str:
    """Largest absolute difference of each feature between the export and the Keras step (12 steps, 4 cameras)."""
    import numpy as np

    from vigil.model import runtimes

    feeds = runtimes.calibration_feeds(predictor, clips, batch=4, steps=12, every=1)  # type: ignore[arg-type]
    keras_rt = runtimes.KerasRuntime(predictor)  # type: ignore[arg-type]
    other = runtimes.open_runtime(fmt, predictor, out)  # type: ignore[arg-type]
    worst: dict[str, float] = {}
    for feed in feeds:
        ref, got = keras_rt.run(feed), other.run(feed)
        for name in ("mse", "psnr", "patch_max", "heatmap", "prediction"):
            worst[name] = max(worst.get(name, 0.0), float(np.max(np.abs(ref[name] - got[name]))))
    return "check vs Keras (max |difference| over 12 steps x 4 cameras): " + ", ".join(
        f"{k} {v:.2e}" for k, v in worst.items())
