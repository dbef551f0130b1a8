"""Tests of model/classify.py: features, unknown with few labels, learning, suppression, JSON round trip, forest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from vigil.model.classify import (
    FALSE_POSITIVE,
    UNKNOWN,
    FrameObs,
    KindClassifier,
    alert_features,
    percentile_features,
    train_forest,
)
from vigil.shared.schemas import Alert


def _alert(peak: float = 5.0, box: tuple[float, float, float, float] | None = (0.5, 0.5, 1.0, 1.0)) -> Alert:
    return Alert(alert_id="c:1:0", camera_id="c", event="close", start_seq=1, end_seq=3, start_ns=3_600 * 10**9 * 6,
                 end_ns=3_600 * 10**9 * 6 + 2 * 10**9, peak_score=peak, score=peak, threshold=3.0, peak_seq=2, box=box)


def _toy(rng: np.random.Generator, kind: str) -> dict[str, float]:
    centre = {"bike": 8.0, FALSE_POSITIVE: 3.5, "cart": 15.0}[kind]
    return {"peak_score": centre + rng.normal(0, 0.3), "motion_mean": centre / 2 + rng.normal(0, 0.2)}


def test_features_on_hand_made_alert() -> None:
    err = np.zeros((10, 10))
    err[5:, 5:] = 2.0
    frames = [FrameObs(4.0, 1.0), FrameObs(5.0, 3.0, err), FrameObs(4.5, 2.0)]
    f = alert_features(_alert(), frames)
    assert f["box_err_mean"] == 2.0 and f["box_err_max"] == 2.0
    assert f["box_w"] == 0.5 and f["box_cx"] == 0.75
    assert f["duration_s"] == 2.0 and f["n_frames"] == 3.0
    assert f["score_p100"] == 5.0 and f["motion_max"] == 3.0
    assert abs(f["hour_sin"] - 1.0) < 1e-9  # 06:00


def test_features_without_box_or_frames_are_finite() -> None:
    f = alert_features(_alert(box=None), [])
    assert all(np.isfinite(v) for v in f.values())


def test_unknown_with_few_labels() -> None:
    rng = np.random.default_rng(0)
    clf = KindClassifier(min_labels=10, min_per_kind=3)
    for _ in range(9):
        clf.learn(_toy(rng, "bike"), "bike")
    p = clf.predict(_toy(rng, "bike"))
    assert p.kind == UNKNOWN and p.n_labels == 9 and not p.suppress


def test_learns_separable_toy_problem() -> None:
    rng = np.random.default_rng(1)
    clf = KindClassifier()
    kinds = ["bike", FALSE_POSITIVE, "cart"]
    for i in range(60):
        k = kinds[i % 3]
        clf.learn(_toy(rng, k), k, alert_id=f"a{i}")
    correct = sum(clf.predict(_toy(rng, k)).kind == k for k in kinds * 20)
    assert correct >= 57


def test_suppression_only_above_confidence_and_in_range() -> None:
    rng = np.random.default_rng(2)
    clf = KindClassifier(suppress_confidence=0.9, score_margin=1.5)
    for i in range(30):
        k = "bike" if i % 2 else FALSE_POSITIVE
        clf.learn(_toy(rng, k), k)
    fp = clf.predict(_toy(rng, FALSE_POSITIVE))
    assert fp.kind == FALSE_POSITIVE and fp.confidence >= 0.9 and fp.suppress
    assert not clf.predict(_toy(rng, "bike")).suppress
    strict = KindClassifier.from_json(clf.to_json().replace('"suppress_confidence": 0.9', '"suppress_confidence": 1.01'))
    assert not strict.predict(_toy(rng, FALSE_POSITIVE)).suppress
    far = clf.predict({"peak_score": 100.0, "motion_mean": 1.75})
    assert not far.suppress


def test_save_restore_without_pickle_identical() -> None:
    rng = np.random.default_rng(3)
    clf = KindClassifier(max_labels=40)
    for i in range(50):
        k = ["bike", "cart"][i % 2]
        clf.learn(_toy(rng, k), k, alert_id=f"a{i}")
    text = clf.to_json()
    assert json.loads(text)["labels"] and clf.n_labels == 40
    back = KindClassifier.from_json(text)
    for _ in range(20):
        x = _toy(rng, "bike")
        assert back.predict(x) == clf.predict(x)


def test_relabel_replaces() -> None:
    clf = KindClassifier()
    clf.learn({"peak_score": 1.0}, "bike", alert_id="x")
    clf.learn({"peak_score": 1.0}, "cart", alert_id="x")
    assert clf.n_labels == 1 and json.loads(clf.to_json())["labels"][0][2] == "cart"


def test_batch_forest_on_toy_data() -> None:
    rng = np.random.default_rng(4)
    x = [percentile_features(rng.normal(m, 0.5, 30)) for m in [1.0, 5.0] * 20]
    y = ["walk", "bike"] * 20
    forest = train_forest(np.array(x), y)
    test = np.array([percentile_features(rng.normal(5.0, 0.5, 30)), percentile_features(rng.normal(1.0, 0.5, 30))])
    assert list(forest.predict(test)) == ["bike", "walk"]


def test_ped2_kinds_cover_every_test_clip() -> None:
    root = Path(__file__).resolve().parents[2]
    kinds = json.loads((root / "data" / "ped2-kinds.json").read_text())
    frame_labels = Path(os.environ.get("VIGIL_PED2_DIR", "/work/shared/data/ucsd_ped2")) / "labels_frame_ped2.json"
    clips = set(json.loads(frame_labels.read_text())) if frame_labels.is_file() else {f"Test{i:03d}" for i in range(1, 13)}
    assert set(kinds["clips"]) == clips
    for entry in kinds["clips"].values():
        assert entry["primary"] in entry["kinds"] and set(entry["kinds"]) <= set(kinds["kinds_vocabulary"])


def test_no_labelled_incident_is_ever_suppressed() -> None:
    """By construction: an alert scoring as high as the weakest confirmed incident is notified, even when the
    classifier is sure it is a false positive (here bikes and false positives share everything but the score)."""
    rng = np.random.default_rng(7)
    clf = KindClassifier()
    labelled = []
    for i in range(200):
        kind = FALSE_POSITIVE if i % 4 else "bike"
        peak = rng.uniform(2.0, 4.0) if kind == FALSE_POSITIVE else rng.uniform(3.0, 6.0)
        feats = {"peak_score": peak, "motion_mean": rng.normal(1.0, 0.1), "box_w": rng.normal(0.2, 0.02)}
        clf.learn(feats, kind, alert_id=f"a{i}")
        labelled.append((feats, kind))
    preds = [(clf.predict(f), k) for f, k in labelled]
    assert not any(p.suppress for p, k in preds if k == "bike")
    assert any(p.kind == FALSE_POSITIVE and p.confidence >= 0.9 and "weakest confirmed" in p.reason for p, k in preds if k == "bike")
    assert any(p.suppress for p, k in preds if k == FALSE_POSITIVE)  # the low-scoring false positives still go
