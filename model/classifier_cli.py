"""``vigil classifier train`` and ``vigil classifier evaluate``: alert kinds learnt from labels (issue #17).

The labelled examples (:class:`vigil.model.classify.Unit`) come from the live scoring path: each Ped2 clip is a
camera, its frames become the worker's score messages (:mod:`vigil.model.replay`, cached in ``.state/replay``)
and go through the scorer's own core (:class:`vigil.model.alerting.CameraScoring`). Three kinds of unit:

* ``segment``: every ``--window`` scored frames (1 s at 10 fps) of every test clip and of the model's held-out
  normal clips; labelled with the clip's kind (``data/ped2-kinds.json``) when at least half its frames are
  labelled anomalous, else ``false_positive`` (normal footage an operator would dismiss if it were alerted);
* ``segment-alerted``: the segments that overlap an alert of the live path (what operators could label);
* ``alert``: the alerts the live path raises; the clip's kind when they overlap a labelled frame, else
  ``false_positive``;
* ``clip``: the labelled anomalous span of each test clip, with the clip's kind (the sources' "labelled clips").

``train`` fits the forest (and replays the labels into the online classifier) and saves them without pickle:
the forest as its training set (``.npz``, refitted on load), the online classifier as JSON.
``evaluate`` reports both leave-one-clip-out, the suppression counts and the learning curve (docs/classifier.md).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer

from vigil.model.classify import (
    FALSE_POSITIVE,
    PERCENTILES,
    TREES,
    UNKNOWN,
    ForestKinds,
    FrameObs,
    KindClassifier,
    Unit,
    alert_features,
    kind_report,
    learning_curve,
    leave_one_group_out,
    majority_baseline,
    percentile_features,
)

log = logging.getLogger(__name__)

KINDS_FILE = Path("data") / "ped2-kinds.json"
"""The kind of each Ped2 test clip, in the checkout (found like the mini set, docs/data.md)."""
DEFAULT_OUT = Path("runs/classifier")
UNIT_TYPES = ("segment", "segment-alerted", "alert", "clip")
_STATS = [f"p{p}" for p in PERCENTILES] + ["mean", "std"]
BATCH_FEATURES = tuple([f"score_{s}" for s in _STATS] + [f"error_{s}" for s in _STATS])
"""Names of :attr:`Unit.batch`: percentiles of the live score over the unit's frames, then of its error-map cells."""
MAX_KINDS_BYTES = 1_000_000


@dataclass(frozen=True)
class ClipKind:
    """The annotation of one clip: its primary kind and every kind in it."""

    primary: str
    kinds: tuple[str, ...]


def find_kinds_file(explicit: Path | None = None) -> Path:
    """``explicit``, else ``data/ped2-kinds.json`` beside the installed package (an editable install's checkout),
    the working directory or a folder above it."""
    if explicit is not None:
        return explicit
    from importlib import resources

    here = Path.cwd().resolve()
    for root in (Path(str(resources.files("vigil"))).parent, here, *here.parents):
        if (root / KINDS_FILE).is_file():
            return root / KINDS_FILE
    raise FileNotFoundError(f"{KINDS_FILE} not found beside the vigil package or above {here}; pass --kinds FILE")


def load_kinds(path: Path) -> dict[str, ClipKind]:
    """The annotation file, checked: ``{"clips": {"Test001": {"primary": "bike", "kinds": ["bike"]}}}``."""
    if path.stat().st_size > MAX_KINDS_BYTES:
        raise ValueError(f"{path} is larger than {MAX_KINDS_BYTES} bytes")
    raw = json.loads(path.read_text())
    vocabulary = set(raw.get("kinds_vocabulary", []))
    out = {}
    for clip, entry in dict(raw["clips"]).items():
        kinds = tuple(str(k) for k in entry["kinds"])
        primary = str(entry["primary"])
        if primary not in kinds or (vocabulary and not set(kinds) <= vocabulary) or {UNKNOWN, FALSE_POSITIVE} & set(kinds):
            raise ValueError(f"{path}: clip {clip} has primary {primary!r} and kinds {kinds}, outside {sorted(vocabulary)}")
        out[str(clip)] = ClipKind(primary, kinds)
    return out


@dataclass
class ClipFrames:
    """One clip through the live path; arrays of length ``T``.

    Attributes:
        name: The clip (camera) name.
        scores: ``(T,)`` live score, 0 in warm-up.
        warmup: ``(T,)`` bool, frames the scorer did not score.
        labels: ``(T,)`` bool frame labels (all False for a normal clip).
        motion: ``(T,)`` the worker's ``motion_max`` feature.
        capture_ns: ``(T,)`` capture times.
        boxes: Per frame, the box of the highest-scoring patch (None in warm-up).
        errors: Per frame, the dequantised error map ``(h, w)`` (None when absent).
        events: The alerts (:class:`vigil.model.live.Event`).
    """

    name: str
    scores: np.ndarray
    warmup: np.ndarray
    labels: np.ndarray
    motion: np.ndarray
    capture_ns: np.ndarray
    boxes: list[Any]
    errors: list[Any]
    events: list[Any]


def clip_frames(name: str, obs: list[Any], motion: np.ndarray, labels: np.ndarray | None,
                calibration: Any) -> ClipFrames:
    """Step one clip's observations (:class:`vigil.model.alerting.Observation`) through the scoring core (a fresh
    camera), keeping what units need; ``motion`` is the worker's per-frame ``motion_max``."""
    from vigil.model.alerting import CameraScoring
    from vigil.model.live import replay
    from vigil.shared.scorer_params import EventParams, ScoringParams

    cam = CameraScoring(ScoringParams(), EventParams(), calibration)
    verdicts = [cam.step(o) for o in obs]
    lab = np.zeros(len(obs), bool) if labels is None else np.asarray(labels[: len(obs)], bool)
    lab = np.pad(lab, (0, len(obs) - len(lab)))
    return ClipFrames(
        name=name, scores=np.array([v.score if v.score is not None else 0.0 for v in verdicts]),
        warmup=np.array([v.score is None for v in verdicts]), labels=lab,
        motion=np.asarray(motion, dtype=np.float64)[: len(obs)],
        capture_ns=np.array([o.capture_ns for o in obs], dtype=np.int64), boxes=[v.box for v in verdicts],
        errors=[o.maps.get("error") for o in obs], events=replay({name: obs}, calibration)[name].events,
    )  # fmt: skip


@dataclass(frozen=True)
class _Span:
    """The fields of an alert that :func:`alert_features` reads, for a span of frames."""

    peak_score: float
    box: tuple[float, float, float, float] | None
    start_ns: int
    end_ns: int


def _alerted(cf: ClipFrames, idx: np.ndarray) -> bool:
    return any(e.start_seq <= int(idx[-1]) and int(idx[0]) <= e.end_seq for e in cf.events)


def make_unit(cf: ClipFrames, idx: np.ndarray, unit_id: str, label: tuple[str, tuple[str, ...]], order: int) -> Unit:
    """The unit of frames ``idx`` of a clip: alert features for the online classifier, percentiles for the forest;
    ``alerted`` when one of the frames lies in an alert of the live path."""
    idx = np.asarray(idx, dtype=int)
    peak_i = int(idx[np.argmax(cf.scores[idx])])
    span = _Span(float(cf.scores[peak_i]), cf.boxes[peak_i], int(cf.capture_ns[idx[0]]), int(cf.capture_ns[idx[-1]]))
    frames = [FrameObs(float(cf.scores[i]), float(cf.motion[i]), cf.errors[i]) for i in idx]
    maps = [np.asarray(cf.errors[i], np.float64).ravel() for i in idx if cf.errors[i] is not None]
    cells = np.concatenate(maps) if maps else np.zeros(0)
    batch = np.concatenate([percentile_features(cf.scores[idx]), percentile_features(cells)])
    kind, kinds = label
    return Unit(unit_id, cf.name, order, kind, kinds, alert_features(span, frames),
                tuple(float(v) if math.isfinite(v) else 0.0 for v in batch), _alerted(cf, idx))


def _label(anomalous: bool, clip: ClipKind | None) -> tuple[str, tuple[str, ...]]:
    if anomalous and clip is not None:
        return clip.primary, clip.kinds
    return FALSE_POSITIVE, (FALSE_POSITIVE,)


def segment_units(cf: ClipFrames, clip: ClipKind | None, window: int, base: int) -> list[Unit]:
    """Consecutive ``window``-frame segments of the scored frames (a last partial one kept from half a window)."""
    scored = np.flatnonzero(~cf.warmup)
    out = []
    for j, start in enumerate(range(0, len(scored), window)):
        idx = scored[start : start + window]
        if len(idx) * 2 < window:
            break
        label = _label(bool(cf.labels[idx].mean() >= 0.5), clip)
        out.append(make_unit(cf, idx, f"{cf.name}/seg{j:03d}", label, base + int(idx[0])))
    return out


def alert_units(cf: ClipFrames, clip: ClipKind | None, base: int) -> list[Unit]:
    """The live path's alerts: the clip's kind when an alert overlaps a labelled frame, else false positive."""
    out = []
    for e in cf.events:
        idx = np.arange(e.start_seq, min(e.end_seq, len(cf.scores) - 1) + 1)
        label = _label(bool(cf.labels[idx].any()), clip)
        out.append(make_unit(cf, idx, f"{cf.name}/alert{e.start_seq:04d}", label, base + int(e.open_seq)))
    return out


def clip_units(cf: ClipFrames, clip: ClipKind | None, base: int) -> list[Unit]:
    """The labelled anomalous (scored) frames of a test clip as one unit (none for a normal clip)."""
    idx = np.flatnonzero(cf.labels & ~cf.warmup)
    if clip is None or not len(idx):
        return []
    return [make_unit(cf, idx, f"{cf.name}/clip", _label(True, clip), base + int(idx[0]))]


def build_units(frames: list[ClipFrames], kinds: dict[str, ClipKind], window: int) -> dict[str, list[Unit]]:
    """Units of every type from clips in operator order (their list order); ``order`` = clip rank, then frame."""
    out: dict[str, list[Unit]] = {t: [] for t in UNIT_TYPES}
    for rank, cf in enumerate(frames):
        clip, base = kinds.get(cf.name), rank * 1_000_000
        if cf.labels.any() and clip is None:
            raise ValueError(f"clip {cf.name} has anomalous frames but no kind in the kinds file")
        segments = segment_units(cf, clip, window, base)
        out["segment"] += segments
        out["segment-alerted"] += [u for u in segments if u.alerted]
        out["alert"] += alert_units(cf, clip, base)
        out["clip"] += clip_units(cf, clip, base)
    return out


def ped2_frames(data: Path | None, model: Path | None, kinds: dict[str, ClipKind],
                progress: bool = True) -> tuple[list[ClipFrames], dict[str, Any]]:
    """The Ped2 test clips and the model's held-out normal clips through the live path, and what is missing."""
    from tqdm import tqdm

    from vigil.model.alerting import Observation
    from vigil.model.data import load_ped2_labels, ped2_dir
    from vigil.model.evaluate import CACHE_DIR, location_calibration
    from vigil.model.replay import ped2_messages
    from vigil.model.streaming import DEFAULT_MODEL_DIR, StreamingPredictor

    root = ped2_dir(data)
    predictor = StreamingPredictor.load(model or DEFAULT_MODEL_DIR)
    cal = location_calibration(predictor.card)
    labels = load_ped2_labels(root)
    held = [c for c in predictor.card.get("data", {}).get("val_clips", []) if (root / "train" / f"{c}.mkv").is_file()]
    names = sorted(labels) + held
    messages = ped2_messages(root, predictor, CACHE_DIR, names)
    frames = [clip_frames(n, [Observation.from_message(m) for m in messages[n]],
                          np.array([m.features.motion_max for m in messages[n]]), labels.get(n), cal)
              for n in tqdm(names, desc="live path", disable=not progress)]  # fmt: skip
    info = {"data": str(root), "model": f"{predictor.model_id}:{predictor.model_version}", "test_clips": sorted(labels),
            "normal_clips": held, **missing_note(root, sorted(labels), kinds)}
    return frames, info


def missing_note(root: Path, test_clips: list[str], kinds: dict[str, ClipKind]) -> dict[str, Any]:
    """Which annotated clips the data set lacks (the mini set holds two) and how to get them."""
    from vigil.model.data import PED2_HOWTO

    missing = sorted(set(kinds) - set(test_clips))
    if not missing:
        return {"missing_clips": []}
    return {"missing_clips": missing,
            "missing": f"{root} holds {len(test_clips)} of the {len(kinds)} annotated Ped2 test clips; missing: "
                       f"{', '.join(missing)}. Per-kind figures need the full set. {PED2_HOWTO}"}


def save_units(units: list[Unit], path: Path, unit_type: str = "segment") -> None:
    """Write units as JSON (what ``--units`` reads back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "unit_type": unit_type, "batch_features": list(BATCH_FEATURES),
                                "units": [u.to_dict() for u in units]}) + "\n")


def load_units(path: Path) -> tuple[str, list[Unit]]:
    """Read units written by :func:`save_units` (every field checked): ``(unit type, units)``."""
    raw = json.loads(path.read_text())
    if raw.get("version") != 1:
        raise ValueError(f"{path}: unsupported units file version {raw.get('version')!r}")
    units = [Unit.from_dict(d) for d in raw["units"]]
    if len({u.unit_id for u in units}) != len(units):
        raise ValueError(f"{path}: duplicate unit ids")
    widths = {len(u.batch) for u in units}
    if len(widths) > 1:
        raise ValueError(f"{path}: units have batch feature vectors of different lengths {sorted(widths)}")
    return str(raw.get("unit_type", path.stem)), units


def save_forest(units: list[Unit], path: Path, seed: int = 0, trees: int = TREES) -> None:
    """Store the forest as its training set (``.npz``, no pickle); :func:`load_forest` refits it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"version": 1, "seed": seed, "trees": trees, "batch_features": list(BATCH_FEATURES), "n": len(units)}
    np.savez_compressed(path, x=np.array([u.batch for u in units], np.float64), y=np.array([u.kind for u in units]),
                        peaks=np.array([u.peak for u in units], np.float64), meta=np.array(json.dumps(meta)))


def load_forest(path: Path) -> ForestKinds:
    """Refit the forest stored by :func:`save_forest` (same data and seed, same trees)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        x, y, peaks = z["x"], [str(k) for k in z["y"]], [float(p) for p in z["peaks"]]
    if meta.get("version") != 1 or x.ndim != 2 or len(x) != len(y) or not np.isfinite(x).all():
        raise ValueError(f"{path}: not a forest file of this version (or a bad one)")
    return ForestKinds(seed=int(meta["seed"]), trees=int(meta.get("trees", TREES))).fit(x, y, peaks)


def caveats(units: list[Unit]) -> list[str]:
    """What the data cannot show: too few kinds, kinds in one clip only, no false positives."""
    real = Counter(u.kind for u in units if u.kind != FALSE_POSITIVE)
    out = []
    if len(real) < 2:
        out.append(f"only {len(real)} kind among the anomalies ({', '.join(real) or 'none'}): per-kind precision "
                   "and recall say nothing about telling kinds apart")
    for kind in sorted(real):
        groups = sorted({u.group for u in units if u.kind == kind})
        if len(groups) == 1:
            out.append(f"{kind} is in one clip only ({groups[0]}): leaving that clip out leaves no {kind} to learn, "
                       f"so its recall is 0 by construction")
    if not any(u.kind == FALSE_POSITIVE for u in units):
        out.append("no false-positive units: suppression is not measured")
    return out


def evaluate_units(units: list[Unit], progress: bool = True, trees: int = TREES) -> dict[str, Any]:
    """Both classifiers leave-one-clip-out on the same units, and the learning curve."""
    counts = Counter(u.kind for u in units)
    result: dict[str, Any] = {"units": len(units), "clips": len({u.group for u in units}), "kinds": dict(counts),
                              "caveats": caveats(units), "majority_baseline_accuracy": majority_baseline(units)}
    for method in ("online", "batch"):
        result[method] = kind_report(units, leave_one_group_out(units, method, progress, trees))
    result["learning_curve"] = learning_curve(units, trees=trees, progress=progress)
    return result


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def report_markdown(name: str, r: dict[str, Any]) -> str:
    """One unit type's result as Markdown: per-kind table, summary, learning curve."""
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(r["kinds"].items()))
    on, ba = r["online"], r["batch"]
    lines = [f"**{name} units**: {r['units']} in {r['clips']} clips ({kinds}); leave-one-clip-out.", "",
             "| kind | units | online precision | online recall | batch precision | batch recall |", "|---|---|---|---|---|---|"]
    for k in sorted(set(on["per_kind"]) | set(ba["per_kind"])):
        o, b = on["per_kind"].get(k, {}), ba["per_kind"].get(k, {})
        support = o.get("support", b.get("support", 0))
        lines.append(f"| {k} | {support} | {_pct(o.get('precision'))} | {_pct(o.get('recall'))} | "
                     f"{_pct(b.get('precision'))} | {_pct(b.get('recall'))} |")
    for label, key in (("accuracy (unknown = wrong)", "accuracy"), ("accuracy of the named kinds", "accuracy_known"),
                       ("accuracy, any kind in the footage counts", "accuracy_any_kind_present"),
                       ("unknown rate", "unknown_rate")):
        lines.append(f"| **{label}** | | {_pct(on[key])} | | {_pct(ba[key])} | |")
    lines.append(f"| **always the most frequent kind (baseline)** | | {_pct(r['majority_baseline_accuracy'])} | | | |")
    for scope, so, sb in (("", on["suppression"], ba["suppression"]),
                          (" (alerted units)", on["suppression"]["alerted"], ba["suppression"]["alerted"])):
        for label, key, total in (("false positives suppressed", "false_positives_suppressed", "false_positives"),
                                  ("true anomalies suppressed", "true_anomalies_suppressed", "true_anomalies")):
            lines.append(f"| **{label}{scope}** | | {so[key]} of {so[total]} | | {sb[key]} of {sb[total]} | |")
    lines += ["", "Learning curve (labels in time order; each block predicted before its labels are learnt):", "",
              "| labels | next units | online accuracy | online unknown | batch accuracy | batch unknown |",
              "|---|---|---|---|---|---|"]
    for row in r["learning_curve"]:
        lines.append(f"| {row['labels']} | {row['units']} | {_pct(row['online']['accuracy'])} | "
                     f"{_pct(row['online']['unknown_rate'])} | {_pct(row['batch']['accuracy'])} | "
                     f"{_pct(row['batch']['unknown_rate'])} |")
    lines += [""] + [f"- caveat: {c}" for c in r["caveats"]]
    return "\n".join(lines) + "\n"


def _unit_sets(data: Path | None, model: Path | None, kinds_file: Path | None, units_files: list[Path],
               window: int, out: Path) -> tuple[dict[str, list[Unit]], dict[str, Any]]:
    """Units from ``--units`` files, else from the live path over Ped2 (written to ``out`` for reuse)."""
    if units_files:
        loaded = [load_units(p) for p in units_files]
        return {name: units for name, units in loaded}, {"units_files": [str(p) for p in units_files]}
    kinds = load_kinds(find_kinds_file(kinds_file))
    frames, info = ped2_frames(data, model, kinds)
    sets = build_units(frames, kinds, window)
    for name, units in sets.items():
        save_units(units, out / f"units-{name}.json", name)
    info["window_frames"] = window
    return sets, info


def _errors(err: Exception) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(2)


_DATA = typer.Option(None, help="UCSD Ped2 folder (default: $VIGIL_PED2_DIR, ../shared/data/ucsd_ped2, else data/ped2-mini).")
_MODEL = typer.Option(None, help="Model directory (default: the committed Ped2 model).")
_KINDS = typer.Option(None, help="Kind of each clip (default: data/ped2-kinds.json of the checkout).")
_WINDOW = typer.Option(10, min=2, max=1000, help="Frames per segment unit (10 = 1 s at 10 fps).")
_TREES = typer.Option(TREES, min=1, max=2000, help="Trees of the random forest.")


def train_cmd(
    data: Path = _DATA, model: Path = _MODEL, kinds: Path = _KINDS, window: int = _WINDOW,
    unit: str = typer.Option("segment", help="What one label is: segment, alert or clip."),
    units: Path = typer.Option(None, help="Train on this units file (from `evaluate` or `train`) instead of Ped2."),
    out: Path = typer.Option(DEFAULT_OUT, help="Folder for forest.npz, online.json and the units."),
    seed: int = typer.Option(0, min=0, help="Random seed of the forest."),
    trees: int = _TREES,
) -> None:
    """Fit the batch classifier (random forest on percentile features) and the online one on labelled units."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if unit not in UNIT_TYPES:
        raise typer.BadParameter(f"--unit must be one of {UNIT_TYPES}. Received: {unit!r}")
    try:
        sets, info = _unit_sets(data, model, kinds, [units] if units else [], window, out)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise _errors(err) from err
    chosen = sets.get(unit) or next(iter(sets.values()))
    save_forest(chosen, out / "forest.npz", seed, trees)
    online = KindClassifier()
    for u in sorted(chosen, key=lambda u: u.order):
        online.learn(u.online, u.kind, alert_id=u.unit_id)
    (out / "online.json").write_text(online.to_json() + "\n")
    counts = ", ".join(f"{k} {n}" for k, n in sorted(Counter(u.kind for u in chosen).items()))
    if info.get("missing"):
        typer.echo(f"note: {info['missing']}", err=True)
    typer.echo(f"trained on {len(chosen)} units ({counts}); wrote {out / 'forest.npz'} and {out / 'online.json'}")


def evaluate_cmd(
    data: Path = _DATA, model: Path = _MODEL, kinds: Path = _KINDS, window: int = _WINDOW,
    units: list[Path] = typer.Option(None, help="Evaluate these units files instead of running Ped2 (repeatable)."),
    out: Path = typer.Option(DEFAULT_OUT, help="Folder for eval.json, eval.md and the units."),
    trees: int = _TREES,
) -> None:
    """Per-kind precision / recall of the online and the batch classifier, leave-one-clip-out, the suppression
    counts and the learning curve."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sets, info = _unit_sets(data, model, kinds, list(units or []), window, out)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise _errors(err) from err
    result: dict[str, Any] = {"source": info, "sets": {}}
    text = [f"note: {info['missing']}\n"] if info.get("missing") else []
    for name, unit_list in sets.items():
        if not unit_list:
            text.append(f"**{name} units**: none\n")
            continue
        result["sets"][name] = evaluate_units(unit_list, trees=trees)
        text.append(report_markdown(name, result["sets"][name]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "eval.md").write_text("\n".join(text))
    typer.echo("\n".join(text))
    typer.echo(f"wrote {out / 'eval.json'} and {out / 'eval.md'}")
    if info.get("missing"):
        typer.echo(f"note: {info['missing']}", err=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add the ``vigil classifier`` group."""
    group = typer.Typer(help="Alert kinds learnt from operator labels: train and evaluate (docs/classifier.md).",
                        no_args_is_help=True)
    group.command("train")(train_cmd)
    group.command("evaluate")(evaluate_cmd)
    app.add_typer(group, name="classifier")
