"""``vigil tune``: hyperparameter search for PredNet with Optuna (the sources' HyperDrive step, issue #17).

Each trial draws an architecture size, a sequence length, a learning rate and a crop, and trains with
:func:`vigil.model.train.train` in ``rungs`` stages of ``rung_minutes`` each (a stage continues from the previous
one's weights with ``init_from``). After every stage the trial reports its **validation measure**: the median
frame MSE of the streaming step on the held-out *normal* training clips after warm-up (the model card's
``calibration.feature_stats.mse.median``, whole frames whatever the crop). No test label is used. Optuna's
median pruner stops a trial whose measure after a stage is worse than the median of the trials before it at that
stage.

The study lives in an SQLite file (``.state/tune/optuna.db`` by default): running the same command again
continues it (trials already finished count towards ``--trials``; a trial cut off by a crash is marked failed by
the heartbeat and retried once). The results (every trial, the best one) go to ``OUT/results.json`` and the
study's plots to ``OUT/*.png``; each trial's model directories stay under ``OUT/trials/``.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import typer

log = logging.getLogger(__name__)

DEFAULT_STORAGE = Path(".state/tune/optuna.db")
DEFAULT_OUT = Path("runs/tune")
MEASURE = "held-out normal clips: median frame MSE after warm-up (streaming step, whole frames)"


@dataclass(frozen=True)
class SearchSpace:
    """What a trial may draw.

    Attributes:
        channels: Channels of PredNet layer 1 (layer 2 gets twice as many; the committed model has 12).
        nt: Frames per training sequence.
        lr: ``(low, high)`` of the Adam learning rate, drawn log-uniformly.
        crops: Side of the square motion-centred training crop in model pixels (0 = whole frames).
    """

    channels: tuple[int, ...] = (8, 12, 16)
    nt: tuple[int, ...] = (10, 20, 30)
    lr: tuple[float, float] = (1e-4, 3e-3)
    crops: tuple[int, ...] = (0, 48, 64)


@dataclass
class TuneSettings:
    """One study.

    Attributes:
        data: Normal training videos (a Ped2 folder: its ``train/``); the last ``n_val`` clips are held out.
        out: Results, plots and the trials' model directories.
        storage: SQLite file of the study (resumable).
        study: Study name.
        trials: Trials in all (finished ones included) ; the study stops earlier at ``time_budget_min``.
        time_budget_min: Wall-clock budget of this run (0 = none).
        rungs: Training stages per trial (pruning happens between stages).
        rung_minutes: Training time budget of one stage.
        epochs_per_rung: Maximum epochs of one stage.
        steps_per_epoch: Batches per epoch.
        batch_size: Sequences per batch.
        n_val: Held-out normal clips (validation measure).
        base: PredNetConfig fields every trial shares (input size, channels, features).
        seed: Sampler and training seed.
        guard: Fail (prune) a trial whose model has not beaten the trivial predictors at the end of a stage
            (:mod:`vigil.model.collapse`). Off by default: a short first stage often has not yet, and the
            validation measure already ranks such a model last.
    """

    data: Path
    out: Path = DEFAULT_OUT
    storage: Path = DEFAULT_STORAGE
    study: str = "prednet"
    trials: int = 20
    time_budget_min: float = 0.0
    rungs: int = 3
    rung_minutes: float = 10.0
    epochs_per_rung: int = 100
    steps_per_epoch: int = 25
    batch_size: int = 4
    n_val: int = 2
    base: dict[str, Any] = field(default_factory=lambda: {"height": 120, "width": 180, "channels": 1})
    seed: int = 0
    guard: bool = False


def suggest(trial: Any, space: SearchSpace, base: dict[str, Any]) -> dict[str, Any]:
    """Draw one trial's hyperparameters (crops larger than the frame are replaced by whole frames)."""
    c = trial.suggest_categorical("channels", list(space.channels))
    crop = trial.suggest_categorical("crop", list(space.crops))
    params = {"channels": c, "nt": trial.suggest_categorical("nt", list(space.nt)),
              "lr": trial.suggest_float("lr", *space.lr, log=True), "crop": crop}
    if crop and (crop > base["height"] or crop > base["width"] or crop % 8):
        params["crop"] = 0
    return params


def trial_config(params: dict[str, Any], base: dict[str, Any]) -> Any:
    """The PredNetConfig of a trial: 3 layers, A/Ahat channels (input, c, 2c), R channels (4, c, 2c)."""
    from vigil.model.config import PredNetConfig

    c, ch = int(params["channels"]), int(base.get("channels", 1))
    return PredNetConfig(**{**base, "stack_sizes": (ch, c, 2 * c), "r_stack_sizes": (4, c, 2 * c), "nt": int(params["nt"])})


def validation_measure(card: dict[str, Any]) -> float:
    """The trial's score from its model card (lower is better); see :data:`MEASURE`."""
    value = float(card["calibration"]["feature_stats"]["mse"]["median"])
    if not math.isfinite(value):
        raise ValueError(f"validation measure is not finite: {value}")
    return value


def run_trial(trial: Any, settings: TuneSettings, space: SearchSpace) -> float:
    """Train one trial stage by stage, reporting the validation measure after each; prune when told to."""
    import optuna

    from vigil.model.collapse import TrainingCollapsedError
    from vigil.model.train import TrainSettings, train

    params = suggest(trial, space, settings.base)
    config, folder, previous = trial_config(params, settings.base), settings.out / "trials" / f"{trial.number:04d}", None
    value = math.inf
    for rung in range(settings.rungs):
        ts = TrainSettings(
            data=settings.data, out=folder / f"model{rung}", work_dir=folder / f"work{rung}",
            epochs=settings.epochs_per_rung, batch_size=settings.batch_size, steps_per_epoch=settings.steps_per_epoch,
            lr=params["lr"], lr_drop_epoch=10**6, time_budget_min=settings.rung_minutes, patience=10**6,
            n_val=settings.n_val, init_from=previous, model_id=f"tune-{settings.study}-{trial.number}",
            seed=settings.seed, crop=(params["crop"], params["crop"]) if params["crop"] else None,
            command=f"vigil tune (study {settings.study}, trial {trial.number}, stage {rung})", guard=settings.guard,
        )  # fmt: skip
        try:
            value = validation_measure(train(config, ts))
        except TrainingCollapsedError as err:
            trial.set_user_attr("collapsed", str(err)[:500])
            raise optuna.TrialPruned(f"collapsed at stage {rung}") from err
        trial.report(value, rung)
        trial.set_user_attr("model_dir", str(ts.out))
        log.info("trial %d stage %d: %s = %.6g (%s)", trial.number, rung, "validation MSE", value, params)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after stage {rung}")
        previous = ts.out
    return value


def open_study(settings: TuneSettings) -> Any:
    """Create or continue the study in its SQLite file (heartbeat: a crashed trial is failed and retried once)."""
    import optuna
    from optuna import storages

    settings.storage.parent.mkdir(parents=True, exist_ok=True)
    retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback  # optuna 5 / 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = storages.RDBStorage(f"sqlite:///{settings.storage}", heartbeat_interval=60, grace_period=180,
                                      failed_trial_callback=retry(max_retry=1))
    return optuna.create_study(
        study_name=settings.study, storage=storage, direction="minimize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )  # fmt: skip


def tune(settings: TuneSettings, space: SearchSpace = SearchSpace()) -> dict[str, Any]:
    """Run (or continue) the study up to ``settings.trials`` trials or the time budget; write results and plots."""
    import optuna

    study = open_study(settings)
    done = sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in study.trials)
    remaining = max(0, settings.trials - done)
    log.info("study %s: %d trials finished, %d to run", settings.study, done, remaining)
    start = time.time()
    if remaining:
        study.optimize(lambda t: run_trial(t, settings, space), n_trials=remaining,
                       timeout=settings.time_budget_min * 60 or None, catch=(ValueError,), show_progress_bar=True)
    results = summarise(study, settings, space, time.time() - start)
    settings.out.mkdir(parents=True, exist_ok=True)
    (settings.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    results["plots"] = write_plots(study, settings.out)
    (settings.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def summarise(study: Any, settings: TuneSettings, space: SearchSpace, seconds: float) -> dict[str, Any]:
    """Every trial (state, parameters, value per stage, duration) and the best one."""
    import optuna

    trials = [{"number": t.number, "state": t.state.name, "params": t.params, "value": t.value,
               "stages": {str(k): v for k, v in sorted(t.intermediate_values.items())},
               "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
               if t.datetime_complete and t.datetime_start else None, "user_attrs": t.user_attrs}
              for t in study.trials]  # fmt: skip
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    return {
        "study": settings.study, "storage": str(settings.storage), "measure": MEASURE, "direction": "minimize",
        "run_seconds": round(seconds, 1), "space": asdict(space),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params,
                                           "model_dir": best.user_attrs.get("model_dir")},
        "counts": {s.name: sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState},
        "trials": trials,
    }  # fmt: skip


def write_plots(study: Any, out: Path) -> list[str]:
    """The study's plots as PNG (those that the finished trials allow)."""
    import matplotlib
    import optuna

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    written = []
    for name, fn in (("history", ov.plot_optimization_history), ("stages", ov.plot_intermediate_values),
                     ("importances", ov.plot_param_importances), ("slices", ov.plot_slice)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fn(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:  # too few finished trials for this plot
            log.info("plot %s skipped: %s", name, err)
            plt.close("all")
            continue
        plt.gcf().savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close("all")
        written.append(f"{name}.png")
    return written


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers. Received: {text!r}") from None


def tune_cmd(
    data: Path = typer.Option(None, help="Normal training videos (default: the Ped2 folder's train/, as vigil train)."),
    out: Path = typer.Option(DEFAULT_OUT, help="Results, plots and the trials' models."),
    storage: Path = typer.Option(DEFAULT_STORAGE, help="SQLite file of the study (rerun to continue it)."),
    study: str = typer.Option("prednet", help="Study name."),
    trials: int = typer.Option(20, min=1, max=10_000, help="Trials in all, finished ones included."),
    time_budget_min: float = typer.Option(0.0, min=0, help="Stop starting trials after this many minutes (0 = none)."),
    rungs: int = typer.Option(3, min=1, max=20, help="Training stages per trial (pruning between stages)."),
    rung_minutes: float = typer.Option(10.0, min=0.05, help="Training minutes per stage."),
    steps_per_epoch: int = typer.Option(25, min=1, help="Batches per epoch."),
    n_val: int = typer.Option(2, min=1, help="Training clips (last by name) held out for the validation measure."),
    height: int = typer.Option(120, min=8, help="Model input height."),
    width: int = typer.Option(180, min=8, help="Model input width."),
    channels_options: str = typer.Option("8,12,16", "--channels", help="Layer-1 channel counts to try."),
    nt_options: str = typer.Option("10,20,30", "--nt", help="Sequence lengths to try."),
    crop_options: str = typer.Option("0,48,64", "--crops", help="Square crop sides to try (0 = whole frames)."),
    lr_low: float = typer.Option(1e-4, help="Lowest learning rate."),
    lr_high: float = typer.Option(3e-3, help="Highest learning rate."),
    seed: int = typer.Option(0, min=0, help="Sampler and training seed."),
    guard: bool = typer.Option(False, help="Prune a trial whose model has not beaten the trivial predictors."),
) -> None:
    """Search PredNet's size, sequence length, learning rate and crop on held-out normal clips (no test labels)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vigil.model.data import ped2_dir

    settings = TuneSettings(data=data if data is not None else ped2_dir(None), out=out, storage=storage, study=study,
                            trials=trials, time_budget_min=time_budget_min, rungs=rungs, rung_minutes=rung_minutes,
                            steps_per_epoch=steps_per_epoch, n_val=n_val, base={"height": height, "width": width, "channels": 1},
                            seed=seed, guard=guard)  # fmt: skip
    space = SearchSpace(_ints(channels_options), _ints(nt_options), (lr_low, lr_high), _ints(crop_options))
    results = tune(settings, space)
    best = results["best"]
    typer.echo(f"study {study}: {results['counts']}; best " + (
        f"trial {best['number']}: validation MSE {best['value']:.6g} with {best['params']} ({best['model_dir']})"
        if best else "none yet") + f"; wrote {out / 'results.json'}")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add ``vigil tune``."""
    app.command("tune")(tune_cmd)
