"""Alert categorisation from operator labels (issue #17): features, an online per-site classifier, a batch forest.

Pure logic, no I/O. The scorer calls :func:`alert_features` and :meth:`KindClassifier.predict` at alert time; the
API calls :meth:`KindClassifier.learn` for every stored label. State is saved as JSON (the bounded list of labelled
feature vectors) and restored by replaying it into a fresh river model: no pickle anywhere.

Rules (docs/classifier.md):
- ``unknown`` while fewer than ``min_labels`` labels in total or fewer than ``min_per_kind`` of the predicted kind.
- suppression of a false-positive kind only when its probability >= ``suppress_confidence`` AND the alert's peak
  score is <= ``score_margin`` x the highest peak score ever labelled *false positive* (an alert scoring beyond the
  worst false positive operators have seen is never suppressed) AND below the lowest peak of any alert labelled as
  a real kind (an alert as strong as the weakest confirmed incident is always notified; :func:`suppress_rule`).

The batch side (:class:`ForestKinds`) is a scikit-learn random forest on :func:`percentile_features`, with the same
``unknown`` and suppression rules; it is stored as its training features (``.npz``) and refitted on load, never
pickled. :func:`leave_one_group_out`, :func:`kind_report` and :func:`learning_curve` measure both on the same
:class:`Unit` records (``vigil classifier evaluate``, model/classifier_cli.py).
"""

from __future__ import annotations

import json
import math
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
from river import naive_bayes
from sklearn.ensemble import RandomForestClassifier

UNKNOWN = "unknown"
FALSE_POSITIVE = "false_positive"
PERCENTILES = (50, 75, 90, 95, 99, 100)
STATE_VERSION = 1


@dataclass(frozen=True)
class FrameObs:
    """What the scorer holds for one frame of an alert: its score, motion energy and (optionally) its error map."""

    score: float
    motion: float = 0.0
    error_map: np.ndarray | None = None


def _box_stats(error_map: np.ndarray | None, box: tuple[float, float, float, float] | None) -> tuple[float, float]:
    """Mean and max of the error map inside a fractional box (whole map without a box); zeros without a map."""
    if error_map is None or error_map.size == 0:
        return 0.0, 0.0
    h, w = error_map.shape[:2]
    x0, y0, x1, y1 = box if box is not None else (0.0, 0.0, 1.0, 1.0)
    r0, r1 = int(y0 * h), max(int(math.ceil(y1 * h)), int(y0 * h) + 1)
    c0, c1 = int(x0 * w), max(int(math.ceil(x1 * w)), int(x0 * w) + 1)
    patch = np.asarray(error_map[r0:r1, c0:c1], dtype=np.float64)
    if patch.size == 0:
        return 0.0, 0.0
    return float(patch.mean()), float(patch.max())


def alert_features(alert: object, frames: list[FrameObs], duration_s: float | None = None,
                   peak_map: np.ndarray | None = None) -> dict[str, float]:
    """Feature dict of an alert (an ``Alert`` or anything with its fields) from the observations of its frames.

    Error features (score percentiles), error-map statistics inside the box at the peak (``peak_map`` when given,
    as the scorer keeps it with the event, else the map of the highest-scoring frame in ``frames``), box size and
    position, motion speed, duration and time of day (cyclic). Every value is finite."""
    scores = np.asarray([f.score for f in frames] or [getattr(alert, "peak_score", 0.0)], dtype=np.float64)
    motion = np.asarray([f.motion for f in frames] or [0.0], dtype=np.float64)
    peak = max(frames, key=lambda f: f.score) if frames else None
    box = getattr(alert, "box", None)
    in_mean, in_max = _box_stats(peak_map if peak_map is not None else peak.error_map if peak else None, box)
    x0, y0, x1, y1 = box if box is not None else (0.0, 0.0, 1.0, 1.0)
    start_ns = int(getattr(alert, "start_ns", 0))
    end_ns = getattr(alert, "end_ns", None) or start_ns
    if duration_s is None:
        duration_s = max(0.0, (end_ns - start_ns) / 1e9)
    hour = (start_ns / 3.6e12) % 24.0
    feats = {f"score_p{p}": float(np.percentile(scores, p)) for p in PERCENTILES}
    feats.update(
        peak_score=float(getattr(alert, "peak_score", scores.max())),
        box_err_mean=in_mean, box_err_max=in_max,
        box_w=x1 - x0, box_h=y1 - y0, box_cx=(x0 + x1) / 2, box_cy=(y0 + y1) / 2,
        motion_mean=float(motion.mean()), motion_max=float(motion.max()),
        duration_s=float(duration_s), n_frames=float(len(frames)),
        hour_sin=math.sin(2 * math.pi * hour / 24), hour_cos=math.cos(2 * math.pi * hour / 24),
    )  # fmt: skip
    return {k: (v if math.isfinite(v) else 0.0) for k, v in feats.items()}


@dataclass(frozen=True)
class SuppressRule:
    """When a predicted kind may be suppressed (docs/classifier.md says how the numbers were chosen)."""

    false_positive_kinds: frozenset[str] = frozenset({FALSE_POSITIVE})
    confidence: float = 0.9
    margin: float = 1.5


def suppress_rule(kind: str, conf: float, peak: float, max_fp_peak: float | None,
                  rule: SuppressRule = SuppressRule(), min_true_peak: float | None = None) -> tuple[bool, str]:
    """Whether an alert predicted as ``kind`` with confidence ``conf`` is suppressed, and why.

    All must hold: a false-positive kind; ``conf >= rule.confidence``; the alert's ``peak`` at most ``rule.margin``
    times the highest peak ever labelled false positive (at most that peak when it is <= 0); and the peak *below*
    ``min_true_peak``, the lowest peak of any alert labelled as a real kind (when there is one). An alert that
    scores as high as the weakest confirmed incident is therefore always notified: no labelled incident would
    have been suppressed, whatever the classifier says.

    Example:
        >>> suppress_rule("false_positive", 0.95, 3.0, 2.5)
        (True, 'false_positive at confidence 0.95')
        >>> suppress_rule("false_positive", 0.95, 4.0, 2.5)[0], suppress_rule("bike", 0.99, 1.0, 2.5)[0]
        (False, False)
        >>> suppress_rule("false_positive", 0.95, 3.0, 2.5, min_true_peak=3.0)
        (False, 'score 3.00 reaches the weakest confirmed incident (3.00)')
    """
    if kind not in rule.false_positive_kinds:
        return False, "not a false-positive kind"
    if conf < rule.confidence:
        return False, f"confidence {conf:.2f} < {rule.confidence}"
    if max_fp_peak is None:
        return False, "no false positive labelled"
    limit = rule.margin * max_fp_peak if max_fp_peak > 0 else max_fp_peak
    if peak > limit:
        return False, f"score {peak:.2f} beyond {rule.margin} x labelled false-positive max {max_fp_peak:.2f}"
    if min_true_peak is not None and peak >= min_true_peak:
        return False, f"score {peak:.2f} reaches the weakest confirmed incident ({min_true_peak:.2f})"
    return True, f"{kind} at confidence {conf:.2f}"


@dataclass(frozen=True)
class KindPrediction:
    """What comes back at alert time."""

    kind: str
    confidence: float
    n_labels: int
    suppress: bool
    reason: str


VARIANCE_FLOOR = 0.05
"""Each label is learnt as two points ``v +- VARIANCE_FLOOR * (1 + |v|)``: every per-kind variance is then above
zero, so a feature that happens to be constant within a kind (a box size on the map's grid, a duration in whole
frames) cannot rule that kind out for an alert that differs in it by a hair (river's Gaussian gives such a value
a density of 0). The same role as scikit-learn's ``var_smoothing``."""


def _learn_floored(model: naive_bayes.GaussianNB, feats: dict[str, float], kind: str) -> None:
    for sign in (1.0, -1.0):
        model.learn_one({k: v + sign * VARIANCE_FLOOR * (1.0 + abs(v)) for k, v in feats.items()}, kind)


@dataclass
class KindClassifier:
    """Online kind classifier of one site (river Gaussian naive Bayes), bounded, JSON-serialisable by replay."""

    min_labels: int = 10
    min_per_kind: int = 3
    suppress_confidence: float = 0.9
    score_margin: float = 1.5
    max_labels: int = 5000
    false_positive_kinds: frozenset[str] = frozenset({FALSE_POSITIVE})
    _labels: deque = field(default_factory=deque, repr=False)
    _model: naive_bayes.GaussianNB = field(default_factory=naive_bayes.GaussianNB, repr=False)

    def learn(self, features: dict[str, float], kind: str, alert_id: str = "") -> None:
        """Learn one operator label. A re-label of the same alert replaces the old one (model rebuilt)."""
        if not kind or kind == UNKNOWN:
            return
        feats = {k: float(v) for k, v in features.items() if math.isfinite(float(v))}
        if alert_id and any(a == alert_id for a, _, _ in self._labels):
            self._labels = deque((a, f, k) for a, f, k in self._labels if a != alert_id)
            self._labels.append((alert_id, feats, kind))
            self._rebuild()
            return
        self._labels.append((alert_id, feats, kind))
        if len(self._labels) > self.max_labels:
            self._labels.popleft()
            self._rebuild()
        else:
            _learn_floored(self._model, feats, kind)

    def _rebuild(self) -> None:
        self._model = naive_bayes.GaussianNB()
        for _, feats, kind in self._labels:
            _learn_floored(self._model, feats, kind)

    @property
    def n_labels(self) -> int:
        """Number of labels behind the model."""
        return len(self._labels)

    def predict(self, features: dict[str, float]) -> KindPrediction:
        """Predicted kind, confidence, label count and the suppression decision (with its reason)."""
        n = self.n_labels
        if n < self.min_labels:
            return KindPrediction(UNKNOWN, 0.0, n, False, f"only {n} labels (< {self.min_labels})")
        proba = self._model.predict_proba_one(features)
        if not proba:
            return KindPrediction(UNKNOWN, 0.0, n, False, "no prediction")
        kind, conf = max(proba.items(), key=lambda kv: kv[1])
        per_kind = Counter(k for _, _, k in self._labels)
        if per_kind[kind] < self.min_per_kind:
            return KindPrediction(UNKNOWN, float(conf), n, False, f"only {per_kind[kind]} labels of {kind}")
        return KindPrediction(kind, float(conf), n, *self._suppress(kind, float(conf), features))

    def _suppress(self, kind: str, conf: float, features: dict[str, float]) -> tuple[bool, str]:
        fp = self.false_positive_kinds
        fp_peaks = [f.get("peak_score", 0.0) for _, f, k in self._labels if k in fp]
        true_peaks = [f.get("peak_score", 0.0) for _, f, k in self._labels if k not in fp]
        return suppress_rule(kind, conf, features.get("peak_score", 0.0), max(fp_peaks, default=None),
                             SuppressRule(fp, self.suppress_confidence, self.score_margin), min(true_peaks, default=None))

    def to_json(self) -> str:
        """State as JSON: the settings and the bounded labels (replayed on load)."""
        return json.dumps({
            "version": STATE_VERSION, "min_labels": self.min_labels, "min_per_kind": self.min_per_kind,
            "suppress_confidence": self.suppress_confidence, "score_margin": self.score_margin,
            "max_labels": self.max_labels, "false_positive_kinds": sorted(self.false_positive_kinds),
            "labels": [[a, f, k] for a, f, k in self._labels],
        })  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> KindClassifier:
        """Restore by replaying the stored labels in order into a fresh model."""
        d = json.loads(text)
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported classifier state version {d.get('version')!r}")
        clf = cls(
            min_labels=int(d["min_labels"]), min_per_kind=int(d["min_per_kind"]),
            suppress_confidence=float(d["suppress_confidence"]), score_margin=float(d["score_margin"]),
            max_labels=int(d["max_labels"]), false_positive_kinds=frozenset(d["false_positive_kinds"]),
        )  # fmt: skip
        for a, f, k in d["labels"][-clf.max_labels :]:
            clf._labels.append((str(a), {str(n): float(v) for n, v in f.items()}, str(k)))
        clf._rebuild()
        return clf


def percentile_features(errors: np.ndarray) -> np.ndarray:
    """Batch features of the Microsoft sample: percentiles of the per-frame error over an alert's frames."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    if e.size == 0:
        return np.zeros(len(PERCENTILES) + 2)
    return np.concatenate([np.percentile(e, PERCENTILES), [e.mean(), e.std()]])


TREES = 100
"""Trees of the forest (enough for the few hundred labels a site has; each fit stays well under a second)."""


def train_forest(x: np.ndarray, y: list[str], seed: int = 0, trees: int = TREES) -> RandomForestClassifier:
    """Batch kind classifier: a random forest on percentile features."""
    forest = RandomForestClassifier(n_estimators=trees, min_samples_leaf=1, random_state=seed, n_jobs=1)
    return forest.fit(np.asarray(x), np.asarray(y))


@dataclass(frozen=True)
class Unit:
    """One labelled example both classifiers see: an alert, a segment of frames or a clip.

    Attributes:
        unit_id: Unique name, e.g. ``Test004/seg030`` or an alert id.
        group: The clip or camera it comes from (evaluation leaves one group out at a time).
        order: When an operator would have labelled it (time order of the footage).
        kind: The label: a kind, or :data:`FALSE_POSITIVE`.
        kinds: Every kind present in the footage it covers (a clip can hold a bike and a skateboard).
        online: The alert features (:func:`alert_features`) the online classifier uses.
        batch: The percentile features (:func:`percentile_features`) the forest uses.
        alerted: Whether the live path raised an alert over it (only an alert can be suppressed; a segment the
            scorer never alerted on costs nothing when the rule would have suppressed it).
    """

    unit_id: str
    group: str
    order: int
    kind: str
    kinds: tuple[str, ...]
    online: dict[str, float]
    batch: tuple[float, ...]
    alerted: bool = True

    @property
    def peak(self) -> float:
        """The unit's peak score (what the suppression rule compares)."""
        return float(self.online.get("peak_score", 0.0))

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {"unit_id": self.unit_id, "group": self.group, "order": self.order, "kind": self.kind,
                "kinds": list(self.kinds), "online": self.online, "batch": list(self.batch), "alerted": self.alerted}

    @classmethod
    def from_dict(cls, d: dict) -> Unit:
        """From :meth:`to_dict` output; every field checked (ValueError on a bad one)."""
        online = {str(k): float(v) for k, v in dict(d["online"]).items()}
        batch = tuple(float(v) for v in d["batch"])
        if not all(math.isfinite(v) for v in [*online.values(), *batch]):
            raise ValueError(f"unit {d.get('unit_id')!r} has a non-finite feature")
        kind = str(d["kind"])
        if not kind or kind == UNKNOWN:
            raise ValueError(f"unit {d.get('unit_id')!r} has no kind. Received: {kind!r}")
        return cls(str(d["unit_id"]), str(d["group"]), int(d["order"]), kind,
                   tuple(str(k) for k in d.get("kinds", [kind])), online, batch, bool(d.get("alerted", True)))


@dataclass
class ForestKinds:
    """Batch kind classifier: a random forest on percentile features, with the online classifier's rules
    (``unknown`` below ``min_labels`` / ``min_per_kind``, the same :func:`suppress_rule`)."""

    min_labels: int = 10
    min_per_kind: int = 3
    rule: SuppressRule = field(default_factory=SuppressRule)
    seed: int = 0
    trees: int = TREES
    _forest: RandomForestClassifier | None = field(default=None, repr=False)
    _counts: Counter = field(default_factory=Counter, repr=False)
    _max_fp_peak: float | None = None
    _min_true_peak: float | None = None

    def fit(self, x: np.ndarray, y: list[str], peaks: list[float]) -> ForestKinds:
        """Fit on features ``x`` ``(N, F)``, labels ``y`` and the examples' peak scores."""
        self._counts = Counter(y)
        fp = [p for p, k in zip(peaks, y, strict=True) if k in self.rule.false_positive_kinds]
        true = [p for p, k in zip(peaks, y, strict=True) if k not in self.rule.false_positive_kinds]
        self._max_fp_peak = max(fp) if fp else None
        self._min_true_peak = min(true) if true else None
        self._forest = train_forest(np.asarray(x), list(y), self.seed, self.trees) if len(y) >= self.min_labels else None
        return self

    def predict(self, x: np.ndarray, peaks: list[float]) -> list[KindPrediction]:
        """Predictions for the rows of ``x`` ``(N, F)``."""
        n = sum(self._counts.values())
        if self._forest is None:
            return [KindPrediction(UNKNOWN, 0.0, n, False, f"only {n} labels (< {self.min_labels})") for _ in peaks]
        proba = self._forest.predict_proba(np.asarray(x))
        out = []
        for row, peak in zip(proba, peaks, strict=True):
            i = int(np.argmax(row))
            kind, conf = str(self._forest.classes_[i]), float(row[i])
            if self._counts[kind] < self.min_per_kind:
                out.append(KindPrediction(UNKNOWN, conf, n, False, f"only {self._counts[kind]} labels of {kind}"))
                continue
            out.append(KindPrediction(kind, conf, n, *suppress_rule(kind, conf, peak, self._max_fp_peak, self.rule,
                                                                     self._min_true_peak)))
        return out


Method = str
"""``"online"`` (:class:`KindClassifier`, labels replayed in time order) or ``"batch"`` (:class:`ForestKinds`)."""


def fit_predict(method: Method, train: list[Unit], test: list[Unit], seed: int = 0, trees: int = TREES) -> list[KindPrediction]:
    """Train one classifier on ``train`` (in time order) and predict ``test``."""
    train = sorted(train, key=lambda u: u.order)
    if method == "online":
        clf = KindClassifier()
        for u in train:
            clf.learn(u.online, u.kind, alert_id=u.unit_id)
        return [clf.predict(u.online) for u in test]
    if method == "batch":
        forest = ForestKinds(seed=seed, trees=trees)
        forest.fit(_matrix(train), [u.kind for u in train], [u.peak for u in train])
        return forest.predict(_matrix(test), [u.peak for u in test])
    raise ValueError(f"method must be 'online' or 'batch'. Received: {method!r}")


def leave_one_group_out(units: list[Unit], method: Method, progress: bool = False,
                        trees: int = TREES) -> dict[str, KindPrediction]:
    """Each group (clip) predicted by a classifier trained on every other group: ``{unit_id: prediction}``."""
    from tqdm import tqdm

    groups = sorted({u.group for u in units})
    out: dict[str, KindPrediction] = {}
    for g in tqdm(groups, desc=f"leave-one-clip-out ({method})", disable=not progress, leave=False):
        test = [u for u in units if u.group == g]
        preds = fit_predict(method, [u for u in units if u.group != g], test, trees=trees)
        out.update({u.unit_id: p for u, p in zip(test, preds, strict=True)})
    return out


def _matrix(units: list[Unit]) -> np.ndarray:
    """The batch features of ``units`` as ``(N, F)`` float64 (``(0, 0)`` when empty)."""
    return np.array([u.batch for u in units], dtype=np.float64) if units else np.zeros((0, 0))


def kind_report(units: list[Unit], preds: dict[str, KindPrediction],
                fp_kinds: frozenset[str] = frozenset({FALSE_POSITIVE})) -> dict:
    """Per-kind precision / recall, accuracy, the ``unknown`` rate and what suppression did.

    ``unknown`` counts as wrong in ``accuracy`` and in recall, and is left out of precision (no claim made).
    ``accuracy_any_kind_present`` counts a prediction as right when it names any kind in the unit's footage.
    ``true_anomalies_suppressed`` counts units of a real kind that the rule would have suppressed (not notified,
    still in the record); ``suppression.alerted`` counts the same over the units the live path alerted on.
    """
    kinds = sorted({u.kind for u in units} | {p.kind for p in preds.values() if p.kind != UNKNOWN})
    got = [preds[u.unit_id] for u in units]
    per_kind = {}
    for k in kinds:
        tp = sum(1 for u, p in zip(units, got, strict=True) if u.kind == k and p.kind == k)
        predicted, support = sum(p.kind == k for p in got), sum(u.kind == k for u in units)
        per_kind[k] = {"support": support, "predicted": predicted, "precision": tp / predicted if predicted else None,
                       "recall": tp / support if support else None}
    n, known = len(units), [(u, p) for u, p in zip(units, got, strict=True) if p.kind != UNKNOWN]
    return {
        "units": n, "accuracy": _ratio(sum(p.kind == u.kind for u, p in known), n),
        "accuracy_known": _ratio(sum(p.kind == u.kind for u, p in known), len(known)),
        "accuracy_any_kind_present": _ratio(sum(p.kind == u.kind or p.kind in u.kinds for u, p in known), n),
        "unknown_rate": _ratio(n - len(known), n), "per_kind": per_kind,
        "suppression": {**_suppression(units, got, fp_kinds),
                        "alerted": _suppression([u for u in units if u.alerted],
                                                [p for u, p in zip(units, got, strict=True) if u.alerted], fp_kinds)},
    }  # fmt: skip


def _suppression(units: list[Unit], preds: list[KindPrediction], fp_kinds: frozenset[str]) -> dict[str, int]:
    fp = [p.suppress for u, p in zip(units, preds, strict=True) if u.kind in fp_kinds]
    true = [p.suppress for u, p in zip(units, preds, strict=True) if u.kind not in fp_kinds]
    return {"false_positives": len(fp), "false_positives_suppressed": sum(fp),
            "true_anomalies": len(true), "true_anomalies_suppressed": sum(true)}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


DEFAULT_CHECKPOINTS = (0, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000)


def learning_curve(units: list[Unit], checkpoints: tuple[int, ...] = DEFAULT_CHECKPOINTS, trees: int = TREES,
                   progress: bool = False) -> list[dict]:
    """Accuracy against the number of labels, labels given in time order (``Unit.order``) as an operator would.

    Test-then-train: the online classifier predicts each unit before learning its label; the forest, refitted on
    the first ``labels`` units at each checkpoint, predicts the units up to the next checkpoint. One row per
    block: ``labels`` (labels behind the predictions), ``units`` (units predicted), then per method ``accuracy``
    (unknown counts as wrong), ``unknown_rate`` and ``accuracy_known``.
    """
    ordered = sorted(units, key=lambda u: u.order)
    clf, online = KindClassifier(), []
    for u in ordered:
        online.append(clf.predict(u.online))
        clf.learn(u.online, u.kind, alert_id=u.unit_id)
    bounds = sorted({c for c in checkpoints if c < len(ordered)} | {len(ordered)})
    from tqdm import tqdm

    rows = []
    blocks = list(zip(bounds[:-1], bounds[1:], strict=True))
    for lo, hi in tqdm(blocks, desc="learning curve", disable=not progress, leave=False):
        block = ordered[lo:hi]
        batch = fit_predict("batch", ordered[:lo], block, trees=trees)
        rows.append({"labels": lo, "units": hi - lo, "online": _block(block, online[lo:hi]), "batch": _block(block, batch)})
    return rows


def _block(units: list[Unit], preds: list[KindPrediction]) -> dict:
    known = [(u, p) for u, p in zip(units, preds, strict=True) if p.kind != UNKNOWN]
    right = sum(p.kind == u.kind for u, p in known)
    return {"accuracy": _ratio(right, len(units)), "unknown_rate": _ratio(len(units) - len(known), len(units)),
            "accuracy_known": _ratio(right, len(known))}


def majority_baseline(units: list[Unit]) -> float | None:
    """Leave-one-group-out accuracy of always naming the most frequent kind of the training groups (what a
    classifier must beat)."""
    right = 0
    for g in {u.group for u in units}:
        train = Counter(u.kind for u in units if u.group != g)
        if train:
            top = train.most_common(1)[0][0]
            right += sum(u.kind == top for u in units if u.group == g)
    return _ratio(right, len(units))
