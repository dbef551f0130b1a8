"""``vigil evaluate`` (UCSD Ped2) and ``vigil score`` (one video), through the live scoring path.

The model steps each clip as the worker would, every frame becomes the score message the worker would
publish (:mod:`vigil.model.replay`), and the messages go through the scorer's own per-camera core
(:mod:`vigil.model.alerting`, via :mod:`vigil.model.live`), calibrated from the model card, causally,
with the event rules. The headline is that path's figure, as operators get it:

* frame AUC over every test frame (warm-up frames, which the scorer does not score, count as a typical
  normal frame), and over the scored frames only;
* events: clips alerted (recall), alerts overlapping no labelled frame (false), median delay from the
  span's first scored frame to the alert;
* alerts on the held-out normal clips (the model card's ``val_clips``), and on the clips the calibration was
  fitted on (the card's ``train_clips``, in-sample: their largest score sets the threshold), each with alerts
  per hour of scored footage and how many opened within 1 s of a fresh state (a camera's start, a worker's
  restart or a rebalance).

Beside it, labelled: the model alone (the error map without the motion map), the literature's per-clip
min-max protocol of both (uses each clip's future), the previous releases' frame-feature score
(``reference_frame_features``), for continuity, and ``continuous``: the test clips as ``vigil demo --clips
all`` plays them, back to back on a few long-running cameras whose scoring state (the level it follows, its
events and cooldowns) carries from clip to clip, as in production. docs/model.md says how each parameter was
chosen.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from vigil.model.alerting import Observation
from vigil.model.baseline import Calibration
from vigil.model.live import (
    DEMO_CAMERAS,
    ClipReplay,
    camera_playlists,
    event_metrics,
    frame_metrics,
    per_clip_minmax,
    replay,
    replay_playlists,
)
from vigil.model.roc import eer, roc_auc, roc_curve

log = logging.getLogger(__name__)

CACHE_DIR = Path(".state/replay")
"""Score messages of clips, cached by model version (relative to the working directory)."""
FPS = 10.0


def location_calibration(card: dict[str, Any]) -> Calibration:
    """The per-location calibration of a model card; raises with the command that writes it."""
    block = card.get("calibration", {}).get("locations")
    if not block:
        raise ValueError("The model card has no per-location calibration; run `vigil calibrate --model DIR`.")
    return Calibration.from_dict(block)


def model_only(calibration: Calibration) -> Calibration:
    """The calibration restricted to the model's error map (the motion map's statistics removed)."""
    return replace(calibration, stats={"error": calibration.stats["error"]})


def observations(messages: dict[str, list[Any]]) -> dict[str, list[Observation]]:
    """Score messages as the core's observations (maps dequantised)."""
    return {name: [Observation.from_message(m) for m in msgs] for name, msgs in messages.items()}


def keep_maps(clips: dict[str, list[Observation]], maps: tuple[str, ...]) -> dict[str, list[Observation]]:
    """The same observations with only the named maps (e.g. ``("error",)``: the model alone)."""
    return {name: [replace(o, maps={k: v for k, v in o.maps.items() if k in maps}) for o in obs]
            for name, obs in clips.items()}


def evaluate(model_dir: str | os.PathLike, data: str | os.PathLike | None, out: str | os.PathLike,
             clips: list[str] | None = None, plots: bool = True) -> dict[str, Any]:
    """Evaluate a model directory on UCSD Ped2 test; writes ``metrics.json``, ``scores.csv`` and plots."""
    from vigil.model.data import load_ped2_labels, load_ped2_masks, ped2_dir, require_ped2_clips
    from vigil.model.replay import ped2_messages
    from vigil.model.streaming import StreamingPredictor

    start = time.time()
    root, out = ped2_dir(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    predictor = StreamingPredictor.load(model_dir)
    cal = location_calibration(predictor.card)
    labels = load_ped2_labels(root)
    names = clips or sorted(labels)
    require_ped2_clips(root, names, labels)
    held = list(predictor.card.get("data", {}).get("val_clips", []))
    fitted = present_clips(root, predictor.card.get("data", {}).get("train_clips", [])) if not clips else []
    messages = ped2_messages(root, predictor, CACHE_DIR, names + held + fitted)
    labels = {n: labels[n][: len(messages[n])] for n in names}
    runs = _runs(messages, names, held, cal, fitted)
    metrics = _metrics(predictor, labels, runs, cal)
    metrics["reference_frame_features"] = _reference(predictor.card, messages, labels)
    metrics["continuous"] = continuous(messages, labels, held, cal)
    metrics["regularity"] = {"what": "the sources' regularity score: s_r = 1 - s_a, s_a = frame MSE min-max scaled "
                                     "per clip (uses each clip's future; comparison only)",
                             "auc": roc_auc(np.concatenate(list(labels.values())),
                                            np.concatenate(list(anomaly_per_clip(messages, list(labels)).values())))}
    metrics["localisation"] = localisation(labels, _heatmaps(messages, names), load_ped2_masks(root), _n_warmup(runs))
    metrics["runtime_s"] = round(time.time() - start, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_scores_csv(out / "scores.csv", labels, messages, runs)
    if plots:
        _plots(out, labels, runs, root, predictor, messages)
    log.info("evaluation done in %.1f s: %s", metrics["runtime_s"], metrics["headline"])
    return metrics


def held_out_alerts(model_dir: str | os.PathLike, data: str | os.PathLike | None) -> dict[str, Any]:
    """Alerts per held-out normal clip (the card's ``val_clips``) through the live path, scoring no test clip:
    the check an adoption rule can make before any test figure is seen (``vigil evaluate --normal-only``)."""
    from vigil.model.data import ped2_dir
    from vigil.model.replay import ped2_messages
    from vigil.model.streaming import StreamingPredictor

    predictor = StreamingPredictor.load(model_dir)
    held = list(predictor.card.get("data", {}).get("val_clips", []))
    if not held:
        raise ValueError(f"{model_dir}: the model card names no held-out normal clips (data.val_clips).")
    messages = ped2_messages(ped2_dir(data), predictor, CACHE_DIR, held)
    return normal_alerts(replay(observations(messages), location_calibration(predictor.card)))


def present_clips(root: Path, clips: list[str]) -> list[str]:
    """The named training clips that ``root/train`` holds (the shipped mini set has only the held-out two)."""
    from vigil.model.data import list_videos

    train = root / "train"
    have = {v.stem for v in list_videos(train)} if train.is_dir() else set()
    return [c for c in clips if c in have]


def _runs(messages: dict[str, list[Any]], names: list[str], held: list[str], cal: Calibration,
          fitted: list[str] | None = None) -> dict[str, dict[str, ClipReplay]]:
    """The live path (fused) and the model alone on the test clips, the live path on the held-out normal clips
    and on the calibration's own clips (``fitted``)."""
    obs = observations({n: messages[n] for n in names})
    return {
        "live": replay(obs, cal),
        "model_only": replay(keep_maps(obs, ("error",)), model_only(cal)),
        "held_out_normal": replay(observations({n: messages[n] for n in held}), cal),
        "calibration_clips": replay(observations({n: messages[n] for n in fitted or []}), cal),
    }


CONTINUOUS_MODES = {"following_level": True, "level_fixed": False}
"""The long-running replays of :func:`continuous`: whether the cameras follow the scene's level (as the service)."""


def continuous(messages: dict[str, list[Any]], labels: dict[str, np.ndarray], interludes: list[str], cal: Calibration,
               cameras: int = DEMO_CAMERAS) -> dict[str, Any]:
    """The test clips as ``vigil demo --clips all`` plays them: dealt to ``cameras`` long-running cameras, back
    to back with a held-out normal clip between two (:func:`vigil.model.live.camera_playlists`), one scoring
    state per camera (:func:`vigil.model.live.replay_playlists`); as the service does (following the scene's
    level) and with the level held at the calibration's. The headline scores each clip from a fresh state."""
    playlists = camera_playlists(list(labels), cameras, [n for n in interludes if n in messages])
    obs = observations({n: messages[n] for p in playlists for n in p})
    out: dict[str, Any] = {"what": "the demo's arrangement (vigil demo --clips all): each camera plays its clips back "
                                   "to back through one scoring state; a held-out normal clip between two",
                           "playlists": playlists}  # fmt: skip
    for key, adapt in CONTINUOUS_MODES.items():
        cams = replay_playlists(obs, playlists, cal, adapt=adapt)
        tests = {n: r for cam in cams for n, r in cam if n in labels}
        out[key] = {**frame_metrics(labels, tests), "events": event_metrics(labels, tests, FPS),
                    "normal_clip_alerts": sum(len(r.events) for cam in cams for n, r in cam if n not in labels)}
    return out


def normal_alerts(runs: dict[str, ClipReplay], fps: float = FPS) -> dict[str, Any]:
    """Alerts on normal clips: per clip, in all, per hour of scored footage, and how many opened within 1 s of
    the clip's first scored frame (each clip starts from a fresh state, as a camera does after a restart).

    Example:
        >>> from vigil.model.live import Event
        >>> r = ClipReplay(np.zeros(36003), np.arange(36003) < 3, [Event(5, 7, 9, 3.0), Event(900, 902, 910, 2.5)])
        >>> m = normal_alerts({"a": r})  # an hour of scored frames at 10 fps; one alert opens at the 3rd scored frame
        >>> m["total_alerts"], m["alerts_per_hour"], m["within_1s_of_start"]
        (2, 2.0, 1)
    """
    alerts = {n: len(r.events) for n, r in runs.items()}
    scored = sum(int((~r.warmup).sum()) for r in runs.values())
    early = 0
    for r in runs.values():
        first = int(np.argmax(~r.warmup))  # the first scored frame (0 when none is scored: then no event either)
        early += sum(e.start_seq < first + fps for e in r.events)
    total = sum(alerts.values())
    return {"clips": list(runs), "alerts": alerts, "total_alerts": total, "scored_minutes": round(scored / fps / 60, 2),
            "alerts_per_hour": round(total / (scored / fps / 3600), 1) if scored else None,
            "within_1s_of_start": early}


def _n_warmup(runs: dict[str, dict[str, ClipReplay]]) -> int:
    first = next(iter(runs["live"].values()))
    return int(first.warmup.sum())


def _metrics(predictor: Any, labels: dict[str, np.ndarray], runs: dict[str, dict[str, ClipReplay]],
             cal: Calibration) -> dict[str, Any]:
    live, alone = runs["live"], runs["model_only"]
    y = np.concatenate(list(labels.values())).astype(bool)
    minmax = {k: roc_auc(y, np.concatenate([per_clip_minmax(r)[n] for n in labels])) for k, r in (("live", live), ("model_only", alone))}
    head = frame_metrics(labels, live)
    return {
        "model_id": predictor.model_id, "model_version": predictor.model_version, "clips": list(labels),
        "headline": {"path": "live scoring core (vigil.model.alerting), causal, calibrated from the model card",
                     "auc": head["auc_all_frames"], "eer": eer(y, np.concatenate([live[n].scores for n in labels])),
                     **head, "threshold": cal.threshold},
        "events": event_metrics(labels, live, FPS),
        "held_out_normal": normal_alerts(runs["held_out_normal"]),
        "calibration_clips": {"what": "in-sample: the clips the threshold was fitted on (their largest score plus "
                                      "the margin sets it; a negative margin makes some alert by construction)",
                              "threshold_margin": cal.extra.get("threshold_margin"),
                              **normal_alerts(runs["calibration_clips"])},
        "model_only": {"what": "the model's error map alone (no motion map), same core", **frame_metrics(labels, alone)},
        "per_clip_minmax": {"what": "literature protocol: each clip min-max scaled with its own future; comparison only",
                            "live_auc": minmax["live"], "model_only_auc": minmax["model_only"]},
        "calibration": {"source": cal.source, "frames": cal.frames, "normal_max": cal.normal_max},
    }  # fmt: skip


def _reference(card: dict[str, Any], messages: dict[str, list[Any]], labels: dict[str, np.ndarray]) -> dict[str, Any]:
    """The previous releases' headline (frame features standardised with the card's statistics, fused, 5-frame
    mean) on the same messages, for continuity; not the alert path."""
    from vigil.model.calibration import FeatureStats, causal_scores, fused_values
    from vigil.model.features import FrameFeatures

    cal = card.get("calibration", {})
    if "feature_stats" not in cal:
        return {}
    stats = {f: FeatureStats(**v) for f, v in cal["feature_stats"].items()}
    scores = []
    for name in labels:
        feats = FrameFeatures.from_mapping({f: [getattr(m.features, f) for m in messages[name]] for f in FrameFeatures.names()})
        scores.append(causal_scores(fused_values(feats, stats), "fused", stats["fused"], int(cal["n_warmup"]), 5))
    y = np.concatenate(list(labels.values()))
    return {"what": "frame features, card statistics, fused, 5-frame mean (previous headline)",
            "auc": roc_auc(y, np.concatenate(scores))}


def anomaly_per_clip(messages: dict[str, list[Any]], names: list[str]) -> dict[str, np.ndarray]:
    """The sources' per-clip anomaly score ``s_a``: each clip's frame MSE min-max scaled over its scored
    (non-warm-up) frames; warm-up frames get the clip's median. The regularity score is ``1 - s_a``.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> msgs = [NS(warmup=w, features=NS(mse=m)) for w, m in ((True, 9.0), (False, 1.0), (False, 3.0), (False, 2.0))]
        >>> anomaly_per_clip({"c": msgs}, ["c"])["c"].tolist()
        [0.5, 0.0, 1.0, 0.5]
    """
    out = {}
    for name in names:
        mse = np.array([m.features.mse for m in messages[name]], np.float64)
        scored = ~np.array([m.warmup for m in messages[name]], bool)
        lo, hi = (mse[scored].min(), mse[scored].max()) if scored.any() else (0.0, 0.0)
        s_a = (mse - lo) / (hi - lo) if hi > lo else np.zeros_like(mse)
        s_a[~scored] = float(np.median(s_a[scored])) if scored.any() else 0.0
        out[name] = s_a
    return out


def _heatmaps(messages: dict[str, list[Any]], names: list[str]) -> dict[str, np.ndarray]:
    return {n: np.stack([m.heatmap() for m in messages[n]]) for n in names}


def localisation(labels: dict[str, np.ndarray], heatmaps: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                 n_warmup: int) -> dict[str, Any]:
    """Share of anomalous frames whose largest-error patch (2x2 heat-map cells) overlaps the mask.

    Also the chance level: the mean share of all patches that overlap the mask.
    """
    hits, chance, count = 0, 0.0, 0
    for name, lab in labels.items():
        if name not in masks:
            continue
        for t in np.flatnonzero(lab[n_warmup:]) + n_warmup:
            overlap = _patch_overlap(heatmaps[name][t].shape, masks[name][t])
            patch = _window_mean(heatmaps[name][t])
            hits += bool(overlap.flat[int(np.argmax(patch))])
            chance += float(overlap.mean())
            count += 1
    if not count:
        return {"frames": 0}
    return {"frames": count, "hit_rate": hits / count, "chance": chance / count,
            "patch": "2x2 heat-map cells (the patch_max window)"}


def _window_mean(heat: np.ndarray) -> np.ndarray:
    """Mean over 2x2 windows of heat-map cells at stride 1."""
    return (heat[:-1, :-1] + heat[1:, :-1] + heat[:-1, 1:] + heat[1:, 1:]) / 4.0


def _patch_overlap(heat_shape: tuple[int, int], mask: np.ndarray) -> np.ndarray:
    """For every 2x2-cell patch, whether it overlaps any mask pixel (mask at full resolution)."""
    h, w = heat_shape
    rows = np.array_split(np.arange(mask.shape[0]), h)
    cols = np.array_split(np.arange(mask.shape[1]), w)
    cell = np.array([[mask[r[0]:r[-1] + 1, c[0]:c[-1] + 1].any() for c in cols] for r in rows])
    return cell[:-1, :-1] | cell[1:, :-1] | cell[:-1, 1:] | cell[1:, 1:]


def record_evaluation(model_dir: str | os.PathLike, metrics: dict[str, Any], command: str) -> None:
    """Add the evaluation summary (and the command that produced it) to the model card."""
    from vigil.model.streaming import CARD_FILE
    from vigil.model.train import write_card

    model_dir = Path(model_dir)
    card = json.loads((model_dir / CARD_FILE).read_text())
    ev = metrics["events"]
    card["evaluation"] = {
        "command": command, "clips": metrics["clips"], "headline": metrics["headline"],
        "events": {k: ev[k] for k in ("recall", "precision", "false_alerts", "median_delay_s")},
        "held_out_normal_alerts": metrics["held_out_normal"]["total_alerts"],
        "calibration_clip_alerts": {k: metrics["calibration_clips"].get(k) for k in
                                    ("threshold_margin", "total_alerts", "scored_minutes", "alerts_per_hour",
                                     "within_1s_of_start")},
        "model_only": metrics["model_only"],
        "per_clip_minmax": metrics["per_clip_minmax"], "localisation": metrics["localisation"],
        "regularity": metrics.get("regularity", {}),
        "long_running_cameras": {
            k: {"auc": c["auc_all_frames"], "normal_clip_alerts": c["normal_clip_alerts"],
                **{f: c["events"][f] for f in ("recall", "precision", "false_alerts", "median_delay_s")}}
            for k, c in metrics.get("continuous", {}).items() if k in CONTINUOUS_MODES
        },
    }  # fmt: skip
    write_card(model_dir, card)


def _plots(out: Path, labels: dict[str, np.ndarray], runs: dict[str, dict[str, ClipReplay]], root: Path,
           predictor: Any, messages: dict[str, list[Any]]) -> None:
    from vigil.model.data import load_ped2_masks, read_video
    from vigil.model.plots import plot_clip_scores, plot_localisation, plot_regularity, plot_roc

    live = runs["live"]
    plot_clip_scores(out / "clip_scores.png", labels, {n: live[n].scores for n in labels}, "live score")
    s_a = anomaly_per_clip(messages, list(labels))
    plot_regularity(out / "regularity.png", labels, {n: 1.0 - s_a[n] for n in labels},
                    {n: np.array([m.warmup for m in messages[n]], bool) for n in labels}, predictor.model_id)
    curves = {n: {"causal": {"live": live[n].scores, "model_only": runs["model_only"][n].scores},
                  "per_clip_minmax": {"live": per_clip_minmax(live)[n]}} for n in labels}
    plot_roc(out / "roc.png", labels, curves, ["live", "model_only"], roc_curve, minmax_key="live")
    frames = {n: read_video(root / "test" / f"{n}.mkv", *predictor.input_shape) for n in labels}
    plot_localisation(out / "localisation.png", labels, frames, _heatmaps(messages, list(labels)),
                      load_ped2_masks(root), _n_warmup(runs))


def _write_scores_csv(path: Path, labels: dict[str, np.ndarray], messages: dict[str, list[Any]],
                      runs: dict[str, dict[str, ClipReplay]]) -> None:
    from vigil.model.features import FEATURE_NAMES

    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip", "frame", "label", "warmup", *FEATURE_NAMES, "score", "model_only_score"])
        for name, lab in labels.items():
            live, alone = runs["live"][name], runs["model_only"][name]
            for t in range(len(lab)):
                f = messages[name][t].features
                writer.writerow([name, t, int(lab[t]), int(live.warmup[t]), *(f"{getattr(f, k):.6g}" for k in FEATURE_NAMES),
                                 f"{live.scores[t]:.4f}", f"{alone.scores[t]:.4f}"])


def score_clip(predictor: Any, calibration: Calibration, frames: np.ndarray,
               progress: bool = True) -> tuple[list[Any], ClipReplay]:
    """One clip through the live path: the worker's score messages for its frames (``(T, H, W, C)`` uint8 at
    the model's input shape) and what the scoring core made of them. ``vigil score`` and ``POST /v1/score``."""
    from vigil.model.replay import clip_messages

    msgs = clip_messages(predictor, {"clip": frames}, progress=progress)["clip"]
    return msgs, replay(observations({"clip": msgs}), calibration)["clip"]


def score_video(video: str | os.PathLike, model_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Score one video through the live path; writes ``scores.csv``, ``scores.json`` (with the alerts) and a plot."""
    from vigil.model.data import read_video
    from vigil.model.plots import plot_clip_scores
    from vigil.model.streaming import StreamingPredictor

    video, out = Path(video), Path(out)
    if not video.is_file():
        raise FileNotFoundError(f"Video not found: {video}")
    out.mkdir(parents=True, exist_ok=True)
    predictor = StreamingPredictor.load(model_dir)
    cal = location_calibration(predictor.card)
    msgs, run = score_clip(predictor, cal, read_video(video, *predictor.input_shape))
    rows = [{"frame": t, "warmup": bool(run.warmup[t]), **msgs[t].features.model_dump(), "score": round(float(run.scores[t]), 4)}
            for t in range(len(msgs))]  # fmt: skip
    with (out / "scores.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    alerts = [{"start_frame": e.start_seq, "alert_frame": e.open_seq, "end_frame": e.end_seq, "peak_score": e.peak_score,
               "box": e.box} for e in run.events]  # fmt: skip
    (out / "scores.json").write_text(json.dumps({
        "video": str(video), "model_id": predictor.model_id, "model_version": predictor.model_version,
        "threshold": cal.threshold, "alerts": alerts, "frames": rows}, indent=1) + "\n")  # fmt: skip
    plot_clip_scores(out / "scores.png", {video.stem: np.zeros(len(msgs), np.int8)}, {video.stem: run.scores}, "live score")
    return out / "scores.csv"
