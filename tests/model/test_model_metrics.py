"""Metric and scoring code against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from vigil.model.calibration import FeatureStats, causal_scores, feature_stats, per_clip_minmax, warmup_length
from vigil.model.roc import eer, roc_auc, roc_curve


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.normal(size=400) + y, 1)   # rounding creates many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_roc_curve_matches_sklearn():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    fpr, tpr, _ = roc_curve(y, s)
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


@pytest.mark.parametrize(("labels", "scores", "expected"), [
    ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 0.0),          # perfect separation
    ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 1.0),          # perfectly wrong
    ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.5),         # fpr = fnr = 0.5 at threshold 0.4
    # ROC (0,0) (0,.5) (1/3,.5) (1/3,1) ...: fpr - fnr = -1, -.5, -1/6, +1/3 -> crossing on the
    # vertical segment at fpr = 1/3
    ([0, 0, 0, 1, 1], [0.1, 0.2, 0.6, 0.5, 0.9], 1 / 3),
    # ROC (0,0) (0,.5) (1/3,.5) (2/3,.5) (1,.5) (1,1): fnr = .5 along the horizontal run, so the
    # crossing is interpolated between fpr 1/3 (-1/6) and 2/3 (+1/6): fpr = 0.5
    ([1, 0, 0, 0, 1], [5, 4, 3, 2, 1], 0.5),
])
def test_eer_hand_computed(labels, scores, expected):
    assert eer(labels, scores) == pytest.approx(expected)


def test_single_class_raises():
    with pytest.raises(ValueError, match="both"):
        roc_auc([1, 1, 1], [0.1, 0.2, 0.3])


def test_causal_scores_are_causal_and_neutral_in_warmup():
    stats = FeatureStats(median=1.0, std=0.5, p99=2.0)
    x = np.array([100.0, 50.0, 1.0, 2.0, 3.0, 1.0])
    full = causal_scores(x, "mse", stats, n_warmup=2, smooth=3)
    assert full[:2].tolist() == [0.0, 0.0]
    for t in range(len(x)):   # truncating the future does not change the past
        np.testing.assert_allclose(causal_scores(x[:t + 1], "mse", stats, 2, 3), full[:t + 1])
    np.testing.assert_allclose(full[4], np.mean([0.0, 2.0, 4.0]))
    assert causal_scores(np.array([5.0, 30.0]), "psnr", FeatureStats(35.0, 5.0, 40.0), 1)[1] == 1.0


def test_per_clip_minmax_and_stats():
    v = per_clip_minmax(np.array([99.0, 1.0, 3.0, 2.0]), "mse", n_warmup=1)
    np.testing.assert_allclose(v, [0.5, 0.0, 1.0, 0.5])
    stats = feature_stats([np.array([9.0, 1.0, 2.0, 3.0])], n_warmup=1)
    assert stats.median == 2.0 and stats.std == pytest.approx(np.std([1.0, 2.0, 3.0]))


def test_warmup_length():
    curve = np.array([10.0, 5.0, 1.2] + [1.0] * 12)
    assert warmup_length([curve, curve * 1.1]) == 2
