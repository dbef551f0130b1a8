"""``vigil retrain``: fine-tune a camera's model on its own normal footage, calibrate, gate, register, switch.

1. fine-tune the current version (or ``--init-from``) on the camera's collected normal footage, optionally with
   frozen layers (:func:`vigil.model.train.train`);
2. calibrate it on that footage (:func:`vigil.model.calibrate.calibrate_model`, as ``vigil calibrate``);
3. gate it, always through the live scoring path (:func:`vigil.model.evaluate.score_clip`), both models on the
   same clips (both models' figures are in the report):

   * on the footage clips the training held out (never trained or calibrated on): at most ``max_alerts`` alerts
     (default 0), and a mean prediction error at most ``error_ratio`` times the running version's;
   * with a labelled set of the site (``labelled``, :func:`load_labelled_set`): a frame AUC at most ``auc_drop``
     below the running version's, no fewer anomalous clips alerted, and at most ``max_alerts`` more false alerts;
   * without one: the false-alert rate on the last day of the camera's footage (:func:`last_day_clips`; every
     alert there is false, the footage being confidently normal) at most ``max_alert_rate`` per hour;
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
        max_alerts: Alerts the candidate may raise on the held-out footage (and false alerts it may add on a
            labelled set).
        error_ratio: Largest candidate / running mean prediction error on the held-out footage.
        labelled: The site's labelled set (videos and ``labels.json``); None: the last-day gate instead.
        auc_drop: Largest fall of the frame AUC on the labelled set, candidate against running.
        max_alert_rate: Largest false-alert rate (alerts per hour of footage) on the last day's footage.
        last_day_hours: How far back from the newest footage segment "the last day" reaches.
        last_day_clips: Most last-day segments scored (evenly spaced), to bound the gate's time.
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
    labelled: Path | None = None
    auc_drop: float = 0.02
    max_alert_rate: float = 1.0
    last_day_hours: float = 24.0
    last_day_clips: int = 24
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
    check: str = "held-out footage"
    """Which checks ran: ``held-out footage`` plus ``labelled set`` or ``last day``."""
    extra: dict[str, Any] = field(default_factory=dict)
    """The second check's figures: ``{"candidate": {...}, "running": {...}, "clips": ...}``."""


def base_model(plan: RetrainPlan) -> Path:
    """The model the candidate starts from: ``init_from``, else the current version, else the packaged model."""
    from vigil.model.streaming import DEFAULT_MODEL_DIR

    if plan.init_from is not None:
        return plan.init_from
    current = plan.store.current(plan.name)
    return plan.store.path(plan.name, current) if current else DEFAULT_MODEL_DIR


def retrain(plan: RetrainPlan) -> dict[str, Any]:
    """Run the whole pipeline; returns a report (``registered``, ``version``, ``gate``; ``why`` when it failed).

    Raises:
        ValueError: A labelled set that cannot be used (checked before any training).
        FileNotFoundError: No footage.
    """
    if plan.labelled is not None:
        load_labelled_set(plan.labelled)
    from vigil.model.collapse import TrainingCollapsedError

    base = base_model(plan)
    try:
        candidate = _train(plan, base)
    except TrainingCollapsedError as exc:
        why = f"training failed: the old model of {plan.name} is kept because the candidate did not learn ({exc})"
        plan.store.reject(plan.name, "none", {"check": "training", "passed": False, "reasons": [str(exc)]})
        log.warning("%s", why)
        return {"name": plan.name, "base": str(base), "gate": None, "registered": False, "version": None, "why": why}
    gate = gate_candidate(candidate, base, plan)
    report: dict[str, Any] = {"name": plan.name, "base": str(base), "gate": asdict(gate), "registered": False, "version": None}
    if not gate.passed:
        plan.store.reject(plan.name, model_version_of(candidate), report["gate"])
        report["why"] = kept_because(plan, base, gate)
        log.warning("%s", report["why"])
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
    # a fresh run every time: train() resumes from work_dir's backup, which would hand back the last run's weights
    shutil.rmtree(plan.work / "train", ignore_errors=True)
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


def kept_because(plan: RetrainPlan, base: Path, gate: GateReport) -> str:
    """The one sentence a failed gate ends with: which model keeps running, and why."""
    running = plan.store.current(plan.name) or str(base)
    return f"gate failed ({gate.check}): the old model of {plan.name} ({running}) is kept because " + "; ".join(gate.reasons)


def gate_candidate(candidate: Path, running: Path, plan: RetrainPlan) -> GateReport:
    """Apply the gate: the held-out footage, then the labelled set if the site has one, else the last day."""
    card = json.loads((candidate / "model_card.json").read_text())
    clips = list(card.get("data", {}).get("val_clips", []))
    if not clips:
        return GateReport(False, ["the candidate's card names no held-out footage clip"], [], {}, {})
    videos = {p.stem: p for p in list_footage(plan.footage)}
    held = [videos[c] for c in clips if c in videos]
    if len(held) != len(clips):
        return GateReport(False, [f"held-out clips {sorted(set(clips) - set(videos))} are missing from {plan.footage}"],
                          clips, {}, {})  # fmt: skip
    new, old = clip_figures(candidate, held), clip_figures(running, held)
    reasons = []
    if new["alerts"] > plan.max_alerts:
        reasons.append(f"it raised {new['alerts']:.0f} alerts on held-out normal footage (at most {plan.max_alerts})")
    if new["mean_mse"] > plan.error_ratio * old["mean_mse"]:
        reasons.append(f"its mean prediction error on held-out footage, {new['mean_mse']:.3g}, is above "
                       f"{plan.error_ratio} x the running model's {old['mean_mse']:.3g}")  # fmt: skip
    if plan.labelled is not None:
        check, extra, more = "held-out footage + labelled set", *labelled_gate(candidate, running, plan.labelled, plan)
    else:
        check, extra, more = "held-out footage + last day", *last_day_gate(candidate, running, plan)
    reasons += more
    return GateReport(not reasons, reasons or ["passed"], clips, new, old, check, extra)


def labelled_gate(candidate: Path, running: Path, folder: Path, plan: RetrainPlan) -> tuple[dict[str, Any], list[str]]:
    """Both models on the site's labelled set in ``folder``: frame AUC, anomalous clips alerted, false alerts."""
    clips, labels = load_labelled_set(folder)
    new, old = clip_figures(candidate, clips, labels), clip_figures(running, clips, labels)
    reasons = []
    if new["auc"] < old["auc"] - plan.auc_drop:
        reasons.append(f"its frame AUC on the labelled set, {new['auc']:.3f}, is more than {plan.auc_drop} below "
                       f"the running model's {old['auc']:.3f}")  # fmt: skip
    if new["clips_alerted"] < old["clips_alerted"]:
        reasons.append(f"it alerted on {new['clips_alerted']:.0f} of {new['anomalous_clips']:.0f} labelled incidents, "
                       f"the running model on {old['clips_alerted']:.0f}")  # fmt: skip
    if new["false_alerts"] > old["false_alerts"] + plan.max_alerts:
        reasons.append(f"it raised {new['false_alerts']:.0f} false alerts on the labelled set, the running model "
                       f"{old['false_alerts']:.0f} (at most {plan.max_alerts} more)")  # fmt: skip
    return {"clips": [p.stem for p in clips], "candidate": new, "running": old}, reasons


def last_day_gate(candidate: Path, running: Path, plan: RetrainPlan) -> tuple[dict[str, Any], list[str]]:
    """Both models on the last day's footage: false alerts per hour (every alert there is false)."""
    clips = last_day_clips(plan.footage, plan.last_day_hours, plan.last_day_clips)
    new, old = clip_figures(candidate, clips), clip_figures(running, clips)
    for figures in (new, old):
        figures["alerts_per_hour"] = figures["alerts"] / max(figures["hours"], 1e-9)
    reasons = []
    if new["alerts_per_hour"] > plan.max_alert_rate:
        reasons.append(f"its false-alert rate on the last day's footage ({len(clips)} segments, "
                       f"{new['hours'] * 60:.1f} min) is {new['alerts_per_hour']:.2f} per hour ({new['alerts']:.0f} "
                       f"alerts), above {plan.max_alert_rate} per hour; the running model's is "
                       f"{old['alerts_per_hour']:.2f}")  # fmt: skip
    return {"clips": [p.stem for p in clips], "candidate": new, "running": old}, reasons


LABELS_FILE = "labels.json"
MAX_LABELLED_CLIPS = 1000


def load_labelled_set(folder: Path) -> tuple[list[Path], dict[str, np.ndarray]]:
    """A site's labelled set: videos under ``folder`` and ``labels.json`` (or Ped2's ``labels_frame_ped2.json``),
    ``{clip: [0/1 per frame]}`` or ``{clip: 0|1}`` for a whole clip (an operator's verdict on an alert's clip).

    Raises:
        ValueError: No labels file, a clip without a video, a value that is not 0/1, or a set with no anomalous
            or no normal frame (an AUC needs both).
    """
    file = next((folder / n for n in (LABELS_FILE, "labels_frame_ped2.json") if (folder / n).is_file()), None)
    if file is None:
        raise ValueError(f"labelled set {folder} has no {LABELS_FILE} ({{clip: [0/1 per frame]}} or {{clip: 0|1}})")
    raw = json.loads(file.read_text())
    if not isinstance(raw, dict) or not 0 < len(raw) <= MAX_LABELLED_CLIPS:
        raise ValueError(f"{file} must map 1-{MAX_LABELLED_CLIPS} clip names to labels")
    videos = {p.stem: p for p in list_footage(folder)}
    missing = sorted(set(raw) - set(videos))
    if missing:
        raise ValueError(f"{file} labels clips with no video in {folder}: {missing[:5]}")
    labels = {}
    for name, value in raw.items():
        lab = np.asarray(value if isinstance(value, list) else [value])
        if lab.ndim != 1 or lab.size == 0 or not np.isin(lab, (0, 1)).all() or lab.dtype == bool:
            raise ValueError(f"{file}: the labels of {name} must be 0/1 (a list per frame, or one for the clip)")
        labels[name] = lab.astype(np.int8)
    flat = np.concatenate(list(labels.values()))
    if flat.all() or not flat.any():
        raise ValueError(f"{file}: a labelled set needs both anomalous and normal frames")
    return [videos[n] for n in raw], labels


def list_footage(folder: Path) -> list[Path]:
    """The videos of a footage folder (``folder/train`` in the Ped2 layout)."""
    from vigil.model.data import list_videos, training_folder

    return list_videos(training_folder(folder))


def segment_span_ms(path: Path) -> tuple[int, int]:
    """Start and end (epoch ms) of a footage segment: from its ``<start ms>-<end ms>`` name as the evidence service
    writes it, else its file time (a 10 s segment ending then).

    Example:
        >>> segment_span_ms(Path("cam-3/1764640800000-1764640810000.mkv"))
        (1764640800000, 1764640810000)
    """
    parts = path.stem.split("-")
    if len(parts) == 2 and all(p.isdigit() for p in parts) and int(parts[0]) < int(parts[1]):
        return int(parts[0]), int(parts[1])
    end = int(path.stat().st_mtime * 1000)
    return end - 10_000, end


def last_day_clips(footage: Path, hours: float = 24.0, at_most: int = 24) -> list[Path]:
    """The segments that started within ``hours`` of the newest one, at most ``at_most`` of them, evenly spaced."""
    spans = {p: segment_span_ms(p) for p in list_footage(footage)}
    newest = max(start for start, _ in spans.values())
    recent = sorted((p for p, (start, _) in spans.items() if start >= newest - hours * 3_600_000), key=lambda p: spans[p])
    if len(recent) > at_most:
        recent = [recent[int(i)] for i in np.linspace(0, len(recent) - 1, at_most).round()]
    return recent


def clip_figures(model_dir: Path, clips: list[Path], labels: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """A model's figures on clips through the live scoring path: alerts, mean prediction error, frames, hours (at
    the replay's 10 fps); with frame ``labels`` also the frame AUC, incidents alerted and false alerts."""
    from vigil.model.data import read_video
    from vigil.model.evaluate import location_calibration, score_clip
    from vigil.model.live import event_metrics, frame_metrics
    from vigil.model.replay import FPS
    from vigil.model.streaming import StreamingPredictor

    predictor = StreamingPredictor.load(model_dir)
    cal = location_calibration(predictor.card)
    alerts, errors, frames, runs = 0, [], 0, {}
    for path in clips:
        msgs, run = score_clip(predictor, cal, read_video(path, *predictor.input_shape), progress=False)
        alerts += len(run.events)
        errors += [m.features.mse for m in msgs if not m.warmup]
        frames += len(msgs)
        runs[path.stem] = run
    out = {"alerts": float(alerts), "mean_mse": float(np.mean(errors)) if errors else float("inf"),
           "frames": float(frames), "hours": frames / FPS / 3600}  # fmt: skip
    if labels is not None:
        full = {n: np.resize(lab, len(runs[n].scores)) if lab.size == 1 else lab for n, lab in labels.items()}
        ev = event_metrics(full, runs, FPS)
        out |= {"auc": frame_metrics(full, runs)["auc_all_frames"], "clips_alerted": float(ev["clips_alerted"]),
                "anomalous_clips": float(ev["anomalous_clips"]), "false_alerts": float(ev["false_alerts"])}
    return out
