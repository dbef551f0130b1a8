"""Commands of the model area: ``vigil train``, ``vigil evaluate``, ``vigil score``, ``vigil calibrate``, ``vigil data``, ``vigil bench model``.

Heavy imports (Keras, TensorFlow, PyAV) happen inside the command functions.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from vigil.model.baseline import Calibration

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("runs/prednet")


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _ints(text: str | None) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()] if text else []


def _crop(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"--crop must look like 80x80. Received: {text!r}") from None
    if h < 8 or w < 8 or h % 8 or w % 8:
        raise typer.BadParameter(f"--crop sides must be multiples of 8 (the pyramid halves them). Received: {text!r}")
    return h, w


def _train_config(arch: str, shape: tuple[int, int, int], nt: int, stacks: tuple[str, str], strides: str):  # noqa: ANN202
    """The config of a new model of architecture ``arch`` from the `vigil train` options."""
    from vigil.model.architectures import get_architecture

    height, width, channels = shape
    get_architecture(arch)  # unknown or not-yet-available names raise with the list of names
    if arch == "convlstm-ae":
        from vigil.model.convlstm_ae import ConvLSTMAEConfig

        return ConvLSTMAEConfig(height=height, width=width, channels=channels, window=nt or 8,
                                strides=tuple(_ints(strides)) or (1, 2, 3))
    if arch == "inpaint":
        from vigil.model.inpaint import InpaintConfig

        return InpaintConfig(height=height, width=width, channels=channels, context=(nt - 1) if nt else 4)
    from vigil.model.config import PredNetConfig

    n = len(_ints(stacks[0]))
    return PredNetConfig(
        height=height, width=width, channels=channels, stack_sizes=tuple(_ints(stacks[0])),
        r_stack_sizes=tuple(_ints(stacks[1])), a_filt_sizes=(3,) * (n - 1), ahat_filt_sizes=(3,) * n,
        r_filt_sizes=(3,) * n, layer_loss_weights=(1.0,) + (0.0,) * (n - 1), nt=nt or 10,
    )


class Objective(enum.StrEnum):
    """Training objectives of `vigil train` (:mod:`vigil.model.trainers`)."""

    default = "default"
    sparse = "sparse"


SPARSE_FG_WEIGHT = 4.0
"""``--fg-weight`` of ``--objective sparse`` when none is given."""
OBJECTIVE_HELP = ("default: the architecture's own loss; sparse: foreground-weighted squared error of the predicted / "
                  "reconstructed frames, for sparse, mostly black video (prednet, convlstm-ae).")


def _fg_weight(objective: Objective, fg_weight: float | None, arch: str) -> float:
    """The foreground weight the settings get (0 under the default objective, which has none)."""
    if objective is Objective.default:
        if fg_weight is not None:
            raise typer.BadParameter("--fg-weight applies to --objective sparse only.", param_hint="--fg-weight")
        return 0.0
    from vigil.model.trainers import SPARSE_ARCHS  # numpy only: still before the heavy imports

    if arch not in SPARSE_ARCHS:
        raise typer.BadParameter(f"--objective sparse is available for {', '.join(SPARSE_ARCHS)}. "
                                 f"Received: --arch {arch}", param_hint="--objective")
    return SPARSE_FG_WEIGHT if fg_weight is None else fg_weight


def _init_arch(init_from: Path | None, arch: str) -> str:
    """The architecture to train: ``init_from``'s when fine-tuning (its model decides), else ``--arch``."""
    if init_from is None:
        return arch
    from vigil.model.architectures import arch_of_dir  # json only: still before the heavy imports

    try:
        return arch_of_dir(init_from)
    except (FileNotFoundError, ValueError) as err:
        raise typer.BadParameter(str(err), param_hint="--init-from") from err


def _run_train(config: Any, settings: Any) -> dict[str, Any]:
    """Train; on a collapsed or non-learning model print the reason and the advice, and exit with code 3."""
    from vigil.model.collapse import TrainingCollapsedError
    from vigil.model.train import train

    try:
        return train(config, settings)
    except TrainingCollapsedError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(3) from err


def train_cmd(
    data: Path = typer.Option(..., help="Ped2 folder (uses its train/) or a folder of normal videos."),
    arch: str = typer.Option("prednet", help="Architecture: prednet, convlstm-ae, inpaint."),
    out: Path = typer.Option(DEFAULT_OUT / "model", help="Model directory to write."),
    work_dir: Path = typer.Option(DEFAULT_OUT / "work", help="Checkpoints, resume backup and history."),
    height: int = typer.Option(120, help="Model input height."),
    width: int = typer.Option(180, help="Model input width."),
    channels: int = typer.Option(1, help="1 gray, 3 BGR (colour order of ingest's frames)."),
    stack_sizes: str = typer.Option("1,12,24", help="PredNet: A/Ahat channels per layer (first = channels)."),
    r_stack_sizes: str = typer.Option("4,12,24", help="PredNet: R channels per layer."),
    nt: int = typer.Option(0, help="Frames per training sequence / window (0: PredNet 10, convlstm-ae 8, inpaint 5 = 4 context + 1)."),
    strides: str = typer.Option("1,2,3", help="convlstm-ae: temporal strides of the training windows."),
    epochs: int = typer.Option(20, help="Maximum epochs."),
    batch_size: int = typer.Option(4, help="Sequences per batch."),
    steps_per_epoch: int = typer.Option(50, help="Batches per epoch (0 = all windows)."),
    lr: float = typer.Option(1e-3, help="Initial Adam learning rate."),
    lr_drop_epoch: int = typer.Option(14, help="Epoch (0-based) from which lr is divided by 10."),
    patience: int = typer.Option(5, help="Early-stopping patience in epochs."),
    time_budget_min: float = typer.Option(0.0, help="Stop after this many minutes (0 = no limit); lr/10 at 75%."),
    n_val: int = typer.Option(2, help="Training clips held out for validation/calibration."),
    init_from: Path | None = typer.Option(None, help="Model directory to fine-tune (its architecture is used; --nt applies)."),
    freeze: str = typer.Option("", help="Comma-separated PredNet layer indices to freeze when fine-tuning."),
    model_id: str = typer.Option("", help="Model id written to the model card (default: ARCH-ped2)."),
    seed: int = typer.Option(0, help="Random seed."),
    crop: str = typer.Option("", help="Train on HxW windows centred mostly on motion, e.g. 80x80 (default: whole frames)."),
    objective: Objective = typer.Option(Objective.default, case_sensitive=False, help=OBJECTIVE_HELP),
    fg_weight: float | None = typer.Option(None, min=0.0, max=1000.0, help=f"With --objective sparse: extra weight of foreground pixels (default {SPARSE_FG_WEIGHT:g})."),
    warmup_steps: int = typer.Option(0, min=0, max=100000, help="Batches over which the learning rate rises linearly to --lr (0 = none; 100 on sparse video)."),
) -> None:
    """Train a model (PredNet, ConvLSTM autoencoder or masked-frame inpainting) on normal videos; resumes from WORK_DIR if interrupted.
    Exits with code 3, writing no model, when training collapses or learns nothing."""
    _setup_logging()
    arch = _init_arch(init_from, arch)
    fg = _fg_weight(objective, fg_weight, arch)  # before the heavy imports
    from vigil.model.evaluate import CACHE_DIR
    from vigil.model.train import TrainSettings, command_line

    with _data_errors():
        config = _train_config(arch, (height, width, channels), nt, (stack_sizes, r_stack_sizes), strides)
    settings = TrainSettings(
        data=data, out=out, work_dir=work_dir, epochs=epochs, batch_size=batch_size,
        steps_per_epoch=steps_per_epoch or None, lr=lr, lr_drop_epoch=lr_drop_epoch, patience=patience,
        time_budget_min=time_budget_min, n_val=n_val, init_from=init_from, freeze=_ints(freeze),
        model_id=model_id or f"{arch}-ped2", seed=seed, crop=_crop(crop), command=command_line(),
        cache_dir=CACHE_DIR, objective=objective.value, fg_weight=fg, warmup_steps=warmup_steps,
    )
    card = _run_train(config, settings)
    typer.echo(_trained(out, arch, card))


def _trained(out: Path, arch: str, card: dict) -> str:
    """The line ``vigil train`` ends with: where, which architecture, best epoch, the worker's warm-up."""
    from vigil.model.replay import model_warmup

    return f"wrote {out} ({arch}, best epoch {card['training']['best_epoch']}, worker warm-up {model_warmup(card)} frames)"


def evaluate_cmd(
    model: Path = typer.Option(None, help="Model directory (default: the committed Ped2 model)."),
    data: Path = typer.Option(None, help="UCSD Ped2 folder (default: $VIGIL_PED2_DIR, ../shared/data/ucsd_ped2, else the shipped data/ped2-mini)."),
    out: Path = typer.Option(Path("runs/evaluate"), help="Output folder for metrics.json and plots."),
    clips: str = typer.Option("", help="Comma-separated test clips (default: all), e.g. Test001,Test002."),
    plots: bool = typer.Option(True, help="Write PNG plots."),
    record: bool = typer.Option(False, help="Add the results to the model's card (model_card.json/MODEL_CARD.md)."),
    normal_only: bool = typer.Option(False, help="Score only the held-out normal clips (the card's val_clips) and "
                                     "print their alerts; no test clip is read (an adoption check before test)."),
) -> None:
    """Frame-level ROC AUC / EER on UCSD Ped2 test, causal (headline) and per-clip min-max."""
    _setup_logging()
    from vigil.model.evaluate import evaluate, held_out_alerts
    from vigil.model.streaming import DEFAULT_MODEL_DIR

    if normal_only:
        held = held_out_alerts(model or DEFAULT_MODEL_DIR, data)
        typer.echo(f"held-out normal clips: {held['total_alerts']} alerts ({held['alerts']}); no test clip was scored")
        return

    metrics = evaluate(model or DEFAULT_MODEL_DIR, data, out, [c for c in clips.split(",") if c], plots)
    if record:
        from vigil.model.evaluate import record_evaluation
        from vigil.model.train import command_line

        record_evaluation(model or DEFAULT_MODEL_DIR, metrics, command_line())
    head, ev = metrics["headline"], metrics["events"]
    typer.echo(f"live path: frame AUC {head['auc']:.4f} (scored frames {head['auc_scored_frames']:.4f}); alerts: "
               f"recall {ev['recall']} clips, {ev['false_alerts']} false of {ev['alerts']}, median delay "
               f"{ev['median_delay_s']:.1f} s; held-out normal clips: {metrics['held_out_normal']['total_alerts']} alerts; "
               f"calibration clips (in-sample): {metrics['calibration_clips']['total_alerts']} alerts in "
               f"{metrics['calibration_clips']['scored_minutes']} min; "
               f"model alone AUC {metrics['model_only']['auc_all_frames']:.4f}; per-clip min-max AUC "
               f"{metrics['per_clip_minmax']['live_auc']:.4f}; regularity score (per-clip) AUC "
               f"{metrics['regularity']['auc']:.4f}; wrote {out / 'metrics.json'}")
    for key, what in (("following_level", "as the service"), ("level_fixed", "level held at the calibration's")):
        c = metrics["continuous"][key]
        typer.echo(f"the demo's arrangement, long-running cameras ({what}): AUC {c['auc_all_frames']:.4f}, recall "
                   f"{c['events']['recall']}, {c['events']['false_alerts']} false of {c['events']['alerts']}, median "
                   f"delay {c['events']['median_delay_s']:.2f} s, {c['normal_clip_alerts']} alerts on the normal clips between")


def score_cmd(
    video: Path = typer.Argument(..., help="Video file (any format PyAV reads)."),
    model: Path = typer.Option(None, help="Model directory (default: the committed Ped2 model)."),
    out: Path = typer.Option(None, help="Output folder (default: runs/score/<video stem>)."),
) -> None:
    """Score one video with the worker's streaming step; writes scores.csv, scores.json and a plot."""
    _setup_logging()
    from vigil.model.evaluate import score_video
    from vigil.model.streaming import DEFAULT_MODEL_DIR

    out = out or Path("runs/score") / video.stem
    path = score_video(video, model or DEFAULT_MODEL_DIR, out)
    typer.echo(f"wrote {path}")


def calibrate_cmd(
    model: Path = typer.Option(None, help="Model directory (default: the committed Ped2 model)."),
    data: Path = typer.Option(None, help="Training data of the model (default: $VIGIL_PED2_DIR, ../shared/data/ucsd_ped2, else the shipped data/ped2-mini)."),
    clips: str = typer.Option("", help="Comma-separated normal clips to calibrate on (default: the card's training clips)."),
    camera: str = typer.Option("", help="Calibrate this camera on its own normal footage (--folder, or --since/--until)."),
    folder: Path = typer.Option(None, help="With --camera: a folder of the camera's normal videos."),
    since: str = typer.Option("", help="With --camera: start of a normal stretch of its stream (ISO time, UTC by default)."),
    until: str = typer.Option("", help="With --camera: end of that stretch."),
    out: Path = typer.Option(None, help="With --camera: the calibration file (default: calibrations/<camera>.json)."),
    margin: float | None = typer.Option(None, min=-10, max=100, help="Threshold = largest normal score + this margin (default: "
                                 "for --model, the margin its card records, else -1.5; see docs/scorer.md, 'What the margin costs')."),
) -> None:
    """Measure normal statistics per location: for a model (its card), or for one camera (a file its
    `calibration:` in the cameras file names)."""
    _setup_logging()
    from vigil.model.calibrate import check_margin
    from vigil.model.data import ped2_dir
    from vigil.model.streaming import DEFAULT_MODEL_DIR
    from vigil.model.train import command_line

    check_margin(margin)  # before any clip is scored
    if not camera:
        from vigil.model.calibrate import calibrate_model
        from vigil.model.evaluate import CACHE_DIR

        cal = calibrate_model(model or DEFAULT_MODEL_DIR, data if data is not None else ped2_dir(None),
                              [c for c in clips.split(",") if c], command_line(), CACHE_DIR, margin)
        typer.echo(f"calibrated {model or DEFAULT_MODEL_DIR} on {cal.source}: {cal.frames} frames, threshold "
                   f"{cal.threshold:.2f} (largest normal score {cal.normal_max:.2f}, margin {cal.extra['threshold_margin']:g})")
        return
    out = out or Path("calibrations") / f"{camera}.json"
    cal = _calibrate_camera(camera, folder, since, until, model or DEFAULT_MODEL_DIR, out, command_line(), margin)
    typer.echo(f"camera {camera}: {cal.frames} normal frames ({cal.source}), threshold {cal.threshold:.2f}; wrote {out}.\n"
               f"Add `calibration: {out}` to camera {camera} in the cameras file (paths are relative to that file).")


def _calibrate_camera(camera: str, folder: Path | None, since: str, until: str, model: Path, out: Path, command: str,
                      margin: float | None = None) -> Calibration:
    """One camera's calibration from a folder of its footage or a time range of its score stream."""
    from vigil.model import calibrate as c

    if folder is not None:
        return c.calibrate_folder(camera, folder, model, out, command, margin)
    if not (since and until):
        raise typer.BadParameter("--camera needs --folder, or --since and --until (a normal stretch of its stream)")
    from vigil.shared.settings import KafkaSettings, TopicSettings

    return c.calibrate_stream(camera, c.parse_time(since), c.parse_time(until), KafkaSettings(), TopicSettings().scores,
                              out, command, margin=margin)


@contextlib.contextmanager
def _data_errors() -> Iterator[None]:
    """Bad input to `vigil data`: print the message (it says what to do) and exit with code 2, no traceback."""
    try:
        yield
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err


def data_ped2_cmd(
    src: Path = typer.Option(..., "--from", help="The unpacked UCSD archive (UCSD_Anomaly_Dataset.v1p2 or its UCSDped2/)."),
    out: Path = typer.Option(..., help="Folder to write Vigil's layout to (train/, test/, labels, masks, manifest)."),
    overwrite: bool = typer.Option(False, help="Replace the Ped2 files of a non-empty --out."),
) -> None:
    """Convert the official UCSD Ped2 archive (.tif frames, .bmp masks, UCSDped2.m) into Vigil's layout, losslessly."""
    _setup_logging()
    from vigil.model.ped2_data import convert_official

    with _data_errors():
        manifest = convert_official(src, out, overwrite)
    typer.echo(f"wrote {len(manifest['clips'])} clips to {out}; use it with --data {out} or VIGIL_PED2_DIR={out}")


def data_ped2_mini_cmd(
    src: Path = typer.Option(..., "--from", help="A full Ped2 set in Vigil's layout (e.g. ../shared/data/ucsd_ped2)."),
    out: Path = typer.Option(Path("data/ped2-mini"), help="Folder to write the mini set to."),
    overwrite: bool = typer.Option(False, help="Replace the files of a non-empty --out."),
) -> None:
    """Build the small shipped set (Test001, Test002, Train015, Train016; lossy H.264) from a full set."""
    _setup_logging()
    from vigil.model.ped2_data import build_mini

    with _data_errors():
        manifest = build_mini(src, out, overwrite=overwrite)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    typer.echo(f"wrote {len(manifest['clips'])} clips to {out} ({size / 1e6:.2f} MB in all)")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this area's commands to the root CLI and the `bench` group."""
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("score")(score_cmd)
    app.command("calibrate")(calibrate_cmd)
    data_app = typer.Typer(help="Data sets: convert UCSD Ped2 into Vigil's layout, build the shipped mini set.",
                           no_args_is_help=True)
    data_app.command("ped2")(data_ped2_cmd)
    data_app.command("ped2-mini")(data_ped2_mini_cmd)
    app.add_typer(data_app, name="data")
