"""The one scoring core: a camera's score messages in, anomaly scores and alert events out.

The scorer service, ``vigil evaluate``, ``vigil score``, ``vigil calibrate`` and the benchmarks all
step a :class:`CameraScoring` per camera with the score messages the worker publishes (or
bit-identical replays of them, :mod:`vigil.model.replay`), causally, frame by frame. What is measured
is what operators get.

Per frame:

1. **Zones.** Only the patches wholly inside the camera's ``include`` polygons (all, when there are
   none) and outside its ``exclude`` polygons are scored (:class:`ZoneMask`): the maxima below are taken
   over those patches only. The scene's overall level (5) is still measured on the whole frame.
2. **Per-location z.** For each map and each 2x2-cell window (a 16x16-pixel patch),
   ``z = (log(window + eps) - mean - gain) / std`` with the location's normal statistics
   (:class:`vigil.model.baseline.LocationStats`) and the map's current global ``gain`` (see 5).
3. **Fusion.** Per location, ``z_error + z_motion``: a patch scores high when it is badly predicted,
   unusually fast for that place, or both. The frame's raw score is the largest over locations, and its
   location gives the alert's box.
4. **Smoothing and threshold.** The score is the mean raw score of the last ``smooth`` frames (0.5 s);
   a frame is above when the score reaches the threshold and is a full window's mean (``full_window``:
   after a fresh state the first ``smooth - 1`` scores average fewer, noisier frames and never alert). The event rules (:mod:`vigil.model.events`:
   k of n frames to open, m below to close, cooldown) turn that into alerts.
5. **Drift and the daily cycle**, learned only from *confidently normal* frames (score below
   ``threshold - learn_margin``, no event open): a fast global ``gain`` per map (the median over
   locations of the log-level shift; it follows a busy afternoon or a dark evening within minutes), and
   slow per-location statistics (hours). Frames above the threshold and whole events are never learned,
   so a long incident never becomes the baseline; only a recalibration (``vigil calibrate``, an
   operator's decision) changes what is normal.

A camera whose model has a calibration starts from it and scores from its first frame after the
worker's warm-up. A camera without one (``mode == "online"``) learns its statistics from its first
``grace_frames`` frames and cannot alert meanwhile; ``vigil cameras status`` shows which mode each
camera is in.

All state is numpy arrays and numbers, serialised with :meth:`CameraScoring.to_dict` to plain JSON
types (never pickled), and every per-camera structure is bounded.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from vigil.model.baseline import MAPS, Calibration, LocationStats
from vigil.model.events import Change, EventTracker, Frame
from vigil.shared.scorer_params import EventParams, ScoringParams

Mode = Literal["calibrated", "online"]
Status = Literal["warmup", "learning", "normal", "alert"]
STATE_VERSION = 1
MAX_PEAKS = 1000
"""Peaks a camera without calibration records in its grace period (bounded, whatever ``grace_frames``)."""


@dataclass(frozen=True)
class Observation:
    """What the core needs of one score message.

    Attributes:
        seq: Sequence number.
        capture_ns: Capture time (ns); event times come from it, never from the wall clock.
        warmup: The worker's state is fresh: no alert on this frame.
        maps: ``{"error": (h, w), "motion": (h, w)}`` float cell grids (``motion`` may be absent).
        frame_size: ``(width, height)`` of the frame in pixels, when known (for the box in pixels).
    """

    seq: int
    capture_ns: int
    warmup: bool
    maps: dict[str, np.ndarray]
    frame_size: tuple[int, int] | None = None

    @classmethod
    def from_message(cls, msg: Any) -> Observation:
        """From a :class:`vigil.shared.schemas.ScoreMessage` (maps dequantised)."""
        maps = {}
        if (heat := msg.heatmap()) is not None:
            maps["error"] = heat
        if (flow := msg.motion_map()) is not None:
            maps["motion"] = flow
        size = (msg.frame_width, msg.frame_height) if msg.frame_width and msg.frame_height else None
        return cls(msg.seq, msg.capture_ns, msg.warmup, maps, size)


@dataclass(frozen=True)
class Verdict:
    """What one frame did.

    Attributes:
        status: ``warmup`` (worker state fresh), ``learning`` (online mode, grace period), ``normal``, or
            ``alert`` (an announced event is open).
        score: Smoothed anomaly score (None while warming up or learning).
        raw: This frame's unsmoothed score.
        threshold: The threshold the score was compared with.
        above: Whether the score reached the threshold.
        box: ``(x0, y0, x1, y1)`` of the highest-scoring patch as fractions of the frame.
        changes: Event changes this frame caused (open / update / close).
    """

    status: Status
    score: float | None = None
    raw: float | None = None
    threshold: float | None = None
    above: bool = False
    box: tuple[float, float, float, float] | None = None
    changes: tuple[Change, ...] = ()


@dataclass
class ZoneMask:
    """Which cells of a camera's maps are scored, from its include / exclude polygons.

    Polygons are lists of ``(x, y)`` points as fractions of the frame (0..1), so they survive a
    resolution change. A cell is scored when at least half of it lies inside an ``include`` polygon (or
    there are none) and less than half inside ``exclude`` polygons.

    Example:
        >>> m = ZoneMask(exclude=[[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]])
        >>> m.cells((2, 4)).astype(int).tolist()
        [[0, 0, 1, 1], [0, 0, 1, 1]]
    """

    include: list[list[tuple[float, float]]] = field(default_factory=list)
    exclude: list[list[tuple[float, float]]] = field(default_factory=list)

    def cells(self, grid: tuple[int, int]) -> np.ndarray:
        """``(h, w)`` bool: True where a cell is scored."""
        inc = _coverage(self.include, grid) >= 0.5 if self.include else np.ones(grid, bool)
        return inc & (_coverage(self.exclude, grid) < 0.5)

    def windows(self, grid: tuple[int, int]) -> np.ndarray:
        """``(h - 1, w - 1)`` bool: the scored patches (2x2 cells wholly scored; when a zone is smaller than a
        patch, the patches that touch it)."""
        cells = self.cells(grid)
        windows = cells[:-1, :-1] & cells[1:, :-1] & cells[:-1, 1:] & cells[1:, 1:]
        return windows if windows.any() else cells[:-1, :-1] | cells[1:, :-1] | cells[:-1, 1:] | cells[1:, 1:]

    def to_dict(self) -> dict[str, Any]:
        """Plain lists."""
        return {"include": [[list(p) for p in poly] for poly in self.include],
                "exclude": [[list(p) for p in poly] for poly in self.exclude]}


def _coverage(polygons: list[list[tuple[float, float]]], grid: tuple[int, int], sub: int = 8) -> np.ndarray:
    """Fraction of each cell covered by the union of ``polygons`` (rasterised at ``sub`` x the grid)."""
    import cv2

    h, w = grid
    canvas = np.zeros((h * sub, w * sub), np.uint8)
    for poly in polygons:
        pts = np.array([[x * w * sub, y * h * sub] for x, y in poly], np.float64)
        cv2.fillPoly(canvas, [np.rint(pts).astype(np.int32)], 1)
    return canvas.reshape(h, sub, w, sub).mean(axis=(1, 3))


class CameraScoring:
    """One camera's scoring state (see the module docstring).

    Args:
        params: Scoring parameters.
        events: Event rules.
        calibration: The camera's calibration, or None to learn online.
        zones: Include / exclude polygons, or None.
        adapt: Follow drift from confidently normal frames (off while calibrating).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> normal = lambda: {"error": rng.lognormal(-7, 0.2, (6, 8)), "motion": rng.lognormal(-3, 0.2, (6, 8))}
        >>> cal = calibrate([[Observation(i, i * 10**8, False, normal()) for i in range(300)]],
        ...                 ScoringParams(), cell_px=8)
        >>> cam = CameraScoring(ScoringParams(), EventParams(min_duration_s=0), cal)
        >>> [cam.step(Observation(i, i * 10**8, False, normal())).status for i in range(3)]
        ['normal', 'normal', 'normal']
        >>> bike = normal(); bike["motion"][2:4, 3:5] *= 40; bike["error"][2:4, 3:5] *= 40
        >>> verdicts = [cam.step(Observation(i, i * 10**8, False, bike)) for i in range(3, 12)]
        >>> verdicts[-1].status, verdicts[-1].box
        ('alert', (0.375, 0.3333333333333333, 0.625, 0.6666666666666666))
    """

    def __init__(self, params: ScoringParams, events: EventParams, calibration: Calibration | None = None,
                 zones: ZoneMask | None = None, adapt: bool = True) -> None:
        self.params = params
        self.adapt = adapt
        self.events = EventTracker(events)
        self.calibration = calibration
        self.zones = zones
        self.mode: Mode = "calibrated" if calibration is not None else "online"
        self.stats: dict[str, LocationStats] = (
            {k: replace(v, mean=v.mean.copy(), var=v.var.copy()) for k, v in calibration.stats.items()}
            if calibration is not None else {}
        )  # fmt: skip
        self.gain: dict[str, float] = {k: 0.0 for k in self.stats}
        self.recent: deque[float] = deque(maxlen=params.smooth)
        self.learned = 0
        self.peaks: dict[str, list[tuple[float, float]]] = {}
        self._mask_cache: tuple[tuple[int, int], np.ndarray] | None = None

    @property
    def threshold(self) -> float | None:
        """The alert threshold in score units (None while an online camera is still learning)."""
        if self.calibration is not None:
            return self.calibration.threshold + self.params.threshold_offset
        return self.params.online_threshold if self.learned >= self.params.grace_frames else None

    def step(self, obs: Observation, evidence: Callable[[], dict[str, Any] | None] | None = None) -> Verdict:
        """Score one frame, update the events, and learn from it when it is confidently normal.

        Args:
            obs: The frame.
            evidence: Returns JSON-ready data the caller wants back with the event's peak frame (e.g. the
                service's heat map for the snapshot); called only for frames above the threshold.
        """
        if obs.warmup or "error" not in obs.maps:
            self.recent.clear()
            changes = self._track(obs, None, False, self.threshold) if self.events.event is not None else ()
            return Verdict("warmup", changes=changes)
        maps = obs.maps
        self._zone_cells(maps["error"].shape)
        threshold = self.threshold
        if threshold is None:
            self._learn_online(maps)
            return Verdict("learning")
        logs = {k: self.stats[k].logs(m) for k, m in maps.items() if k in self.stats}
        bases = {k: self.stats[k].baseline() for k in logs}  # once per frame: z and the gain both use it
        raw, where = self._raw(logs, bases)
        self.recent.append(raw)
        score = float(np.mean(self.recent))
        above = score >= threshold and (len(self.recent) == self.params.smooth or not self.params.full_window)
        box = self._box(where, maps["error"].shape)
        peak = {"box": list(box), **((evidence and evidence()) or {})} if above else None
        changes = self._track(obs, score, above, threshold, peak)
        if self.adapt:
            self._follow(logs, bases, confident=self.events.event is None and score < threshold - self.params.learn_margin)
        status: Status = "alert" if self.events.open_start_seq is not None else "normal"
        return Verdict(status, score, raw, threshold, above, box, changes)

    def _zone_cells(self, grid: tuple[int, int]) -> None:
        """Rasterise the zones onto this grid once (again if the grid changes)."""
        if self.zones is not None and (self._mask_cache is None or self._mask_cache[0] != grid):
            self._mask_cache = (grid, self.zones.windows(grid))


    def _where(self) -> np.ndarray | None:
        """The scored locations (patches wholly inside the zones), or None for all."""
        return None if self._mask_cache is None else self._mask_cache[1]

    def _raw(self, logs: dict[str, np.ndarray], bases: dict[str, np.ndarray]) -> tuple[float, tuple[int, int]]:
        """The frame's fused z over the scored locations, and where its strongest cue is."""
        zs = {k: self._scored(self.stats[k].z(v, self.gain.get(k, 0.0), bases[k])) for k, v in logs.items()}
        if self.params.spread < 0:  # each map's largest z, wherever it is
            peaks = {k: float(z.max()) for k, z in zs.items()}
            top = max(peaks, key=peaks.__getitem__)
            value, flat = sum(peaks.values()), int(np.argmax(zs[top]))
        else:
            fused = sum(_spread(z, self.params.spread) for z in zs.values())
            flat = int(np.argmax(fused))
            value = float(fused.flat[flat])
        grid_w = next(iter(zs.values())).shape[1]
        return (value if math.isfinite(value) else 0.0), divmod(flat, grid_w)

    def _scored(self, z: np.ndarray) -> np.ndarray:
        """``z`` with the locations outside the zones at -inf."""
        where = self._where()
        return z if where is None else np.where(where, z, -np.inf)

    @staticmethod
    def _box(where: tuple[int, int], grid: tuple[int, int]) -> tuple[float, float, float, float]:
        r, c = where
        h, w = grid
        return (c / w, r / h, (c + 2) / w, (r + 2) / h)

    def _track(self, obs: Observation, score: float | None, above: bool, threshold: float | None,
               peak: dict[str, Any] | None = None) -> tuple[Change, ...]:
        frame = Frame(obs.seq, obs.capture_ns, score if score is not None else 0.0, above,
                      threshold if threshold is not None else math.inf, peak)
        return tuple(self.events.step(frame))

    def _follow(self, logs: dict[str, np.ndarray], bases: dict[str, np.ndarray], confident: bool) -> None:
        """Follow the daily cycle (every frame) and slow drift (confidently normal frames only).

        The global gain is the median over locations of the level shift, which a local incident (a bike
        covers a few patches) does not move, so it learns from every frame; it is bounded by
        ``max_gain``. The per-location statistics learn only from confidently normal frames, and only
        their spatial pattern (each frame minus its own mean over locations, re-anchored at the
        statistics' mean), so the two never absorb the same change, and learning only quiet frames
        cannot drag the overall level down.
        """
        p = self.params
        for k, v in logs.items():
            s = self.stats[k]
            gain = (1 - p.gain_fading) * self.gain.get(k, 0.0) + p.gain_fading * s.overall(v, bases[k])
            self.gain[k] = float(np.clip(gain, -p.max_gain, p.max_gain))
            if confident:  # the spatial pattern only, re-anchored at today's mean: the overall level is the gain's
                s.learn(v - float(v.mean()) + float(s.mean.mean()), p.fading_factor)

    def _learn_online(self, maps: dict[str, np.ndarray]) -> None:
        """Grace period of a camera without calibration: learn the statistics from the live frames.

        The first half learns each location's mean; the second half records the frame's largest excess
        (at most :data:`MAX_PEAKS` of them), and at the end the centre and scale are their median and
        scaled MAD: robust, because nobody has vetted this footage (an incident during the grace period
        must not widen the camera's notion of normal).
        """
        half = self.params.grace_frames // 2
        for k, m in maps.items():
            if k not in MAPS:
                continue
            if k not in self.stats:
                eps = self.params.log_eps or float(np.median(m))
                self.stats[k] = LocationStats.empty(m.shape, eps, self.params.location_weight, self.params.min_std)
                self.gain[k] = 0.0
            s = self.stats[k]
            logs = s.logs(m)
            if self.learned < half:
                s.learn(logs, max(1.0 / (s.n + 1), self.params.fading_factor))
                s.n += 1
            elif (self.learned - half) % max(1, half // MAX_PEAKS) == 0:
                excess = logs - s.baseline()
                where = self._where()
                peak = float((excess if where is None else excess[where]).max())
                self.peaks.setdefault(k, []).append((peak, float(np.median(excess))))
        self.learned += 1
        if self.learned >= self.params.grace_frames:
            self._settle()

    def _settle(self) -> None:
        """End of the grace period: robust centre, scale and level of each map from the recorded peaks."""
        for k, rows in self.peaks.items():
            peaks, medians = np.array(rows).T
            s = self.stats[k]
            s.centre, s.level = float(np.median(peaks)), float(np.median(medians))
            s.scale = max(1.4826 * float(np.median(np.abs(peaks - s.centre))), self.params.min_std)
        self.peaks = {}

    def to_dict(self) -> dict[str, Any]:
        """The camera's whole scoring state as plain JSON types (arrays as nested lists)."""
        return {
            "version": STATE_VERSION, "mode": self.mode, "learned": self.learned, "recent": list(self.recent),
            "gain": dict(self.gain), "stats": {k: v.to_dict() for k, v in self.stats.items()},
            "peaks": {k: [list(r) for r in v] for k, v in self.peaks.items()},
            "events": self.events.to_dict(),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], params: ScoringParams, events: EventParams,
                  calibration: Calibration | None, zones: ZoneMask | None = None) -> CameraScoring:
        """Restore a state saved by :meth:`to_dict`; a state of another mode or version starts afresh.

        Raises:
            ValueError: The data is malformed (wrong types, non-finite numbers): the caller decides.
        """
        cam = cls(params, events, calibration, zones)
        if int(d.get("version", 0)) != STATE_VERSION or d.get("mode") != cam.mode:
            return cam
        cam.learned = int(d["learned"])
        cam.recent.extend(_finite(v) for v in d["recent"][-params.smooth:])
        stats = {k: LocationStats.from_dict(v) for k, v in d["stats"].items() if k in MAPS}
        if cam.mode == "online" or all(stats.get(k) is not None and stats[k].mean.shape == v.mean.shape
                                       for k, v in cam.stats.items()):
            cam.stats = stats
            cam.gain = {k: _finite(d["gain"].get(k, 0.0)) for k in stats}
        cam.peaks = {k: [(_finite(a), _finite(b)) for a, b in v[:MAX_PEAKS]] for k, v in d.get("peaks", {}).items() if k in MAPS}
        cam.events = EventTracker.from_dict(d["events"], events)
        return cam


def _spread(z: np.ndarray, radius: int) -> np.ndarray:
    """Largest z within ``radius`` windows of each location (a max filter): the error of a moving object
    peaks at its edges while its motion peaks on it, so the two maps' peaks can be a cell apart."""
    if radius <= 0 or not np.isfinite(z).any():
        return z
    import cv2

    return cv2.dilate(z.astype(np.float32), np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)).astype(np.float64)


def _finite(v: Any) -> float:
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"a scoring state holds a non-finite number: {f}")
    return f


def calibrate(clips: list[list[Observation]], params: ScoringParams, cell_px: int, source: str = "",
              zones: ZoneMask | None = None) -> Calibration:
    """A calibration from normal footage: one list of observations per clip or stream stretch.

    The location statistics pool every frame after the worker's warm-up; the threshold is the largest
    smoothed score those frames get from a camera that starts from these statistics (no learning), plus
    ``params.threshold_margin``, which the calibration records (``extra["threshold_margin"]``).
    """
    frames = [o for clip in clips for o in clip if not o.warmup and "error" in o.maps]
    if len(frames) < 2:
        raise ValueError(f"Calibration needs normal frames after the warm-up; got {len(frames)}. Give it more "
                         "footage (a folder of normal clips, or a longer stretch of the stream).")
    grid = frames[0].maps["error"].shape
    names = [k for k in MAPS if all(k in o.maps for o in frames)]
    scored = None if zones is None else zones.windows(grid)
    stats = {k: LocationStats.fit([o.maps[k] for o in frames], params.log_eps or None, params.location_weight,
                                  params.min_std, scored) for k in names}
    draft = Calibration(grid, cell_px, stats, math.inf, math.inf, len(frames), source)
    top = -math.inf
    for clip in clips:
        cam = CameraScoring(params, EventParams(), draft, zones, adapt=False)
        for o in clip:
            v = cam.step(o)
            if v.score is not None:
                top = max(top, v.score)
    return Calibration(grid, cell_px, stats, top + params.threshold_margin, top, len(frames), source,
                       {"threshold_margin": params.threshold_margin})


def with_warmup(clip: list[Observation], frames: int) -> list[Observation]:
    """The clip as the worker would mark it with a warm-up of ``frames`` after its state reset (clip start)."""
    return [replace(o, warmup=i < frames) for i, o in enumerate(clip)]


def choose_warmup(clips: list[list[Observation]], params: ScoringParams, cell_px: int, longest: int = 10,
                  tolerance: float = 0.01) -> tuple[int, list[float]]:
    """The worker's warm-up for a model, measured on normal footage: the first frame count at which the
    calibration threshold stops depending on it.

    A fresh recurrent state predicts badly for a few frames; while those frames are scored, they (not the
    scene) set the largest normal score, hence the threshold. For ``W = 1 .. longest`` the clips are
    calibrated with the first ``W`` frames of each as warm-up; the warm-up is the smallest ``W`` whose
    threshold differs from ``W + 1``'s by less than ``tolerance`` (relative). Needs normal footage only.

    Returns:
        The warm-up and the threshold for each ``W`` (for the model card).

    Example:
        >>> rng = np.random.default_rng(1)
        >>> clip = lambda: [Observation(i, i * 10**8, False, {"error": rng.lognormal(-7, 0.1, (6, 8)) * (50 if i < 2 else 1)})
        ...                 for i in range(80)]
        >>> w, thresholds = choose_warmup([clip(), clip()], ScoringParams(threshold_margin=1.0), cell_px=8, longest=5)
        >>> w, [round(t, 1) for t in thresholds]  # two bad frames, then the smoothing window's first frames
        (4, [10.0, 1.7, 2.0, 1.7, 1.7])
    """
    thresholds = []
    for w in range(1, longest + 1):
        cal = calibrate([with_warmup(c, w) for c in clips], params, cell_px)
        thresholds.append(cal.threshold)
    for w in range(1, longest):
        a, b = thresholds[w - 1], thresholds[w]
        if abs(b - a) <= tolerance * max(abs(a), 1e-9):
            return w, thresholds
    return longest, thresholds
