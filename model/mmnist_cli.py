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


def train(data: Path = typer.Option(DEFAULT_DIR / "data.npz", help="Dataset from `generate`."),
          out: Path = typer.Option(DEFAULT_DIR / "model", help="Model directory to write."),
          minutes: float = typer.Option(10.0, min=0.5, max=1440, help="Training time budget."),
          epochs: int = typer.Option(50, min=1, max=1000, help="Maximum epochs."),
          nt: int = typer.Option(10, min=2, max=20, help="Frames per training window."),
          n_val: int = typer.Option(16, min=1, max=1000, help="Sequences held out for validation."),
          seed: int = typer.Option(0, min=0, help="Training seed.")) -> None:
    """Train PredNet on the normal training sequences (written as lossless videos)."""
    from vigil.model.config import PredNetConfig
    from vigil.model.moving_mnist import load_dataset, write_videos
    from vigil.model.train import TrainSettings
    from vigil.model.train import train as run_train

    videos = out.parent / "videos" / "train"
    write_videos(load_dataset(data)["train"], videos)
    settings = TrainSettings(data=videos, out=out, work_dir=out.parent / "work", epochs=epochs,
                             time_budget_min=minutes, n_val=n_val, model_id="prednet-mmnist", seed=seed,
                             patience=max(epochs, 5), command="vigil mmnist train")
    card = run_train(PredNetConfig(height=64, width=64, nt=nt), settings)
    typer.echo(json.dumps(card.get("history", {}), default=str)[:2000])


def evaluate(model: Path = typer.Option(DEFAULT_DIR / "model", help="Model directory."),
             data: Path = typer.Option(DEFAULT_DIR / "data.npz", help="Dataset from `generate`."),
             feature: str = typer.Option("mse", help="Frame feature used as the anomaly score."),
             out: Path | None = typer.Option(None, help="Also write the metrics as JSON here.")) -> None:
    """Score every test sequence's last frame; print accuracy at precision=recall and AUC."""
    from vigil.model.mmnist_eval import evaluate as run_eval
    from vigil.model.moving_mnist import load_dataset

    result: dict[str, Any] = run_eval(model, load_dataset(data), feature)
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
