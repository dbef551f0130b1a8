"""Scoring study for #13: variants of the scoring core measured on the synthetic set only.

Calibration on Train001-012 (the model's warm-up), evaluation on the synthetic set (one painted object in
each of Train013-016 x 5 seeds, :mod:`vigil.tools.scoring_study_cache`) plus the unpainted Train013-016 (normal: any
alert there is false). No Ped2 test clip is read here.

Usage: ``python -m vigil.tools.scoring_study [VARIANT ...]`` (all by default); results appended to
``runs/scoring_study.jsonl``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import vigil.model.live as live
from vigil.model.alerting import CameraScoring, Observation
from vigil.model.baseline import Calibration, LocationStats
from vigil.model.events import EventParams
from vigil.model.streaming import CARD_FILE, DEFAULT_MODEL_DIR
from vigil.shared.scorer_params import ScoringParams
from vigil.tools.scoring_study_cache import CACHE, CALIB_CLIPS, SYN_CLIPS, labels_file

MODELS = {"prednet": DEFAULT_MODEL_DIR, "ae": DEFAULT_MODEL_DIR.parent / "ped2-convlstm-ae"}
"""The committed model directory of each source; its card names the version read and the warm-up used."""


def load(model: str, synthetic: str = "whole") -> tuple[dict[str, list[Observation]], dict[str, np.ndarray]]:
    """Observations of the calibration clips, the synthetic clips and the normal Train013-016 for the committed
    version of ``model`` only (its card's warm-up); the labels of the synthetic set ``synthetic`` (``whole``,
    step 1, ``enter``, step 13, or ``walker``, step 14: :data:`vigil.tools.scoring_study_cache.SETS`)."""
    from vigil.model.replay import MessageCache, model_warmup

    card = json.loads((MODELS[model] / CARD_FILE).read_text())
    mid, warmup = card["model_id"], model_warmup(card)
    obs: dict[str, list[Observation]] = {}
    for path in sorted(CACHE.glob(f"{mid}-{card['model_version']}-*.npz")):
        msgs = MessageCache(path).load() or {}
        for name, ms in msgs.items():
            if name.startswith("Test"):
                continue  # never read here
            obs[name] = [replace(Observation.from_message(m), warmup=t < warmup) for t, m in enumerate(ms)]
    lab_path = labels_file(mid, synthetic, CACHE)
    labels = {}
    if lab_path.is_file():
        with np.load(lab_path) as z:
            labels = {k: z[k].astype(bool) for k in z.files}
    if not labels or not all(n in obs for n in (*CALIB_CLIPS, *SYN_CLIPS, *labels)):
        raise FileNotFoundError(f"No score messages of {mid} {card['model_version']} and its synthetic set {synthetic!r} in "
                                f"{CACHE}; run `python -m vigil.tools.scoring_study_cache {MODELS[model]} --set {synthetic}` "
                                "first (full UCSD Ped2).")
    return obs, labels


def ensemble(a: dict[str, list[Observation]], b: dict[str, list[Observation]]) -> dict[str, list[Observation]]:
    """PredNet's maps plus the AE's error map as ``error2`` (warm-up: either's)."""
    out = {}
    for name, oa in a.items():
        ob = b[name]
        out[name] = [replace(x, warmup=x.warmup or y.warmup, maps={**x.maps, "error2": y.maps["error"]})
                     for x, y in zip(oa, ob, strict=True)]
    return out


class MaxFusion(CameraScoring):
    """Frame score = the larger map z (instead of the sum)."""

    def _raw(self, logs, bases):  # type: ignore[no-untyped-def]
        zs = {k: self._scored(self.stats[k].z(v, self.gain.get(k, 0.0), bases[k])) for k, v in logs.items()}
        peaks = {k: float(z.max()) for k, z in zs.items()}
        top = max(peaks, key=peaks.__getitem__)
        return peaks[top], divmod(int(np.argmax(zs[top])), zs[top].shape[1])


class SoftTop(CameraScoring):
    """Each map's z: mean of its ``TOP`` largest locations (a cue spread over an object's patches)."""

    TOP = 2

    def _raw(self, logs, bases):  # type: ignore[no-untyped-def]
        zs = {k: self._scored(self.stats[k].z(v, self.gain.get(k, 0.0), bases[k])) for k, v in logs.items()}
        peaks = {k: float(np.sort(z.ravel())[-self.TOP:].mean()) for k, z in zs.items()}
        top = max(peaks, key=peaks.__getitem__)
        return sum(peaks.values()), divmod(int(np.argmax(zs[top])), zs[top].shape[1])


@dataclass
class Variant:
    """A scoring variant: parameters, maps, per-map fusion weights and location weights, and a core class."""

    params: ScoringParams = field(default_factory=ScoringParams)
    events: EventParams = field(default_factory=EventParams)
    maps: tuple[str, ...] = ("error", "motion")
    weights: dict[str, float] = field(default_factory=dict)
    location: dict[str, float] = field(default_factory=dict)
    cls: type = CameraScoring
    source: str = "prednet"


def calibrate_v(clips: list[list[Observation]], v: Variant) -> Calibration:
    """:func:`vigil.model.alerting.calibrate` with per-map location weights and fusion weights."""
    p = v.params
    frames = [o for c in clips for o in c if not o.warmup]
    grid = frames[0].maps["error"].shape
    stats = {}
    for k in v.maps:
        s = LocationStats.fit([o.maps[k] for o in frames], p.log_eps or None, v.location.get(k, p.location_weight), p.min_std)
        s.scale /= v.weights.get(k, 1.0)
        stats[k] = s
    draft = Calibration(grid, 8, stats, math.inf, math.inf, len(frames))
    top = -math.inf
    for clip in clips:
        cam = v.cls(p, EventParams(), draft, None, adapt=False)
        for o in clip:
            r = cam.step(o)
            if r.score is not None:
                top = max(top, r.score)
    return Calibration(grid, 8, stats, top + p.threshold_margin, top, len(frames))


def only(obs: dict[str, list[Observation]], maps: tuple[str, ...]) -> dict[str, list[Observation]]:
    return {n: [replace(o, maps={k: m for k, m in o.maps.items() if k in maps}) for o in c] for n, c in obs.items()}


def run(v: Variant, obs: dict[str, list[Observation]], labels: dict[str, np.ndarray]) -> dict[str, Any]:
    """Synthetic AUC (painted clips + normal Train013-016), events, false alerts on the normal clips."""
    obs = only(obs, v.maps)
    cal = calibrate_v([obs[n] for n in CALIB_CLIPS], v)
    test = {n: obs[n] for n in labels} | {n: obs[n] for n in SYN_CLIPS}
    lab = labels | {n: np.zeros(len(obs[n]), bool) for n in SYN_CLIPS}
    saved = live.CameraScoring
    live.CameraScoring = v.cls  # type: ignore[misc]
    try:
        reps = live.replay(test, cal, v.params, v.events)
    finally:
        live.CameraScoring = saved  # type: ignore[misc]
    fm = live.frame_metrics(lab, reps)
    em = live.event_metrics(lab, reps, 10.0)
    normal_alerts = sum(len(reps[n].events) for n in SYN_CLIPS)
    painted = {n: lab[n] for n in labels}
    return {"auc": round(fm["auc_all_frames"], 4), "auc_painted_only": round(live.frame_metrics(painted, reps)["auc_all_frames"], 4),
            "recall": em["recall"], "false_alerts": em["false_alerts"], "normal_clip_alerts": normal_alerts,
            "precision": round(em["precision"], 3), "median_delay_s": em["median_delay_s"], "threshold": round(cal.threshold, 3)}


def variants() -> dict[str, Variant]:
    """Every variant studied (the first is the committed configuration)."""
    d: dict[str, Variant] = {"current": Variant(), "model_alone": Variant(maps=("error",)), "motion_alone": Variant(maps=("motion",))}
    for s in (3, 8, 10, 15):
        d[f"smooth{s}"] = Variant(params=ScoringParams(smooth=s))
    for sp in (0, 1, 2):
        d[f"spread{sp}"] = Variant(params=ScoringParams(spread=sp))
    for lw in (0.0, 0.5, 0.75):
        d[f"motion_loc{lw}"] = Variant(location={"motion": lw})
        d[f"both_loc{lw}"] = Variant(params=ScoringParams(location_weight=lw))
    for w in (0.5, 0.75, 1.5, 2.0):
        d[f"motion_w{w}"] = Variant(weights={"motion": w})
    d["partial_window"] = Variant(params=ScoringParams(full_window=False))  # before step 11 (docs/model.md)
    d["max_fusion"] = Variant(cls=MaxFusion)
    d["top2"] = Variant(cls=SoftTop)
    d["ens"] = Variant(maps=("error", "motion", "error2"), source="ens")
    d["ens_half"] = Variant(maps=("error", "motion", "error2"), weights={"error": 0.5, "error2": 0.5}, source="ens")
    d["ae_current"] = Variant(source="ae")
    d["ens_no_motion"] = Variant(maps=("error", "error2"), source="ens")
    return d


def main(names: list[str]) -> None:
    """Run the named variants (all by default) and print / append one JSON line each."""
    all_v = variants()
    names = names or list(all_v)
    cache: dict[str, Any] = {}

    def data(source: str) -> tuple[dict[str, list[Observation]], dict[str, np.ndarray]]:
        if source not in cache:
            if source == "ens":
                (a, lab), (b, _) = data("prednet"), data("ae")
                cache[source] = (ensemble(a, b), lab)
            else:
                cache[source] = load(source)
        return cache[source]

    Path("runs").mkdir(exist_ok=True)
    with Path("runs/scoring_study.jsonl").open("a") as fh:
        for name in names:
            v = all_v[name]
            obs, labels = data(v.source)
            row = {"variant": name, **run(v, obs, labels)}
            print(json.dumps(row), flush=True)
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
