"""Tests of `vigil classifier train|evaluate` (model/classifier_cli.py) and the evaluation in model/classify.py.

Fast: synthetic units through the CLI (typer's CliRunner), synthetic observations through the live path's unit
building; the Ped2 run itself is in docs/classifier.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from vigil.model import classifier_cli as cc
from vigil.model.classify import (
    FALSE_POSITIVE,
    UNKNOWN,
    KindClassifier,
    Unit,
    kind_report,
    learning_curve,
    leave_one_group_out,
)

KINDS = ("bike", "cart", "skateboard", FALSE_POSITIVE)
CENTRES = {"bike": 8.0, "cart": 15.0, "skateboard": 5.0, FALSE_POSITIVE: 2.0}


def _app() -> typer.Typer:
    app = typer.Typer()
    cc.register(app, typer.Typer())
    return app


def _unit(rng: np.random.Generator, kind: str, group: str, order: int, spread: float = 0.2, peak: float | None = None) -> Unit:
    c = CENTRES[kind]
    online = {"peak_score": c + rng.normal(0, spread) if peak is None else peak, "motion_mean": c / 2 + rng.normal(0, spread)}
    batch = tuple(float(v) for v in c + rng.normal(0, spread, 4))
    return Unit(f"{group}/u{order}", group, order, kind, (kind,), online, batch)


def _separable(seed: int = 0, groups: int = 6, per_kind: int = 3) -> list[Unit]:
    rng = np.random.default_rng(seed)
    units, order = [], 0
    for g in range(groups):
        for _ in range(per_kind):
            for kind in KINDS:
                units.append(_unit(rng, kind, f"clip{g}", order))
                order += 1
    return units


def test_separable_set_gets_full_recall_through_the_cli(tmp_path: Path) -> None:
    cc.save_units(_separable(), tmp_path / "units.json", "segment")
    res = CliRunner().invoke(_app(), ["classifier", "evaluate", "--units", str(tmp_path / "units.json"),
                                      "--out", str(tmp_path / "out"), "--trees", "20"])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "out" / "eval.json").read_text())["sets"]["segment"]
    assert r["units"] == 72 and r["clips"] == 6 and r["caveats"] == []
    assert r["majority_baseline_accuracy"] <= 0.25
    for method in ("online", "batch"):
        rep = r[method]
        assert rep["accuracy"] == 1.0 and rep["unknown_rate"] == 0.0
        assert {k: v["recall"] for k, v in rep["per_kind"].items()} == dict.fromkeys(KINDS, 1.0)
        assert all(v["precision"] == 1.0 for v in rep["per_kind"].values())
        sup = rep["suppression"]
        assert sup["true_anomalies_suppressed"] == 0 and sup["true_anomalies"] == 54
        assert sup["false_positives"] == 18 and sup["false_positives_suppressed"] >= 15
    curve = r["learning_curve"]
    assert [row["labels"] for row in curve] == [0, 5, 10, 20, 30, 50]
    assert sum(row["units"] for row in curve) == 72
    assert curve[0]["online"]["unknown_rate"] == 1.0 and curve[0]["batch"]["unknown_rate"] == 1.0
    assert curve[-1]["online"]["accuracy"] == 1.0 and curve[-1]["batch"]["accuracy"] == 1.0
    assert "| bike | 18 | 100% | 100% | 100% | 100% |" in (tmp_path / "out" / "eval.md").read_text()


def test_random_labels_score_near_chance() -> None:
    """The measure can fail: labels independent of the features give about chance accuracy."""
    rng = np.random.default_rng(5)
    units = [Unit(f"g{i % 6}/u{i}", f"g{i % 6}", i, str(rng.choice(["a", "b"])), (), {"peak_score": float(rng.normal())},
                  (float(rng.normal()),)) for i in range(240)]
    for method in ("online", "batch"):
        acc = kind_report(units, leave_one_group_out(units, method, trees=20))["accuracy"]
        assert 0.3 < acc < 0.7, (method, acc)


def test_out_of_range_true_anomalies_are_never_suppressed() -> None:
    """Bikes that look exactly like false positives, but score beyond 1.5 x the worst labelled false positive: the
    classifiers call them false positives, and the rule still never suppresses them."""
    rng = np.random.default_rng(1)
    units, order = [], 0
    for g in range(5):
        for _ in range(6):
            units.append(_unit(rng, FALSE_POSITIVE, f"c{g}", order))
            order += 1
        look_alike = _unit(rng, FALSE_POSITIVE, f"c{g}", order, peak=2.0 * 1.5 * 2.5)
        units.append(Unit(look_alike.unit_id, look_alike.group, order, "bike", ("bike",), look_alike.online, look_alike.batch))
        order += 1
    for method in ("online", "batch"):
        preds = leave_one_group_out(units, method, trees=20)
        rep = kind_report(units, preds)
        assert rep["suppression"]["true_anomalies"] == 5 and rep["suppression"]["true_anomalies_suppressed"] == 0
        assert rep["suppression"]["false_positives_suppressed"] > 0
    fooled = [preds[u.unit_id] for u in units if u.kind == "bike"]  # the forest: same features as false positives
    assert sum(p.kind == FALSE_POSITIVE and p.confidence >= 0.9 for p in fooled) >= 3
    assert not any(p.suppress for p in fooled)
    assert all("beyond" in p.reason for p in fooled if p.kind == FALSE_POSITIVE and p.confidence >= 0.9)


def test_learning_curve_is_in_time_order_and_unknown_at_first() -> None:
    units = _separable(seed=2)
    shuffled = list(reversed(units))
    curve = learning_curve(shuffled, checkpoints=(0, 9, 10, 40), trees=20)
    assert [(r["labels"], r["units"]) for r in curve] == [(0, 9), (9, 1), (10, 30), (40, 32)]
    assert curve[0]["online"]["unknown_rate"] == 1.0 and curve[1]["online"]["unknown_rate"] == 1.0
    assert curve[-1]["online"]["accuracy"] >= 0.95 and curve[-1]["batch"]["accuracy"] >= 0.95


def test_single_kind_and_single_clip_kinds_are_flagged(tmp_path: Path) -> None:
    units = [u for u in _separable() if u.kind in ("bike", FALSE_POSITIVE)]
    units += [u for u in _separable(seed=3) if u.kind == "cart" and u.group == "clip0"]
    notes = cc.caveats(units)
    assert any("cart is in one clip only (clip0)" in n for n in notes)
    assert cc.caveats([u for u in units if u.kind == "bike"])[0].startswith("only 1 kind")
    rep = kind_report(units, leave_one_group_out(units, "online"))
    assert rep["per_kind"]["cart"]["recall"] == 0.0


def test_train_saves_without_pickle_and_reloads_identically(tmp_path: Path) -> None:
    units = _separable(seed=4)
    cc.save_units(units, tmp_path / "u.json", "alert")
    res = CliRunner().invoke(_app(), ["classifier", "train", "--units", str(tmp_path / "u.json"), "--out", str(tmp_path),
                                      "--trees", "20"])
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "forest.npz", allow_pickle=False) as z:
        assert z["x"].shape == (72, 4)
    forest = cc.load_forest(tmp_path / "forest.npz")
    again = cc.load_forest(tmp_path / "forest.npz")
    x = np.array([u.batch for u in units])
    peaks = [u.peak for u in units]
    assert forest.predict(x, peaks) == again.predict(x, peaks)
    assert [p.kind for p in forest.predict(x, peaks)] == [u.kind for u in units]
    online = KindClassifier.from_json((tmp_path / "online.json").read_text())
    assert online.n_labels == 72 and online.predict(units[0].online).kind == units[0].kind


def test_bad_units_file_is_refused(tmp_path: Path) -> None:
    d = _separable()[0].to_dict()
    d["batch"] = [float("nan")]
    (tmp_path / "bad.json").write_text(json.dumps({"version": 1, "units": [d]}).replace("NaN", "1e999"))
    res = CliRunner().invoke(_app(), ["classifier", "evaluate", "--units", str(tmp_path / "bad.json"),
                                      "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "non-finite" in res.output
    with pytest.raises(ValueError, match="no kind"):
        Unit.from_dict({**_separable()[0].to_dict(), "kind": UNKNOWN})


def _observations(n: int, bad: range = range(0), seed: int = 0) -> list:
    from vigil.model.alerting import Observation

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        err = rng.lognormal(-7, 0.1, (6, 8))
        if i in bad:
            err[2:4, 5:7] *= 30
        out.append(Observation(i, 1_750_000_000 * 10**9 + i * 10**8, i < 3, {"error": err}))
    return out


def test_units_from_the_live_path() -> None:
    from vigil.model.live import calibrate
    from vigil.shared.scorer_params import ScoringParams

    cal = calibrate([_observations(300, seed=1)], ScoringParams(threshold_margin=1.0), cell_px=8)
    labels = np.zeros(100, bool)
    labels[40:70] = True
    kinds = {"Test001": cc.ClipKind("bike", ("bike",))}
    frames = [cc.clip_frames("Test001", _observations(100, range(40, 70)), np.ones(100), labels, cal),
              cc.clip_frames("Train015", _observations(50, seed=2), np.zeros(50), None, cal)]
    sets = cc.build_units(frames, kinds, window=10)
    seg = sets["segment"]
    assert [u.kind for u in seg if u.group == "Test001"].count("bike") == 3 and len(seg) == 10 + 5
    assert all(u.kind == FALSE_POSITIVE for u in seg if u.group == "Train015")
    assert any(u.alerted for u in seg) and not all(u.alerted for u in seg)
    assert sets["segment-alerted"] == [u for u in seg if u.alerted]
    assert [u.order for u in seg] == sorted(u.order for u in seg)
    assert [u.kind for u in sets["alert"]] == ["bike"] and sets["alert"][0].online["box_w"] < 1.0
    assert [u.kind for u in sets["clip"]] == ["bike"] and len(seg[0].batch) == len(cc.BATCH_FEATURES)
    assert min(u.peak for u in seg if u.kind == "bike") > max(u.peak for u in seg if u.kind == FALSE_POSITIVE)


def test_kinds_file_and_missing_clips_note(tmp_path: Path) -> None:
    kinds = cc.load_kinds(cc.find_kinds_file())
    assert len(kinds) == 12 and kinds["Test004"].primary == "cart"
    note = cc.missing_note(tmp_path, ["Test001", "Test002"], kinds)
    assert note["missing_clips"][0] == "Test003" and "VIGIL_PED2_DIR" in note["missing"]
    assert cc.missing_note(tmp_path, sorted(kinds), kinds) == {"missing_clips": []}
    bad = tmp_path / "k.json"
    bad.write_text(json.dumps({"kinds_vocabulary": ["bike"], "clips": {"T": {"primary": "cart", "kinds": ["cart"]}}}))
    with pytest.raises(ValueError, match="outside"):
        cc.load_kinds(bad)
