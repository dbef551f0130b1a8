"""Scoring math against numpy batch references, event rules, order rule, pickling and river checks."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
from river import checks

from vigil.model.events import EventParams, EventTracker, Frame
from vigil.services.scorer.scoring import (
    FEATURES,
    OPTIONAL,
    AdaptiveThreshold,
    CameraScorer,
    LevelNormaliser,
    ScoringParams,
    normal_cdf,
)
from vigil.services.scorer.settings import ScorerSettings
from vigil.services.scorer.state import CameraParams, ScorerState
from vigil.shared.schemas import ScoreMessage
from vigil.tools.simulator import score_messages, scripted


def _ew_reference(values: np.ndarray, a: float) -> tuple[float, float]:
    """Batch EW mean and variance (first value initialises, then x_t weighted a, as river)."""
    n = len(values)
    w = a * (1 - a) ** np.arange(n - 1, -1, -1, dtype=float)
    w[0] = (1 - a) ** (n - 1)
    mean = float(np.sum(w * values))
    return mean, float(np.sum(w * values**2)) - mean**2


def _features(rng: np.random.Generator, n: int) -> list[dict[str, float]]:
    return [{"mse": float(m), "patch_max": float(p), "motion_max": float(v)}
            for m, p, v in zip(rng.lognormal(-6, 0.2, n), rng.lognormal(-4, 0.3, n), rng.lognormal(0, 0.4, n), strict=True)]


def test_normaliser_matches_numpy_after_every_update() -> None:
    rng = np.random.default_rng(0)
    xs = _features(rng, 200)
    norm = LevelNormaliser(fading_factor=0.05, grace_period=10, min_std=1e-9, eps=1e-6)
    probe = {"mse": 0.004, "patch_max": 0.03, "motion_max": 2.5}
    for i, x in enumerate(xs, start=1):
        norm.learn_one(x)
        zs = []
        for f in FEATURES:
            logs = np.log(np.array([v[f] for v in xs[:i]]) + 1e-6)
            mean, var = _ew_reference(logs, 0.05)
            got_mean, got_std = norm.level(f)
            assert got_mean == pytest.approx(mean, rel=1e-9, abs=1e-9)
            assert got_std == pytest.approx(max(math.sqrt(max(var, 0)), 1e-9), rel=1e-6, abs=1e-9)
            zs.append((math.log(probe[f] + 1e-6) - mean) / max(math.sqrt(max(var, 0)), 1e-9))
        if i < 10:
            assert norm.z_one(probe) is None and norm.score_one(probe) == 0.0
        else:
            assert norm.z_one(probe) == pytest.approx(max(zs), rel=1e-6)
            assert norm.score_one(probe) == pytest.approx(normal_cdf(max(zs)), rel=1e-9, abs=1e-12)


def test_normal_cdf_matches_reference() -> None:
    from statistics import NormalDist

    for z in np.linspace(-8, 8, 33):
        assert normal_cdf(float(z)) == pytest.approx(NormalDist().cdf(float(z)), abs=1e-12)


def test_threshold_quantile_tracks_numpy_quantile() -> None:
    rng = np.random.default_rng(1)
    thr = AdaptiveThreshold(LevelNormaliser(fading_factor=0.01, grace_period=50), q=0.95, min_threshold=0.0)
    scores = []
    for x in _features(rng, 3000):
        s = thr.score_one(x)
        if thr.anomaly_detector.ready:
            scores.append(s)
        thr.learn_one(x, s)
        if len(scores) > 500 and len(scores) % 250 == 0:  # P^2 is approximate: compare within 2 percentiles
            lo, hi = np.quantile(scores, [0.93, 0.97])
            assert lo <= thr.threshold <= hi


def test_protection_keeps_anomalies_out_of_the_normal_level() -> None:
    rng = np.random.default_rng(2)
    scorer = CameraScorer(ScoringParams(fading_factor=0.05, grace_frames=50, q=0.99, max_protected_frames=10_000))
    for x in _features(rng, 500):
        scorer.update(x)
    before = scorer.filter.anomaly_detector.level("patch_max")
    for _ in range(200):
        x = {"mse": 0.0025, "patch_max": 0.5}
        s = scorer.score(x)
        assert scorer.classify(s)
        scorer.update(x, s)
    assert scorer.filter.anomaly_detector.level("patch_max") == before
    unprotected = CameraScorer(ScoringParams(fading_factor=0.05, grace_frames=50, q=0.99, protect=False))
    for x in _features(np.random.default_rng(2), 500):
        unprotected.update(x)
    for _ in range(200):
        unprotected.update({"mse": 0.0025, "patch_max": 0.5})
    assert not unprotected.classify(unprotected.score({"mse": 0.0025, "patch_max": 0.5}))


def test_hold_freezes_everything_and_max_protected_relearns() -> None:
    scorer = CameraScorer(ScoringParams(fading_factor=0.05, grace_frames=40, max_protected_frames=30))
    for x in _features(np.random.default_rng(3), 100):
        scorer.update(x)
    q_before = scorer.filter.quantile.get()
    for _ in range(20):
        scorer.update({"mse": 0.01, "patch_max": 0.5}, hold=True)
    assert scorer.filter.quantile.get() == q_before
    for _ in range(300):  # a lasting change of scene becomes the new normal
        scorer.update({"mse": 0.01, "patch_max": 0.5})
    assert not scorer.classify(scorer.score({"mse": 0.01, "patch_max": 0.5}))


@pytest.mark.parametrize(
    "estimator",
    [LevelNormaliser(fading_factor=0.1, grace_period=5), AdaptiveThreshold(LevelNormaliser(fading_factor=0.1, grace_period=5), q=0.9)],
    ids=["LevelNormaliser", "AdaptiveThreshold"],
)
def test_river_generic_checks(estimator) -> None:  # noqa: ANN001
    offline = {"check_learn_one", "check_pickling", "check_shuffle_features_no_impact", "check_emerging_features",
               "check_disappearing_features", "check_radically_disappearing_features", "check_predict_one_pure",
               "check_predict_one_before_any_learn", "check_no_state_aliasing_with_input", "check_clone_is_independent",
               "check_roc_auc", "check_bounded_memory_growth"}  # fmt: skip  # these download a data set
    ran = 0
    for check in checks.yield_checks(estimator):
        if check.__name__ not in offline:
            check(copy.deepcopy(estimator))
            ran += 1
    assert ran >= 10


@pytest.mark.parametrize("make", [lambda: LevelNormaliser(0.1, 5), lambda: CameraScorer(ScoringParams(grace_frames=5, fading_factor=0.5))])
def test_no_input_mutation_and_clone_independence(make) -> None:  # noqa: ANN001
    est = make()
    xs = _features(np.random.default_rng(4), 30)
    frozen = copy.deepcopy(xs)
    for x in xs:
        (est.learn_one if hasattr(est, "learn_one") else est.update)(x)
        (est.score_one if hasattr(est, "score_one") else est.score)(x)
    assert xs == frozen
    if isinstance(est, LevelNormaliser):
        clone = est.clone()
        assert clone.n == 0 and est.n == 30
        clone.learn_one(xs[0])
        assert est.n == 30


def _roundtrip(obj):  # noqa: ANN001, ANN202
    return pickle.loads(pickle.dumps(obj))


def test_pickle_roundtrip_of_every_per_camera_object() -> None:
    xs = _features(np.random.default_rng(5), 200)
    norm, scorer = LevelNormaliser(0.05, 20), CameraScorer(ScoringParams(grace_frames=20, fading_factor=0.1))
    tracker = EventTracker(EventParams(k=2, n=3, m=2, min_duration_s=0))
    for i, x in enumerate(xs[:100]):
        norm.learn_one(x)
        scorer.update(x)
        tracker.step(Frame(i, i * 10**8, 0.999, i % 3 == 0, 0.99))
    n2, s2, t2 = _roundtrip(norm), _roundtrip(scorer), _roundtrip(tracker)
    for i, x in enumerate(xs[100:], start=100):
        assert n2.score_one(x) == norm.score_one(x)
        assert s2.score(x) == scorer.score(x) and s2.threshold == scorer.threshold
        norm.learn_one(x), n2.learn_one(x), scorer.update(x), s2.update(x)
        f = Frame(i, i * 10**8, 0.999, i % 3 == 0, 0.99)
        assert t2.step(f) == tracker.step(f)


def test_camera_state_roundtrip_continues_identically() -> None:
    sim = scripted(500, [(300, 340)])
    msgs = [ScoreMessage.decode(b) for b in score_messages("cam-p", sim, heatmap=True)]
    params = CameraParams(ScoringParams(grace_frames=100, fading_factor=0.03), EventParams(k=3, n=5, m=5, min_duration_s=0.2))
    a = ScorerState("cam-p", params)
    for m in msgs[:320]:
        a.step(m)
    assert a.outbox  # the open is pending (no Redis here)
    b = ScorerState.loads(a.dumps())
    assert [p.alert.alert_id for p in b.outbox] == [p.alert.alert_id for p in a.outbox]
    for m in msgs[320:]:
        ra, rb = a.step(m), b.step(m)
        assert (ra.score, ra.threshold, ra.status) == (rb.score, rb.threshold, rb.status)
        assert [p.dedupe for p in ra.alerts] == [p.dedupe for p in rb.alerts]


def test_a_new_model_relearns_the_normal_level() -> None:
    sim = scripted(400, [])
    msgs = [ScoreMessage.decode(b) for b in score_messages("cam-m", sim)]
    params = CameraParams(ScoringParams(grace_frames=100, fading_factor=0.03), EventParams())
    st = ScorerState("cam-m", params)
    for m in msgs[:200]:
        st.step(m)
    assert st.scorer.ready and st.model == "sim:1"
    same = st.step(msgs[200])
    assert same.status == "normal"
    # The worker swapped in another model: its error scale differs, so the old level means nothing.
    swapped = msgs[201].model_copy(update={"model_version": "2"})
    assert st.step(swapped).status == "grace" and st.model == "sim:2"
    for m in msgs[202:301]:
        st.step(m.model_copy(update={"model_version": "2"}))
    assert st.scorer.ready  # 100 grace frames later it scores again
    old = ScorerState.loads(st.dumps())
    del old.__dict__["model"]  # a state pickled before this field existed
    assert ScorerState.loads(old.dumps()).model is None


# ---------------------------------------------------------------------------------------------- events
def _run(tracker: EventTracker, flags: list[int], fps: float = 10.0, scores: list[float] | None = None) -> list:
    out = []
    for i, f in enumerate(flags):
        s = scores[i] if scores else (0.999 if f else 0.1)
        out += [(c.kind, c.start_seq, c.end_seq, i) for c in tracker.step(Frame(i, int(i / fps * 1e9), s, bool(f), 0.99))]
    return out


def test_k_of_n_open_and_m_close() -> None:
    t = EventTracker(EventParams(k=3, n=5, m=4, min_duration_s=0, cooldown_s=0))
    flags = [0, 1, 0, 0, 0, 1, 1] + [0, 1, 0, 1, 0, 1] + [0] * 10 + [1, 1, 1, 1, 0, 1] + [0] * 4
    assert _run(t, flags) == [("open", 5, None, 8), ("close", 5, 12, 16), ("open", 23, None, 25), ("close", 23, 28, 32)]


def test_min_duration_drops_blips_and_cooldown_suppresses() -> None:
    t = EventTracker(EventParams(k=2, n=2, m=2, min_duration_s=0.5, cooldown_s=0))
    assert _run(t, [1, 1, 1, 0, 0] + [0] * 5) == []  # lasted 0.2 s < 0.5 s
    t = EventTracker(EventParams(k=2, n=2, m=2, min_duration_s=0, cooldown_s=2.0))
    flags = [1, 1, 0, 0] + [1, 1, 0, 0] + [0] * 20 + [1, 1]  # second burst within 2 s of the close
    kinds = [(k, s) for k, s, _, _ in _run(t, flags)]
    assert kinds == [("open", 0), ("close", 0), ("open", 28)]


def test_max_length_reannounces_and_updates_are_throttled() -> None:
    t = EventTracker(EventParams(k=1, n=1, m=2, min_duration_s=0, max_length_s=3.0, update_interval_s=1.0))
    n = 50
    scores = [0.99 + 0.0001 * i for i in range(n)]  # peak rises every frame
    ev = _run(t, [1] * n, scores=scores)
    kinds = [e[0] for e in ev]
    assert kinds.count("open") == 2 and kinds.count("close") == 1  # 5 s at 10 fps, max 3 s
    closed = next(e for e in ev if e[0] == "close")
    reopen = [e for e in ev if e[0] == "open"][1]
    assert closed[3] == reopen[3] == 30 and reopen[1] == 30
    updates = [e[3] for e in ev if e[0] == "update"]
    assert updates and all(b - a >= 10 for a, b in zip(updates, updates[1:], strict=False))


# ------------------------------------------------------------------------------------- state / order
def test_order_rule_duplicates_late_and_restart() -> None:
    st = ScorerState("cam-o")
    assert st.admit(5, 500) == "ok"
    assert st.admit(5, 500) == "duplicate"
    assert st.admit(3, 300) == "late"
    assert st.admit(7, 700) == "ok"  # gap: fine
    assert st.admit(0, 900) == "restart"  # numbering restarted, newer capture time
    assert st.last_seq == 0


def test_state_alerts_once_after_grace_and_ignores_warmup() -> None:
    sim = scripted(600, [(50, 80), (400, 449)])
    msgs = [ScoreMessage.decode(b) for b in score_messages("cam-s", sim, heatmap=True, warmup_frames=20)]
    st = ScorerState("cam-s", ScorerSettings(scoring=ScoringParams(grace_frames=100, fading_factor=0.03)).camera_params("cam-s"))
    results = [st.step(m) for m in msgs]
    assert {r.status for r in results[:20]} == {"warmup"} and results[20].status == "grace"
    changes = [p.alert for r in results for p in r.alerts]
    assert [(a.event, a.alert_id) for a in changes if a.event != "update"] == [("open", "cam-s:400"), ("close", "cam-s:400")]
    close = changes[-1]
    assert 449 <= close.end_seq <= 455 and close.start_ns == msgs[400].capture_ns  # noise may stay above briefly
    assert close.end_ns == msgs[close.end_seq].capture_ns
    assert close.snapshot_key == "vigil:snapshot:cam-s:400" and st.outbox[0].snapshot_jpeg[:2] == b"\xff\xd8"
    assert all(st.step(m).admission == "duplicate" for m in msgs[-1:])  # replayed last score


def test_settings_overrides_are_validated() -> None:
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        ScorerSettings(camera_overrides={"c": {"bogus": 1}})
    with pytest.raises(ValueError, match="k <= n"):
        ScorerSettings(camera_overrides={"c": {"k": 20}})
    with pytest.raises(ValueError, match="k <= n"):
        ScorerSettings(events={"k": 20})


def test_scored_features_are_the_score_message_fields_but_psnr() -> None:
    assert FEATURES == ("mse", "patch_max", "motion_max") and OPTIONAL == ("motion_max",)


def test_fast_motion_alone_raises_the_score() -> None:
    norm = LevelNormaliser(fading_factor=0.05, grace_period=40)
    for x in _features(np.random.default_rng(3), 200):
        norm.learn_one(x)
    usual = {"mse": math.exp(-6), "patch_max": math.exp(-4), "motion_max": 1.0}
    assert norm.score_one(usual) < 0.9
    assert norm.score_one({**usual, "motion_max": 8.0}) > 0.999  # well predicted, but 8x the usual speed


def test_a_state_learned_without_motion_keeps_scoring_with_its_features() -> None:
    norm = LevelNormaliser(fading_factor=0.05, grace_period=40)
    for f in OPTIONAL:  # as unpickled from a changelog written before motion_max existed
        del norm._mean[f], norm._var[f]
    for x in _features(np.random.default_rng(4), 100):
        norm.learn_one(x)
    probe = {"mse": math.exp(-6), "patch_max": math.exp(-4)}  # an old worker: no motion_max at all
    assert norm.score_one({**probe, "motion_max": 50.0}) == pytest.approx(norm.score_one(probe))
    assert norm.score_one({**probe, "patch_max": math.exp(-1)}) > 0.999


def test_motion_switched_on_later_joins_only_after_its_own_grace() -> None:
    norm = LevelNormaliser(fading_factor=0.05, grace_period=40)
    xs = _features(np.random.default_rng(5), 300)
    for x in xs[:100]:
        norm.learn_one({**x, "motion_max": 0.0})  # motion not measured (worker setting off / old worker)
    usual = {"mse": math.exp(-6), "patch_max": math.exp(-4)}
    base = norm.score_one(usual)
    assert base < 0.9
    for x in xs[100:139]:  # motion arrives: 39 frames learned, one short of the grace period
        assert norm.score_one(x) < 0.999
        norm.learn_one(x)
    assert norm.score_one({**usual, "motion_max": 50.0}) == pytest.approx(norm.score_one(usual))  # not yet scored
    norm.learn_one(xs[139])
    assert norm.score_one({**usual, "motion_max": 1.0}) < 0.9
    assert norm.score_one({**usual, "motion_max": 50.0}) > 0.999
