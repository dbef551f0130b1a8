"""Training pipeline of ``vigil train``: data, callbacks, calibration and the model directory."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vigil.model.calibration import FUSED_FEATURE, feature_stats, fused_values, warmup_length
from vigil.model.data import (
    Clip,
    list_videos,
    load_clips,
    make_sequence_dataset,
    split_clips,
    training_folder,
)
from vigil.model.features import FEATURE_NAMES
from vigil.model.streaming import CARD_FILE, CONFIG_FILE

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Settings of one training run.

    Attributes:
        data: Ped2 folder (its ``train/`` is used) or a folder of normal videos.
        out: Model directory to write (config, weights, model card).
        work_dir: Checkpoints, backup for resuming, history.
        epochs: Maximum epochs.
        batch_size: Sequences per batch.
        steps_per_epoch: Batches per epoch (random windows); ``None`` = all windows.
        seq_stride: Frames between the starts of training windows.
        lr: Initial learning rate (Adam).
        lr_drop_epoch: Epoch from which the learning rate is ``lr / 10``.
        time_budget_min: Stop after the epoch that ends past this many minutes (0 = no limit); the
            learning rate also drops to ``lr / 10`` once 75% of the budget is used.
        patience: Early-stopping patience (epochs without a better validation loss).
        n_val: Training clips (last by name) held out for validation and calibration.
        init_from: Model directory to start from (fine-tuning); its config is used.
        freeze: PredNet layer indices whose weights stay fixed.
        model_id: Identifier written to the model card.
        seed: Random seed.
        crop: Train on ``(h, w)`` windows of the frames, mostly centred on motion, instead of whole
            frames (the model is convolutional; it is saved for, calibrated and run on whole frames).
        command: Command line recorded in the model card.
        cache_dir: Keep the score messages of the location calibration there (``vigil train`` uses
            ``.state/replay``), so that a ``vigil calibrate`` of the same clips reuses them; None: no cache.
        guard: Stop and fail on a collapsed or non-learning model (:mod:`vigil.model.collapse`); when off (plumbing
            tests of a step or two), the trivial baselines are still measured and recorded in the card.
        objective: ``"default"`` (each architecture's own loss) or ``"sparse"`` (foreground-weighted squared
            error of the predicted / reconstructed frames, for mostly black video; :mod:`vigil.model.trainers`).
        fg_weight: Extra weight of foreground pixels under the ``sparse`` objective.
        warmup_steps: Batches over which the learning rate rises linearly from ``lr / warmup_steps`` to ``lr``
            (0 = none).
        require_beat: Trivial predictors the model must beat on validation (None: the architecture's own list,
            the constant frame; add ``"previous_frame"`` to fail a predictor no better than copying a frame).
        location_clips: At most this many training clips (the first by name) for the per-location calibration
            written into the card (None: all of them).
    """

    data: Path
    out: Path
    work_dir: Path
    epochs: int = 20
    batch_size: int = 4
    steps_per_epoch: int | None = 50
    seq_stride: int = 1
    lr: float = 1e-3
    lr_drop_epoch: int = 14
    time_budget_min: float = 0.0
    patience: int = 5
    n_val: int = 2
    init_from: Path | None = None
    freeze: list[int] = field(default_factory=list)
    model_id: str = "prednet-ped2"
    seed: int = 0
    crop: tuple[int, int] | None = None
    command: str = ""
    cache_dir: Path | None = None
    guard: bool = True
    objective: str = "default"
    fg_weight: float = 0.0
    warmup_steps: int = 0
    require_beat: tuple[str, ...] | None = None
    location_clips: int | None = None


def settings_trainer(config: Any, settings: TrainSettings) -> Any:
    """The :class:`~vigil.model.trainers.Trainer` of the config's architecture under the settings' objective."""
    from vigil.model.architectures import arch_of_config
    from vigil.model.trainers import trainer_for, with_objective

    trainer = with_objective(trainer_for(arch_of_config(config)), settings.objective, settings.fg_weight)
    if settings.require_beat is not None:
        trainer = dataclasses.replace(trainer, required=tuple(settings.require_beat))
    return trainer


def lr_schedule(lr: float, drop_epoch: int):
    """Step schedule of the paper: ``lr`` until ``drop_epoch``, then ``lr / 10``.

    Example:
        >>> f = lr_schedule(1e-3, 2)
        >>> [f(e) for e in range(4)]
        [0.001, 0.001, 0.0001, 0.0001]
    """

    def schedule(epoch: int, current: float | None = None) -> float:
        return lr if epoch < drop_epoch else lr / 10.0

    return schedule


def time_budget_callback(minutes: float, lr: float) -> Any:
    """Stop training once ``minutes`` have passed; drop the learning rate to ``lr / 10`` at 75% of them."""
    import keras

    class TimeBudget(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.start = time.time()

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            if time.time() - self.start > 0.75 * minutes * 60:
                self.model.optimizer.learning_rate.assign(lr / 10.0)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            elapsed = (time.time() - self.start) / 60
            log.info("epoch %d done, %.1f of %.0f min", epoch + 1, elapsed, minutes)
            if elapsed > minutes:
                log.info("time budget of %.0f min used; stopping", minutes)
                self.model.stop_training = True

    return TimeBudget()


def warmup_callback(lr: float, steps: int) -> Any:
    """Raise the learning rate linearly to ``lr`` over the first ``steps`` batches (Adam's first updates are the
    largest relative to the weights; on sparse frames they can push every prediction below zero at once)."""
    import keras

    class WarmUp(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            step = int(self.model.optimizer.iterations)  # the optimizer's count: restored when training resumes
            if step < steps:
                self.model.optimizer.learning_rate.assign(lr * (step + 1) / steps)
            elif step == steps:
                self.model.optimizer.learning_rate.assign(lr)

    return WarmUp()


def freeze_layers(model: Any, layers: list[int]) -> list[str]:
    """Make the convs of the given PredNet layers non-trainable; returns their names.

    Compile the model after this call so the change takes effect.
    """
    from vigil.model.prednet import get_cell

    cell = get_cell(model)
    bad = [i for i in layers if not 0 <= i < cell.nb_layers]
    if bad:
        raise ValueError(f"freeze indices must be in [0, {cell.nb_layers - 1}]. Received: {bad}")
    frozen = []
    for sub in cell.r_convs + cell.ahat_convs + cell.a_convs:
        if int(sub.name.rsplit("_", 1)[-1]) in layers:
            sub.trainable = False
            frozen.append(sub.name)
    return frozen


def build_model(config: Any, settings: TrainSettings) -> Any:
    """Build (and optionally initialise and partly freeze) the compiled training model of the config's architecture."""
    import keras

    from vigil.model.architectures import arch_of_config, get_architecture

    arch = arch_of_config(config)
    trainer = settings_trainer(config, settings)
    keras.utils.set_random_seed(settings.seed)
    model = trainer.build(config)
    if settings.init_from is not None:
        get_architecture(arch).load_weights(trainer.core(model), settings.init_from / get_architecture(arch).weights_file)
        log.info("initialised from %s", settings.init_from)
    if settings.freeze:
        if arch != "prednet":
            raise ValueError(f"--freeze applies to PredNet layers only. Received: arch={arch!r}")
        log.info("frozen: %s", freeze_layers(model, settings.freeze))
    model.compile(optimizer=keras.optimizers.Adam(settings.lr), loss=trainer.loss)
    return model


def make_callbacks(settings: TrainSettings) -> list[Any]:
    """Resume backup and checkpoint every epoch, best checkpoint, early stopping, LR schedule, CSV log."""
    import keras

    wd = settings.work_dir
    budget = [time_budget_callback(settings.time_budget_min, settings.lr)] if settings.time_budget_min else []
    warmup = [warmup_callback(settings.lr, settings.warmup_steps)] if settings.warmup_steps > 0 else []
    return [
        keras.callbacks.BackupAndRestore(str(wd / "backup"), save_freq="epoch", delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(str(wd / "last.weights.h5"), save_weights_only=True),
        keras.callbacks.ModelCheckpoint(str(wd / "best.weights.h5"), save_weights_only=True,
                                        save_best_only=True, monitor="val_loss"),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.patience),
        keras.callbacks.LearningRateScheduler(lr_schedule(settings.lr, settings.lr_drop_epoch)),
        keras.callbacks.CSVLogger(str(wd / "history.csv"), append=True),
        *budget,
        *warmup,
    ]


def calibrate(out: Path, clips: list[Clip]) -> dict[str, Any]:
    """Warm-up length and feature statistics on normal held-out clips, with the streaming step."""
    from vigil.model.inference import run_clips
    from vigil.model.streaming import StreamingPredictor

    predictor = StreamingPredictor.load(out)
    outputs = run_clips(predictor, {c.name: c.frames for c in clips})
    mse = [o.features.mse for o in outputs.values()]
    n_warmup = warmup_length(mse)
    stats = {f: feature_stats([getattr(o.features, f) for o in outputs.values()], n_warmup) for f in FEATURE_NAMES}
    stats[FUSED_FEATURE] = feature_stats([fused_values(o.features, stats) for o in outputs.values()], n_warmup)
    stats = {f: v.to_dict() for f, v in stats.items()}
    curve = np.median(np.stack([m[:20] for m in mse]), axis=0)
    return {"n_warmup": n_warmup, "feature_stats": stats, "clips": [c.name for c in clips],
            "median_mse_first_20_steps": [float(v) for v in curve]}


def recalibrate(model_dir: str | os.PathLike, data: str | os.PathLike) -> dict[str, Any]:
    """Recompute a trained model's calibration on the held-out clips named in its card; rewrites the card.

    Needed when the feature set changes (e.g. a card written before ``motion_max`` existed).
    """
    from vigil.model.streaming import StreamingPredictor

    model_dir = Path(model_dir)
    predictor = StreamingPredictor.load(model_dir)
    card = dict(predictor.card)
    names = card.get("data", {}).get("val_clips") or []
    if not names:
        raise ValueError(f"{model_dir / CARD_FILE} names no held-out clips (data.val_clips); retrain with `vigil train`.")
    folder = training_folder(data)
    by_stem = {p.stem: p for p in list_videos(folder)}
    missing = [n for n in names if n not in by_stem]
    if missing:
        raise FileNotFoundError(f"Held-out clips {missing} of the model card are not under {folder}.")
    h, w, c = predictor.input_shape
    card["calibration"] = calibrate(model_dir, load_clips([by_stem[n] for n in names], h, w, c))
    card["calibration"]["command"] = command_line()
    write_card(model_dir, card)
    return card["calibration"]


def train(config: Any, settings: TrainSettings) -> dict[str, Any]:
    """Train a model of the config's architecture, write the model directory (config, weights, model card) and
    return the card. Raises :class:`~vigil.model.collapse.TrainingCollapsedError` (and writes nothing) when the
    model collapsed or learnt nothing a trivial predictor would not."""
    from vigil.model.architectures import arch_of_config, arch_of_dir, get_architecture

    arch, trainer = get_architecture(arch_of_config(config)), settings_trainer(config, settings)
    if settings.init_from is not None:  # the architecture comes from the model; the sequence length may change
        if arch_of_dir(settings.init_from) != arch.name:
            raise ValueError(f"--init-from {settings.init_from} holds a {arch_of_dir(settings.init_from)} model, "
                             f"not {arch.name}.")
        config = trainer.with_nt(arch.load_config(settings.init_from), config.nt)
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    train_paths, val_paths = split_clips(list_videos(training_folder(settings.data)), settings.n_val)
    if not val_paths:
        raise ValueError("Validation needs at least one held-out clip; pass --n-val >= 1.")
    h, w, c = config.input_shape
    train_clips, val_clips = load_clips(train_paths, h, w, c), load_clips(val_paths, h, w, c)
    model, history, checks, elapsed = _fit(config, settings, trainer, train_clips, val_clips)
    settings.out.mkdir(parents=True, exist_ok=True)
    config.save(settings.out / CONFIG_FILE)
    arch.save_weights(trainer.core(model), settings.out / arch.weights_file)
    card = _card(config, settings, train_paths, val_paths, history, elapsed)
    card["training"]["baselines"] = checks
    write_card(settings.out, card)  # the model id (the cached calibration messages carry it) before calibrating
    card["calibration"] = calibrate(settings.out, val_clips)
    located = train_clips[:settings.location_clips] if settings.location_clips else train_clips
    card["calibration"]["locations"] = location_calibration(settings.out, located, settings.cache_dir)
    write_card(settings.out, card)
    return card


def _fit(config: Any, settings: TrainSettings, trainer: Any, train_clips: list[Clip],
         val_clips: list[Clip]) -> tuple[Any, dict[str, list[float]], dict[str, Any], float]:
    """Fit with the callbacks and the collapse guard; the best weights, the history, the baseline checks, seconds."""
    from vigil.model.collapse import ADVICE, TrainingCollapsedError, check_baselines, make_guard

    crop = settings.crop
    train_data = make_sequence_dataset(train_clips, config.nt, settings.batch_size, settings.seq_stride,
                                       max_batches=settings.steps_per_epoch, seed=settings.seed, crop=crop,
                                       strides=trainer.strides(config), target=trainer.target)
    val_data = make_sequence_dataset(val_clips, config.nt, settings.batch_size, config.nt, shuffle=False,
                                     seed=settings.seed, crop=crop, target=trainer.target)
    fit_config = dataclasses.replace(config, height=crop[0], width=crop[1]) if crop else config
    model = build_model(fit_config, settings)
    probe_frames = val_data[0][0]
    outputs = trainer.outputs(model, fit_config)
    guard = make_guard(lambda: float(np.std(outputs(probe_frames))), float(np.std(probe_frames)))
    start = time.time()
    callbacks = [*make_callbacks(settings), *([guard] if settings.guard else [])]
    history = model.fit(train_data, validation_data=val_data, epochs=settings.epochs, callbacks=callbacks,
                        verbose=1 if sys.stdout.isatty() else 2)
    elapsed = time.time() - start
    if guard.reason:
        raise TrainingCollapsedError(f"Training stopped: {guard.reason}. No model was written. {ADVICE}")
    if (settings.work_dir / "best.weights.h5").is_file():
        model.load_weights(settings.work_dir / "best.weights.h5")
    history_all = read_history(settings.work_dir, history.history)
    frames = np.concatenate([val_data[i][0] for i in range(len(val_data))])
    checks = check_baselines(min(history_all.get("val_loss") or [np.inf]), trainer.baselines(frames, config),
                             trainer.required if settings.guard else ())
    return model, history_all, checks, elapsed


def location_calibration(out: Path, clips: list[Clip], cache_dir: Path | None = None) -> dict[str, Any]:
    """The per-location calibration every camera of this model starts from, on its training clips, with the
    worker's warm-up measured on them, as ``vigil calibrate`` writes it (score messages cached in ``cache_dir``
    when given, where ``vigil calibrate`` finds them)."""
    from vigil.model.calibrate import warmed_calibration
    from vigil.model.replay import WORKER_WARMUP_FRAMES, clip_messages
    from vigil.model.streaming import StreamingPredictor

    predictor = StreamingPredictor.load(out)
    messages = clip_messages(predictor, {c.name: c.frames for c in clips}, warmup_frames=WORKER_WARMUP_FRAMES,
                             cache_dir=cache_dir)
    return warmed_calibration(list(messages.values()), predictor.config.features.heatmap_stride,
                              ",".join(messages)).to_dict()


def read_history(work_dir: Path, fallback: dict[str, list[float]]) -> dict[str, list[float]]:
    """All epochs' losses from ``history.csv`` (it spans resumed runs), else ``fallback``."""
    path = work_dir / "history.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return fallback
    import csv

    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return {key: [float(r[key]) for r in rows if r.get(key)] for key in ("loss", "val_loss")}


def _card(config: Any, settings: TrainSettings, train_paths: list[Path], val_paths: list[Path],
          history: dict[str, list[float]], elapsed: float) -> dict[str, Any]:
    import keras

    from vigil.model.architectures import arch_of_config, get_architecture

    arch = get_architecture(arch_of_config(config))
    val = history.get("val_loss", [])
    best = int(np.argmin(val)) if val else None
    return {
        "model_id": settings.model_id,
        "arch": arch.name,
        "architecture": f"{arch.summary}; Keras 3, keras.ops",
        "config": config.to_dict(),
        "data": {"source": str(settings.data), "train_clips": [p.stem for p in train_paths],
                 "val_clips": [p.stem for p in val_paths]},
        "training": {
            "epochs_run": len(history.get("loss", [])), "best_epoch": None if best is None else best + 1,
            "loss": [float(v) for v in history.get("loss", [])],
            "val_loss": [float(v) for v in val],
            "batch_size": settings.batch_size, "steps_per_epoch": settings.steps_per_epoch,
            "seq_stride": settings.seq_stride, "crop": list(settings.crop) if settings.crop else None,
            "lr": settings.lr, "lr_drop_epoch": settings.lr_drop_epoch,
            "patience": settings.patience, "time_budget_min": settings.time_budget_min, "init_from": str(settings.init_from) if settings.init_from else None,
            "freeze": settings.freeze, "seed": settings.seed, "wall_time_s": round(elapsed, 1),
            "objective": settings.objective, "fg_weight": settings.fg_weight, "warmup_steps": settings.warmup_steps,
            "keras": keras.__version__, "backend": keras.backend.backend(), "python": platform.python_version(),
        },
        "command": settings.command,
        "parameters": int(sum(np.prod(v.shape) for v in _weights_shapes(settings.out / arch.weights_file))),
    }


def _weights_shapes(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[k] for k in data.files if k != "names"]


def write_card(out: Path, card: dict[str, Any]) -> None:
    """Write ``model_card.json`` and a readable ``MODEL_CARD.md``."""
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(render_card(card))


def render_card(card: dict[str, Any]) -> str:
    """Markdown rendering of a model card."""
    tr = card["training"]
    lines = [
        f"# Model card: {card['model_id']}", "",
        f"{card['architecture']}; {card['parameters']:,} parameters.", "",
        "## Reproduce", "", "```", card.get("command", ""), "```", "",
        "## Data", "", f"Source: `{card['data']['source']}`", "",
        f"- train clips: {', '.join(card['data']['train_clips'])}",
        f"- validation (early stopping, calibration): {', '.join(card['data']['val_clips'])}", "",
        "## Training", "",
        f"{tr['epochs_run']} epochs (best {tr['best_epoch']}), {tr['wall_time_s'] / 60:.1f} min, "
        f"batch {tr['batch_size']}, {tr['steps_per_epoch']} steps/epoch, Adam lr {tr['lr']} "
        f"(/10 from epoch {tr['lr_drop_epoch'] + 1}), Keras {tr['keras']} ({tr['backend']}).", "",
        "| epoch | loss | val_loss |", "|---|---|---|",
    ]
    lines += [f"| {i + 1} | {lo:.5f} | {va:.5f} |" for i, (lo, va) in enumerate(zip(tr["loss"], tr["val_loss"],
                                                                                    strict=False))]
    if tr.get("baselines"):
        base = tr["baselines"]
        lines += ["", f"Best validation loss {base['best_val_loss']:.6g} against trivial predictors (same loss, same "
                  "windows): " + ", ".join(f"{k} {v:.6g} ({'beaten' if base['beats'][k] else 'NOT beaten'})"
                                           for k, v in base["baselines"].items()) + "."]
    lines += ["", "## Config", "", "```json", json.dumps(card["config"], indent=2), "```", ""]
    if "calibration" in card:
        cal = {k: v for k, v in card["calibration"].items() if k != "locations"}
        lines += ["## Calibration (held-out normal clips)", "", "```json", json.dumps(cal, indent=2), "```", ""]
        if "locations" in card["calibration"]:
            loc = {k: v for k, v in card["calibration"]["locations"].items() if k != "stats"}
            lines += ["## Per-location calibration (what each camera starts from; statistics in model_card.json)",
                      "", "```json", json.dumps(loc, indent=2), "```", ""]
    if "evaluation" in card:
        lines += ["## Evaluation", "", "```json", json.dumps(card["evaluation"], indent=2), "```", ""]
    return "\n".join(lines)


def copy_model_dir(src: Path, dst: Path) -> None:
    """Copy the files of a model directory (config, weights of any architecture, cards)."""
    from vigil.model.architectures import weights_files

    dst.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, *weights_files(), CARD_FILE, "MODEL_CARD.md"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def command_line() -> str:
    """The current command line, for the model card."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""


def env_threads() -> str | None:
    """``OMP_NUM_THREADS`` if set (logged with the run)."""
    return os.environ.get("OMP_NUM_THREADS")
