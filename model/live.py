"""The live scoring path, replayed: score messages through :class:`CameraScoring`, and what came out.

:func:`replay` steps each clip (a camera with a fresh state) through the one scoring core exactly as the
scorer service does, causally, frame by frame, with the event rules. :func:`frame_metrics` and
:func:`event_metrics` measure the result against frame labels: frame AUC, and per clip whether an alert
overlapped the labelled span, how long after the span's start it opened, and how many alerts were false.
``vigil evaluate``, ``vigil score``, ``vigil demo --clips all`` and ``vigil bench scorer`` use these.

Example:
    >>> rng = np.random.default_rng(0)
    >>> normal = lambda: {"error": rng.lognormal(-7, 0.1, (6, 8))}
    >>> obs = lambda n, bad=(): [Observation(i, i * 10**8, i < 3, {"error": normal()["error"] * (30 if i in bad else 1)})
    ...                          for i in range(n)]
    >>> params = ScoringParams(threshold_margin=1.0)  # independent noise: a smoother score than real video's
    >>> cal = calibrate([obs(300)], params, cell_px=8)
    >>> out = replay({"clip": obs(100, bad=range(40, 70))}, cal, params)
    >>> [(e.start_seq // 10, e.open_seq // 10) for e in out["clip"].events]
    [(4, 4)]
    >>> m = event_metrics({"clip": (np.arange(100) >= 40) & (np.arange(100) < 70)}, out, fps=10)
    >>> m["recall"], m["false_alerts"]
    ('1/1', 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vigil.model.alerting import CameraScoring, Observation, ZoneMask, calibrate
from vigil.model.baseline import Calibration
from vigil.model.roc import roc_auc
from vigil.shared.scorer_params import EventParams, ScoringParams

__all__ = ["DEMO_CAMERAS", "ClipReplay", "Event", "calibrate", "camera_playlists", "event_metrics", "frame_metrics", "replay",
           "replay_playlists"]


@dataclass(frozen=True)
class Event:
    """One alert: first frame of the event, the frame whose score opened it, last frame above (inclusive)."""

    start_seq: int
    open_seq: int
    end_seq: int
    peak_score: float
    box: tuple[float, float, float, float] | None = None


@dataclass
class ClipReplay:
    """What the scoring core made of one clip.

    Attributes:
        scores: ``(T,)`` smoothed score; warm-up frames get 0.0 (a typical normal frame: the core centres
            normal scores on 0).
        warmup: ``(T,)`` bool, the frames the worker marked as warm-up (no score).
        events: The alerts, in order.
    """

    scores: np.ndarray
    warmup: np.ndarray
    events: list[Event] = field(default_factory=list)


def replay(clips: dict[str, list[Observation]], calibration: Calibration | None, params: ScoringParams | None = None,
           events: EventParams | None = None, zones: ZoneMask | None = None, adapt: bool = True) -> dict[str, ClipReplay]:
    """Step every clip, each from a fresh camera state, through the scoring core; events closed at the end.
    ``adapt=False`` keeps a calibrated camera's level and statistics at the calibration's (the service follows
    them: see :meth:`CameraScoring._follow`)."""
    params, events = params or ScoringParams(), events or EventParams()
    out = {}
    for name, observations in clips.items():
        cam = CameraScoring(params, events, calibration, zones, adapt=adapt)
        scores, warm = np.zeros(len(observations)), np.zeros(len(observations), bool)
        opened: dict[int, int] = {}
        found: list[Event] = []
        for t, obs in enumerate(observations):
            v = cam.step(obs)
            warm[t] = v.score is None
            scores[t] = 0.0 if v.score is None else v.score
            for c in v.changes:
                if c.kind == "open":
                    opened[c.start_seq] = obs.seq
                elif c.kind == "close" and c.start_seq in opened:
                    found.append(_event(c, opened.pop(c.start_seq), c.end_seq or obs.seq))
        live = cam.events.event
        if live is not None and live.announced and live.start_seq in opened:
            found.append(Event(live.start_seq, opened[live.start_seq], live.last_above_seq, live.peak_score,
                               _box(live.peak_heat)))
        out[name] = ClipReplay(scores, warm, sorted(found, key=lambda e: e.open_seq))
    return out


DEMO_CAMERAS = 3
"""Cameras ``vigil demo --clips all`` deals the test clips to by default (and ``vigil evaluate``'s replay of it)."""


def camera_playlists(clips: Sequence[str], cameras: int, interludes: Sequence[str] = ()) -> list[list[str]]:
    """``vigil demo --clips all``'s arrangement: the clips dealt round-robin to ``cameras`` cameras, each camera
    playing its own back to back, with a normal clip (the next of ``interludes``, in turn) between two of them.

    Example:
        >>> camera_playlists(["A", "B", "C", "D", "E"], 2, ("n1", "n2"))
        [['A', 'n1', 'C', 'n2', 'E'], ['B', 'n1', 'D']]
    """
    out = []
    for i in range(min(cameras, len(clips))):
        playlist: list[str] = []
        for j, clip in enumerate(clips[i::cameras]):
            if j and interludes:
                playlist.append(interludes[(j - 1) % len(interludes)])
            playlist.append(clip)
        out.append(playlist)
    return out


def replay_playlists(clips: dict[str, list[Observation]], playlists: list[list[str]], calibration: Calibration | None,
                     params: ScoringParams | None = None, events: EventParams | None = None,
                     adapt: bool = True) -> list[list[tuple[str, ClipReplay]]]:
    """Each playlist as one long-running camera: its clips stepped back to back through one scoring state, so
    the level it follows, its open events and its cooldowns carry from clip to clip as in the service (each clip
    still starts with the worker's warm-up, as after a reconnect); then split back into clips.

    Returns:
        Per playlist, ``(clip, replay)`` in order, with clip-relative frame numbers (positions in the clip); an
        alert belongs to the clip its opening frame is in (an alert that runs on into the next clip is that
        earlier clip's; ``vigil demo`` also counts it as a hit for the later clip when it overlaps its span).
    """
    out = []
    for playlist in playlists:
        joined, starts = _joined([clips[n] for n in playlist])
        whole = replay({"camera": joined}, calibration, params, events, adapt=adapt)["camera"]
        parts = []
        for name, a, b in zip(playlist, starts, [*starts[1:], len(joined)], strict=True):
            mine = [replace(e, start_seq=max(e.start_seq - a, 0), open_seq=e.open_seq - a, end_seq=e.end_seq - a)
                    for e in whole.events if a <= e.open_seq < b]
            parts.append((name, ClipReplay(whole.scores[a:b], whole.warmup[a:b], mine)))
        out.append(parts)
    return out


def _joined(clips: list[list[Observation]]) -> tuple[list[Observation], list[int]]:
    """The clips as one stream: frames numbered by their position in it (a clip's own numbers may have gaps),
    capture times continued from clip to clip (one frame period between a clip's last frame and the next one's
    first; a live camera's reconnect takes longer, about 1 s in the demo, which counts towards a cooldown); and
    where each clip starts."""
    joined: list[Observation] = []
    starts: list[int] = []
    next_ns = 0
    for obs in clips:
        starts.append(len(joined))
        if not obs:
            continue
        period = int(np.median(np.diff([o.capture_ns for o in obs]))) if len(obs) > 1 else 100_000_000
        first, base_ns = len(joined), obs[0].capture_ns
        joined += [replace(o, seq=first + i, capture_ns=next_ns + o.capture_ns - base_ns) for i, o in enumerate(obs)]
        next_ns += obs[-1].capture_ns - base_ns + max(period, 1)
    return joined, starts


def _box(peak: object) -> tuple[float, float, float, float] | None:
    return tuple(peak["box"]) if isinstance(peak, dict) and "box" in peak else None  # type: ignore[return-value]


def _event(change: Any, open_seq: int, end_seq: int) -> Event:
    return Event(change.start_seq, open_seq, end_seq, change.peak_score, _box(change.peak_heat))


def frame_metrics(labels: dict[str, np.ndarray], replays: dict[str, ClipReplay]) -> dict[str, float]:
    """Frame AUC pooled over clips: on every frame (warm-up frames scored 0), and on scored frames only."""
    names = [n for n in labels if n in replays]
    y = np.concatenate([labels[n][: len(replays[n].scores)] for n in names]).astype(bool)
    s = np.concatenate([replays[n].scores[: len(labels[n])] for n in names])
    scored = ~np.concatenate([replays[n].warmup[: len(labels[n])] for n in names])
    return {"auc_all_frames": roc_auc(y, s), "auc_scored_frames": roc_auc(y[scored], s[scored]),
            "frames": int(len(y)), "anomalous_frames": int(y.sum()), "warmup_frames": int((~scored).sum())}


def event_metrics(labels: dict[str, np.ndarray], replays: dict[str, ClipReplay], fps: float) -> dict[str, Any]:
    """Per clip: alerts, whether one overlapped the labelled span (recall), false alerts (overlapping no labelled
    frame), and the delay from the span's first *scored* frame to the first true alert's opening frame."""
    per_clip, delays, hits, anomalous, true_alerts, total = {}, [], 0, 0, 0, 0
    for name, lab in labels.items():
        r = replays[name]
        lab = np.asarray(lab[: len(r.scores)], bool)
        good = [e for e in r.events if lab[e.start_seq:e.end_seq + 1].any()]
        total, true_alerts = total + len(r.events), true_alerts + len(good)
        row: dict[str, Any] = {"alerts": len(r.events), "false_alerts": len(r.events) - len(good)}
        if lab.any():
            anomalous += 1
            first = int(np.flatnonzero(lab & ~r.warmup)[0]) if (lab & ~r.warmup).any() else int(np.flatnonzero(lab)[0])
            if good:
                hits += 1
                row["delay_s"] = max(0, good[0].open_seq - first) / fps
                delays.append(row["delay_s"])
        per_clip[name] = row
    return {
        "recall": f"{hits}/{anomalous}", "clips_alerted": hits, "anomalous_clips": anomalous,
        "alerts": total, "true_alerts": true_alerts, "false_alerts": total - true_alerts,
        "precision": true_alerts / total if total else float("nan"),
        "median_delay_s": float(np.median(delays)) if delays else float("nan"), "per_clip": per_clip,
    }  # fmt: skip


def per_clip_minmax(replays: dict[str, ClipReplay]) -> dict[str, np.ndarray]:
    """The literature's protocol, for comparison only: each clip's scores rescaled to [0, 1] with its own
    minimum and maximum over its scored frames (uses the future); warm-up frames get the clip's median."""
    out = {}
    for name, r in replays.items():
        s, scored = r.scores.copy(), ~r.warmup
        lo, hi = (s[scored].min(), s[scored].max()) if scored.any() else (0.0, 0.0)
        norm = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
        norm[~scored] = float(np.median(norm[scored])) if scored.any() else 0.0
        out[name] = norm
    return out
