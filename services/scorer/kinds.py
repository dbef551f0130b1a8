"""Kinds for alerts, learnt online from operators' labels (issue #17; docs/classifier.md).

:class:`KindBook` holds the site's :class:`~vigil.model.classify.KindClassifier` inside the scorer (and, with
``per_camera``, one per camera, at most ``max_camera_classifiers``; a camera's own answers once it has
``min_labels`` labels, the site's before):

* every score the scorer processes is remembered per camera (a bounded ring of ``(seq, score, motion)``), so an
  alert's features cover its own frames (:func:`~vigil.model.classify.alert_features`);
* every alert change gets ``kind``, ``kind_confidence``, ``kind_labels`` and ``suppressed`` before it is written;
  its features are stored beside it (``vigil:alert-features:<id>``, with a TTL) so that a label given later in the
  console can be learnt from them;
* labels arrive on the ``vigil:labels`` stream (written by :func:`vigil.services.scorer.alerts.label`, the one
  function the API and ``vigil alerts label`` use) and are read every ``refresh_s``; each is validated (a bad one
  is counted and skipped, never fatal).

A scorer restarted reads the whole (capped) label stream again, so the classifier needs no saved state.
The frame rings are lost on a restart; an alert open across it has features from its own fields only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from vigil.model.classify import UNKNOWN, FrameObs, KindClassifier, alert_features
from vigil.services.scorer import metrics
from vigil.services.scorer.settings import KindSettings
from vigil.services.scorer.state import PendingAlert
from vigil.shared.redis_keys import LABELS_STREAM, alert_features_key

log = logging.getLogger(__name__)

_KIND = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_FEATURES = 64
FRAMES_PER_CAMERA = 600
"""Scores remembered per camera for alert features (60 s at 10 fps; an older part of a long alert is left out)."""


def parse_label_entry(fields: dict[Any, Any]) -> tuple[str, str, dict[str, float]] | None:
    """``(alert_id, kind, features)`` of one ``vigil:labels`` entry, or None when it is unusable.

    Example:
        >>> parse_label_entry({b"alert_id": b"cam:1:2", b"kind": b"bike", b"features": b'{"peak_score": 4.5}'})
        ('cam:1:2', 'bike', {'peak_score': 4.5})
        >>> parse_label_entry({b"alert_id": b"cam:1:2", b"kind": b"Bike!", b"features": b"{}"}) is None
        True
    """
    text = {(k.decode() if isinstance(k, bytes) else str(k)): (v.decode("utf-8", "replace") if isinstance(v, bytes)
            else str(v)) for k, v in fields.items()}  # fmt: skip
    alert_id, kind = text.get("alert_id", ""), text.get("kind", "")
    if not alert_id or len(alert_id) > 200 or not _KIND.match(kind) or len(text.get("features", "")) > 8192:
        return None
    try:
        raw = json.loads(text.get("features") or "null")
    except ValueError:
        return None
    if not isinstance(raw, dict) or not raw or len(raw) > MAX_FEATURES:
        return None
    feats: dict[str, float] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _NAME.match(name) or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(float(value)):
            return None
        feats[name] = float(value)
    return alert_id, kind, feats


def camera_of_alert(alert_id: str) -> str:
    """The camera of an alert id (``<camera>:<start seq>:<start ms>``, :meth:`vigil.shared.schemas.Alert.make_id`).

    Example:
        >>> camera_of_alert("gate:north:120:1700000000000")
        'gate:north'
    """
    return alert_id.rsplit(":", 2)[0]


class KindBook:
    """The site's kind classifier, the per-camera score rings and the features waiting to be stored.

    Args:
        client: A ``redis.asyncio.Redis`` client.
        settings: The scorer's classifier settings.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(self, client: Any, settings: KindSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.classifier = self._new_classifier()
        self.cameras: dict[str, KindClassifier] = {}
        self.frames: dict[str, deque[tuple[int, FrameObs]]] = {}
        self.pending: dict[str, dict[str, float]] = {}
        self._last_id = "0-0"
        self._next_refresh = 0.0

    def _new_classifier(self) -> KindClassifier:
        s = self.settings
        return KindClassifier(min_labels=s.min_labels, min_per_kind=s.min_per_kind,
                              suppress_confidence=s.suppress_confidence, score_margin=s.score_margin)

    def classifier_for(self, camera_id: str) -> tuple[KindClassifier, str]:
        """The classifier that answers for a camera, and which one it is (``camera`` or ``site``).

        With ``per_camera``, a camera's own classifier answers once it holds ``min_labels`` labels; before that,
        and always without ``per_camera``, the site's classifier (which learns every label) answers.
        """
        own = self.cameras.get(camera_id)
        if own is not None and own.n_labels >= self.settings.min_labels:
            return own, "camera"
        return self.classifier, "site"

    def observe(self, camera_id: str, seq: int, score: float, motion: float) -> None:
        """Remember one scored frame of a camera (bounded ring)."""
        ring = self.frames.get(camera_id)
        if ring is None:
            ring = self.frames[camera_id] = deque(maxlen=FRAMES_PER_CAMERA)
        ring.append((seq, FrameObs(float(score), float(motion) if math.isfinite(motion) else 0.0)))

    def forget(self, camera_id: str) -> None:
        """Drop a camera's ring (it went idle or moved to another scorer)."""
        self.frames.pop(camera_id, None)

    def annotate(self, p: PendingAlert, peak_map: np.ndarray | None = None) -> PendingAlert:
        """The alert change with its predicted kind (and suppression); its features are queued for Redis.

        ``peak_map`` is the error map of the event's peak frame (the scorer keeps it with the open event), for the
        error statistics inside the alert's box; without it those features are 0."""
        a = p.alert
        last = a.end_seq if a.end_seq is not None else (a.trigger_seq if a.trigger_seq is not None else a.peak_seq)
        frames = [obs for seq, obs in self.frames.get(a.camera_id, ()) if a.start_seq <= seq <= last]
        feats = alert_features(a, frames, peak_map=peak_map)
        classifier, scope = self.classifier_for(a.camera_id)
        pred = classifier.predict(feats)
        suppressed = bool(pred.suppress and self.settings.suppress)
        metrics.KIND_PREDICTIONS.labels("suppressed" if suppressed else "unknown" if pred.kind == UNKNOWN else "known").inc()
        if suppressed:
            log.info("camera %s: alert %s %s predicted %s by the %s classifier (%.2f, %d labels): suppressed (%s)",
                     a.camera_id, a.alert_id, a.event, pred.kind, scope, pred.confidence, pred.n_labels, pred.reason)  # fmt: skip
        if len(self.pending) < 10_000:
            self.pending[a.alert_id] = feats
        update = {"kind": pred.kind, "kind_confidence": round(min(max(pred.confidence, 0.0), 1.0), 4),
                  "kind_labels": pred.n_labels, "suppressed": suppressed}  # fmt: skip
        return dataclasses.replace(p, alert=a.model_copy(update=update))

    async def store_features(self) -> None:
        """Write the queued features (``SET ... EX``); on a Redis error they are dropped and counted."""
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        try:
            pipe = self.client.pipeline(transaction=False)
            for alert_id, feats in pending.items():
                pipe.set(alert_features_key(alert_id), json.dumps(feats), ex=self.settings.features_ttl_s)
            await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - features are for later labels, never worth an alert
            metrics.KIND_FEATURES_DROPPED.inc(len(pending))
            log.warning("alert features not stored (%s: %s); labels of those alerts will not teach the classifier",
                        type(exc).__name__, str(exc)[:200])  # fmt: skip

    async def refresh(self, force: bool = False) -> int:
        """Learn the labels added since the last call (at most every ``refresh_s``); returns how many were learnt."""
        now = self.clock()
        if not force and now < self._next_refresh:
            return 0
        self._next_refresh = now + self.settings.refresh_s
        learnt = 0
        try:
            while True:
                entries = await self.client.xrange(LABELS_STREAM, min=f"({self._last_id}", count=500)
                for entry_id, fields in entries:
                    self._last_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    learnt += self._learn(fields)
                if len(entries) < 500:
                    break
        except Exception as exc:  # noqa: BLE001 - labels are read again at the next refresh
            log.warning("labels not read (%s: %s); retrying in %.0f s", type(exc).__name__, str(exc)[:200], self.settings.refresh_s)
        metrics.KIND_LABELS.set(self.classifier.n_labels)
        return learnt

    def _learn(self, fields: dict[Any, Any]) -> int:
        parsed = parse_label_entry(fields)
        if parsed is None:
            metrics.LABELS_SKIPPED.inc()
            return 0
        alert_id, kind, feats = parsed
        self.classifier.learn(feats, kind, alert_id)
        if self.settings.per_camera:
            self._learn_camera(camera_of_alert(alert_id), feats, kind, alert_id)
        return 1

    def _learn_camera(self, camera_id: str, feats: dict[str, float], kind: str, alert_id: str) -> None:
        own = self.cameras.get(camera_id)
        if own is None:
            if len(self.cameras) >= self.settings.max_camera_classifiers:
                metrics.KIND_CAMERAS_FULL.inc()
                return
            own = self.cameras[camera_id] = self._new_classifier()
        own.learn(feats, kind, alert_id)
