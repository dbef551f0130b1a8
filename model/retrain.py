"""``vigil retrain``: fine-tune a camera's model on its own normal footage, calibrate, gate, register, switch.

1. fine-tune the current version (or ``--init-from``) on the camera's collected normal footage, optionally with
   frozen layers (:func:`vigil.model.train.train`);
2. calibrate it on that footage (:func:`vigil.model.calibrate.calibrate_model`, as ``vigil calibrate``);
3. gate it on the footage clips the training held out (never trained or calibrated on): through the live scoring
   path (:func:`vigil.model.evaluate.score_clip`), the candidate may raise at most ``max_alerts`` alerts on them
   (default 0), and its mean prediction error may be at most ``error_ratio`` times the running version's (both
   models' figures are in the report);
4. register it in the :class:`~vigil.model.versions.ModelStore` only if it passes (a failed gate is recorded in
   the history with its reasons, and the old version keeps running);
5. switch the cameras to it (``current`` link); workers hot-swap, the scorer finds the new calibration in its card.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vigil.model.versions import ModelStore, model_version_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainPlan:
    """What ``vigil retrain`` does (the CLI's options).

    Args:
        name: The model name in the store (usually the camera id).
        footage: Folder of the camera's normal footage (videos).
        store: Where versions are kept.
        work: Scratch folder (candidate model, checkpoints).
        init_from: Start from this model directory (default: the current version, else the packaged model).
        freeze: Layer indices kept fixed.
        minutes: Training time budget.
        epochs: Maximum epochs.
        n_val: Footage clips held out for early stopping and the gate.
        max_alerts: Alerts the candidate may raise on the held-out footage.
        error_ratio: Largest candidate / running mean prediction error on the held-out footage.
        switch: Switch the cameras to a version that passes.
        steps_per_epoch: Batches per epoch.
        guard: Stop on a collapsed model (off only in plumbing tests of a step or two).
    """

    name: str
    footage: Path
    store: ModelStore
    work: Path
    init_from: Path | None = None
    freeze: list[int] = field(default_factory=list)
    minutes: float = 10.0
    epochs: int = 20
    n_val: int = 1
    max_alerts: int = 0
    error_ratio: float = 1.10
    switch: bool = True
    steps_per_epoch: int | None = 50
    guard: bool = True


@dataclass(frozen=True)
class GateReport:
    """The gate's verdict with its measurements."""

    passed: bool
    reasons: list[str]
    clips: list[str]
    candidate: dict[str, float]
    running: dict[str, float]


def base_model(plan: RetrainPlan) -> Path:
    """The model the candidate starts from: ``init_from``, else the current version, else the packaged model."""
    from vigil.model.streaming import DEFAULT_MODEL_DIR

    if plan.init_from is not None:
        return plan.init_from
    current = plan.store.current(plan.name)
    return plan.store.path(plan.name, current) if current else DEFAULT_MODEL_DIR


def retrain(plan: RetrainPlan) -> dict[str, Any]:
    """Run the whole pipeline; returns a report (``registered``, ``version``, ``gate``, ...)."""
    base = base_model(plan)
    candidate = _train(plan, base)
    gate = gate_candidate(candidate, base, plan)
    report: dict[str, Any] = {"name": plan.name, "base": str(base), "gate": asdict(gate), "registered": False, "version": None}
    if not gate.passed:
        plan.store.reject(plan.name, model_version_of(candidate), report["gate"])
        log.warning("gate failed, %s keeps running %s: %s", plan.name, plan.store.current(plan.name) or base, "; ".join(gate.reasons))
        return report
    version = plan.store.register(plan.name, candidate, report["gate"], parent=plan.store.current(plan.name))
    report.update(registered=True, version=version)
    if plan.switch:
        plan.store.switch(plan.name, version, reason="retrain passed its gate")
        log.info("%s now runs %s (%s)", plan.name, version, plan.store.link(plan.name))
    return report


def _train(plan: RetrainPlan, base: Path) -> Path:
    """Fine-tune ``base`` on the footage and calibrate it; returns the candidate's model directory."""
    from vigil.model.architectures import arch_of_dir, get_architecture
    from vigil.model.calibrate import calibrate_model
    from vigil.model.train import TrainSettings, train

    out = plan.work / "candidate"
    shutil.rmtree(out, ignore_errors=True)
    config = get_architecture(arch_of_dir(base)).load_config(base)
    settings = TrainSettings(data=plan.footage, out=out, work_dir=plan.work / "train", epochs=plan.epochs,
                             time_budget_min=plan.minutes, n_val=plan.n_val, init_from=base, freeze=list(plan.freeze),
                             steps_per_epoch=plan.steps_per_epoch, guard=plan.guard, model_id=plan.name,
                             command=f"vigil retrain {plan.name}")  # fmt: skip
    log.info("fine-tuning %s on %s (budget %.1f min, frozen layers %s)", base, plan.footage, plan.minutes, plan.freeze or "none")
    train(config, settings)
    log.info("calibrating the candidate on its training footage")
    calibrate_model(out, plan.footage, command=f"vigil retrain {plan.name}")
    return out


def gate_candidate(candidate: Path, running: Path, plan: RetrainPlan) -> GateReport:
    """Score the held-out footage clips with both models through the live path and apply the gate."""
    card = json.loads((candidate / "model_card.json").read_text())
    clips = list(card.get("data", {}).get("val_clips", []))
    if not clips:
        return GateReport(False, ["the candidate's card names no held-out footage clip"], [], {}, {})
    new, old = held_out_figures(candidate, plan.footage, clips), held_out_figures(running, plan.footage, clips)
    reasons = []
    if new["alerts"] > plan.max_alerts:
        reasons.append(f"{new['alerts']:.0f} alerts on held-out normal footage (at most {plan.max_alerts})")
    if new["mean_mse"] > plan.error_ratio * old["mean_mse"]:
        reasons.append(f"mean prediction error {new['mean_mse']:.3g} > {plan.error_ratio} x the running model's {old['mean_mse']:.3g}")
    return GateReport(not reasons, reasons or ["passed"], clips, new, old)


def held_out_figures(model_dir: Path, footage: Path, clips: list[str]) -> dict[str, float]:
    """Alerts and mean prediction error of a model on named footage clips, through the live scoring path."""
    from vigil.model.data import list_videos, read_video, training_folder
    from vigil.model.evaluate import location_calibration, score_clip
    from vigil.model.streaming import StreamingPredictor

    predictor = StreamingPredictor.load(model_dir)
    cal = location_calibration(predictor.card)
    videos = {p.stem: p for p in list_videos(training_folder(footage))}
    alerts, errors, frames = 0, [], 0
    for name in clips:
        msgs, run = score_clip(predictor, cal, read_video(videos[name], *predictor.input_shape), progress=False)
        alerts += len(run.events)
        errors += [m.features.mse for m in msgs if not m.warmup]
        frames += len(msgs)
    return {"alerts": float(alerts), "mean_mse": float(np.mean(errors)) if errors else float("inf"), "frames": float(frames)}
