"""Commands ``vigil mmnist generate|train|evaluate``: the Moving MNIST anomaly benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

DEFAULT_DIR = Path(".state/mmnist")


def generate(out: Path = typer.Option(DEFAULT_DIR / "data.npz", help="Output .npz."),
             seed: int = typer.Option(0, min=0, help="Random seed (same seed, same arrays)."),
             n_train: int = typer.Option(400, min=1, max=100000, help="Normal training sequences."),
             n_normal: int = typer.Option(200, min=1, max=100000, help="Normal test sequences."),
             n_temporal: int = typer.Option(100, min=1, max=100000, help="Temporal anomalies."),
             n_spatial: int = typer.Option(100, min=1, max=100000, help="Spatial anomalies.")) -> None:
    """Generate the dataset as an .npz (no pickle)."""
    from vigil.model.moving_mnist import make_dataset, save_dataset

    path = save_dataset(make_dataset(seed, n_train, n_normal, n_temporal, n_spatial), out)
    typer.echo(f"wrote {path}")


ARCHS = ("prednet", "convlstm-ae", "inpaint")
LOCATION_CLIPS = 32
"""Training sequences for the card's per-location calibration: the benchmark does not score through it, and all
384 through the inpainter's 20-shift step took over 40 minutes on 2 cores."""


def train(data: Path = typer.Option(DEFAULT_DIR / "data.npz", help="Dataset from `generate`."),
          out: Path = typer.Option(DEFAULT_DIR / "model", help="Model directory to write."),
          arch: str = typer.Option("prednet", help="Architecture: prednet, convlstm-ae or inpaint."),
          minutes: float = typer.Option(10.0, min=0.1, max=1440, help="Training time budget."),
          epochs: int = typer.Option(50, min=1, max=1000, help="Maximum epochs."),
          nt: int = typer.Option(0, min=0, max=20, help="Frames per training window (0: 10, the inpainter 5)."),
          n_val: int = typer.Option(16, min=1, max=1000, help="Sequences held out for validation."),
          batch_size: int = typer.Option(8, min=1, max=256, help="Sequences per batch."),
          steps_per_epoch: int = typer.Option(50, min=1, max=100000, help="Batches per epoch."),
          lr: float = typer.Option(1e-3, min=1e-6, max=1.0, help="Adam learning rate."),
          lr_drop_epoch: int = typer.Option(0, min=0, max=1000, help="Epoch (0-based) from which lr is divided by "
                                            "10 (0: never, except at 75% of --minutes)."),
          objective: str = typer.Option("auto", help="sparse (foreground-weighted frame MSE), default (the "
                                        "architecture's own loss; PredNet's collapses on this data) or auto "
                                        "(sparse, the inpainter's own NLL)."),
          fg_weight: float = typer.Option(4.0, min=0.0, max=1000.0, help="Extra weight of digit pixels (sparse)."),
          warmup_steps: int = typer.Option(100, min=0, max=100000, help="Learning-rate warm-up (batches)."),
          seed: int = typer.Option(0, min=0, help="Training seed.")) -> None:
    """Train a model on the normal training sequences (written as lossless videos). Exits with code 3, writing
    no model, when training collapses or the model is no better than copying the previous frame."""
    from vigil.model.collapse import TrainingCollapsedError
    from vigil.model.moving_mnist import load_dataset, write_videos
    from vigil.model.train import TrainSettings, command_line
    from vigil.model.train import train as run_train

    config, objective = _train_choices(arch, nt, objective)
    videos = out.parent / "videos" / "train"
    write_videos(load_dataset(data)["train"], videos)
    settings = TrainSettings(data=videos, out=out, work_dir=out.parent / f"work-{out.name}", epochs=epochs,
                             batch_size=batch_size, steps_per_epoch=steps_per_epoch, lr=lr, lr_drop_epoch=lr_drop_epoch or epochs,
                             time_budget_min=minutes, n_val=n_val, model_id=f"{arch}-mmnist", seed=seed,
                             patience=max(epochs, 5), command=command_line(), objective=objective,
                             fg_weight=fg_weight, warmup_steps=warmup_steps,
                             require_beat=("constant_frame", "previous_frame") if arch == "prednet" else None,
                             location_clips=LOCATION_CLIPS)
    try:
        card = run_train(config, settings)
    except TrainingCollapsedError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(3) from err
    typer.echo(json.dumps({"history": {k: card["training"][k] for k in ("loss", "val_loss")},
                           "baselines": card["training"].get("baselines")}, default=str)[:3000])


def _train_choices(arch: str, nt: int, objective: str) -> tuple[Any, str]:
    """The model config and the objective of ``vigil mmnist train``'s options, or a usage error (exit 2)."""
    from vigil.model.trainers import SPARSE_ARCHS

    if arch not in ARCHS:
        raise typer.BadParameter(f"--arch must be one of {ARCHS}. Received: {arch!r}")
    if nt == 1:
        raise typer.BadParameter("--nt must be 0 (the architecture's default) or at least 2.", param_hint="--nt")
    if objective not in ("auto", "sparse", "default"):
        raise typer.BadParameter(f"--objective must be auto, sparse or default. Received: {objective!r}")
    objective = ("sparse" if arch in SPARSE_ARCHS else "default") if objective == "auto" else objective
    if objective == "sparse" and arch not in SPARSE_ARCHS:
        raise typer.BadParameter(f"--objective sparse is available for {', '.join(SPARSE_ARCHS)}. "
                                 f"Received: --arch {arch}", param_hint="--objective")
    return mmnist_config(arch, nt or (5 if arch == "inpaint" else 10)), objective


def mmnist_config(arch: str, nt: int) -> Any:
    """The 64x64 gray model config of ``arch`` (default architecture sizes; 4-pixel patches for ``patch_max``, the
    scale of the 3x3 spatial anomaly)."""
    from vigil.model.config import FeatureConfig, PredNetConfig
    from vigil.model.convlstm_ae import ConvLSTMAEConfig

    features = FeatureConfig(patch_size=4, patch_stride=2, heatmap_stride=8)
    if arch == "prednet":
        return PredNetConfig(height=64, width=64, nt=nt, features=features)
    if arch == "inpaint":
        from vigil.model.inpaint import InpaintConfig

        return InpaintConfig(height=64, width=64, context=nt - 1, features=features)
    return ConvLSTMAEConfig(height=64, width=64, window=nt, features=features)


def evaluate(model: Path = typer.Option(DEFAULT_DIR / "model", help="Model directory."),
             data: Path = typer.Option(DEFAULT_DIR / "data.npz", help="Dataset from `generate`."),
             feature: str = typer.Option("auto", help="Score feature: auto (chosen on a validation set of train-pool "
                                         "digits, never the test set), mse or patch_max_K (K in 2,3,4,8,16)."),
             n_val: int = typer.Option(200, min=6, max=100000, help="Validation sequences for feature=auto "
                                       "(half normal, a quarter of each corruption)."),
             out: Path | None = typer.Option(None, help="Also write the metrics as JSON here.")) -> None:
    """Score every test sequence's last frame; print accuracy at precision=recall and AUC."""
    from vigil.model.mmnist_eval import evaluate as run_eval
    from vigil.model.moving_mnist import load_dataset, make_validation

    dataset = load_dataset(data)
    val = None
    if feature == "auto":
        val = make_validation(int(dataset["seed"]), n_val // 2, n_val // 4, n_val - n_val // 2 - n_val // 4)
    try:
        result: dict[str, Any] = run_eval(model, dataset, feature, val)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    text = json.dumps(result, indent=2)
    if out is not None:
        out.write_text(text)
    typer.echo(text)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add the ``vigil mmnist`` group."""
    group = typer.Typer(help="Moving MNIST anomaly benchmark (generate, train, evaluate).", no_args_is_help=True)
    group.command("generate")(generate)
    group.command("train")(train)
    group.command("evaluate")(evaluate)
    app.add_typer(group, name="mmnist")
