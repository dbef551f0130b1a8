"""Per-camera kind classifiers (issue #17, ``VIGIL_SCORER_KINDS__PER_CAMERA``): the same alert features mean a
bike on one camera and a false positive on another; each camera's own classifier learns its own meaning once
it has enough labels, the site's answers before, and the number of camera classifiers is bounded."""

from __future__ import annotations

import json

from vigil.services.scorer import metrics
from vigil.services.scorer.kinds import KindBook, camera_of_alert
from vigil.services.scorer.settings import KindSettings

FEATURES = {"peak_score": 4.0, "p50": 2.5, "box_w": 40.0, "box_h": 30.0, "motion_max": 3.0}


def _label(book: KindBook, camera: str, i: int, kind: str, shift: float = 0.0) -> None:
    feats = {k: v + shift + 0.01 * i for k, v in FEATURES.items()}
    learnt = book._learn({b"alert_id": f"{camera}:{100 + i}:{1_700_000_000_000 + i}".encode(), b"kind": kind.encode(),
                          b"features": json.dumps(feats).encode()})  # fmt: skip
    assert learnt == 1


def _book(**kw: object) -> KindBook:
    return KindBook(None, KindSettings(min_labels=6, min_per_kind=3, **kw))


def test_each_camera_learns_its_own_meaning_once_it_has_enough_labels() -> None:
    book = _book(per_camera=True)
    for i in range(8):  # the same features: a bike on the path camera, a swaying tree on the park camera
        _label(book, "cam:path", i, "bike")
        _label(book, "cam:park", i, "false_positive")
    path_clf, path_scope = book.classifier_for("cam:path")
    park_clf, park_scope = book.classifier_for("cam:park")
    assert (path_scope, park_scope) == ("camera", "camera")
    assert path_clf.predict(FEATURES).kind == "bike"
    assert park_clf.predict(FEATURES).kind == "false_positive"
    site, scope = book.classifier_for("cam:new")
    assert scope == "site" and site is book.classifier and site.n_labels == 16


def test_a_camera_with_few_labels_is_answered_by_the_site() -> None:
    book = _book(per_camera=True)
    for i in range(8):
        _label(book, "cam:a", i, "bike")
    for i in range(3):
        _label(book, "cam:b", i, "false_positive")
    clf, scope = book.classifier_for("cam:b")
    assert scope == "site" and clf.predict(FEATURES).kind == "bike"


def test_off_by_default_one_site_classifier() -> None:
    book = _book()
    for i in range(8):
        _label(book, "cam:a", i, "bike")
    assert book.cameras == {} and book.classifier_for("cam:a") == (book.classifier, "site")


def test_camera_classifiers_are_bounded_and_overflow_is_counted() -> None:
    book = _book(per_camera=True, max_camera_classifiers=2)
    before = metrics.KIND_CAMERAS_FULL._value.get()
    for cam in ("c1", "c2", "c3"):
        for i in range(7):
            _label(book, cam, i, "bike")
    assert sorted(book.cameras) == ["c1", "c2"]
    assert metrics.KIND_CAMERAS_FULL._value.get() - before == 7
    assert book.classifier.n_labels == 21 and book.classifier_for("c3")[1] == "site"


def test_camera_of_alert_keeps_colons_in_camera_ids() -> None:
    assert camera_of_alert("site:gate:7:1700000000000") == "site:gate"
    assert camera_of_alert("lobby:0:0") == "lobby"
