"""Score-stream simulator and the event-level evaluation used by `vigil bench scorer` and the tests.

A simulated camera's normal error level follows a daily curve (quiet nights, a busy day with morning
and evening rush peaks), drifts slowly over the weeks (e.g. a lens getting dirty), and carries
correlated multiplicative noise (AR(1) on the log error, as consecutive frames' errors are correlated).
Rare anomalies of random length (seconds to minutes) and strength multiply the local patch error
strongly and the frame error weakly (an anomaly covers a small part of the frame).

Example:
    >>> sim = simulate(SimConfig(days=0.01, seed=1))
    >>> sim.mse.shape == sim.patch_max.shape == sim.label.shape
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from vigil.model.events import Change, EventParams, EventTracker, Frame

DAY_S = 86_400


@dataclass(frozen=True)
class SimConfig:
    """One simulated camera (rates per day, times in seconds)."""

    days: float = 7.0
    fps: float = 1.0
    seed: int = 0
    base_mse: float = 0.002
    base_patch: float = 0.02
    night_level: float = 0.45
    rush_amp: float = 0.7
    drift_per_day: float = 0.04
    noise: float = 0.08
    patch_noise: float = 0.12
    ar: float = 0.9
    anomalies_per_day: float = 8.0
    anomaly_len_s: tuple[float, float] = (4.0, 240.0)
    strength: tuple[float, float] = (1.6, 4.0)
    start_hour: float = 0.0


@dataclass
class SimStream:
    """Simulated scores: times (ns), features, per-frame label and the injected spans (frame indices)."""

    t_ns: np.ndarray
    mse: np.ndarray
    patch_max: np.ndarray
    label: np.ndarray
    spans: list[tuple[int, int]] = field(default_factory=list)
    fps: float = 1.0


def daily_level(t_s: np.ndarray, cfg: SimConfig) -> np.ndarray:
    """Multiplier of the normal error level at times ``t_s`` (seconds since the start)."""
    h = (t_s / 3600.0 + cfg.start_hour) % 24
    day = 1.0 / (1 + np.exp(-(h - 6.5) * 2)) * 1.0 / (1 + np.exp((h - 21.0) * 2))
    rush = np.exp(-0.5 * ((h - 8.5) / 0.7) ** 2) + 0.8 * np.exp(-0.5 * ((h - 17.5) / 1.0) ** 2)
    level = cfg.night_level + (1 - cfg.night_level) * day + cfg.rush_amp * rush
    return level * (1 + cfg.drift_per_day) ** (t_s / DAY_S)


def _ar1(rng: np.random.Generator, n: int, ar: float, sd: float) -> np.ndarray:
    e = rng.normal(0, sd * math.sqrt(1 - ar * ar), n)
    out = np.empty(n)
    acc = rng.normal(0, sd)
    for i in range(n):  # plain loop: ~0.2 s per million frames
        acc = ar * acc + e[i]
        out[i] = acc
    return out


def simulate(cfg: SimConfig) -> SimStream:
    """Generate one camera's score stream."""
    rng = np.random.default_rng(cfg.seed)
    n = int(cfg.days * DAY_S * cfg.fps)
    t_s = np.arange(n) / cfg.fps
    level = daily_level(t_s, cfg)
    common = _ar1(rng, n, cfg.ar, cfg.noise)
    log_mse = np.log(cfg.base_mse * level) + common
    log_patch = np.log(cfg.base_patch * level) + 0.7 * common + _ar1(rng, n, cfg.ar, cfg.patch_noise)
    label = np.zeros(n, bool)
    spans = []
    n_anom = rng.poisson(cfg.anomalies_per_day * cfg.days)
    for start in np.sort(rng.integers(int(600 * cfg.fps), max(n - 1, int(600 * cfg.fps) + 1), n_anom)):
        length = int(math.exp(rng.uniform(*np.log(cfg.anomaly_len_s))) * cfg.fps)
        end = min(n - 1, start + max(length, 1) - 1)
        if label[max(0, start - int(120 * cfg.fps)) : end + 1].any():
            continue  # keep injected spans apart
        s = rng.uniform(*cfg.strength)
        label[start : end + 1] = True
        log_patch[start : end + 1] += math.log(s)
        log_mse[start : end + 1] += math.log(1 + (s - 1) * 0.05)
        spans.append((int(start), int(end)))
    t_ns = (t_s * 1e9).astype(np.int64)
    return SimStream(t_ns, np.exp(log_mse), np.exp(log_patch), label, spans, cfg.fps)


@dataclass(frozen=True)
class EvalResult:
    """Event-level outcome on a simulated stream (from ``eval_from`` on)."""

    false_alerts_per_day: float
    detected: float
    median_delay_s: float
    n_events: int
    n_spans: int


Detector = Callable[[float, float], tuple[float, bool, float]]
"""(mse, patch_max) -> (score, above, threshold); called once per frame, in order."""


def run_events(sim: SimStream, detector: Detector, params: EventParams) -> list[tuple[int, int, int]]:
    """Feed a stream through a detector and the event rules; returns (open_idx, start_idx, end_idx)."""
    tracker = EventTracker(params)
    log = _EventLog()
    last_above = -(10**9)
    for i in range(len(sim.mse)):
        score, above, thr = detector(float(sim.mse[i]), float(sim.patch_max[i]))
        if above:
            last_above = i
        elif tracker.event is None and i - last_above > params.n:
            tracker.window.clear()  # same as stepping: no above frame left in the window
            continue
        log.add(i, tracker.step(Frame(i, int(sim.t_ns[i]), score, above, thr)))
    return log.events(len(sim.mse) - 1)


class _EventLog:
    """Collects event changes into (open_idx, start_idx, end_idx); events still open end at the last frame."""

    def __init__(self) -> None:
        self._open: dict[int, int] = {}
        self._closed: list[tuple[int, int, int]] = []

    def add(self, i: int, changes: Iterable[Change]) -> None:
        """The changes frame ``i`` caused."""
        for c in changes:
            if c.kind == "open":
                self._open[c.start_seq] = i
            elif c.kind == "close":
                self._closed.append((self._open.pop(c.start_seq), c.start_seq, c.end_seq or i))

    def events(self, last: int) -> list[tuple[int, int, int]]:
        """Every event, the ones still open ending at frame ``last``."""
        return self._closed + [(o, s, last) for s, o in self._open.items()]


def evaluate(sim: SimStream, events: list[tuple[int, int, int]], eval_from: int = 0, slack_s: float = 30.0) -> EvalResult:
    """False alerts per day, share of injected spans alerted, and median detection delay."""
    slack = int(slack_s * sim.fps)
    spans = [s for s in sim.spans if s[0] >= eval_from]
    events = [e for e in events if e[0] >= eval_from]
    false = [e for e in events if not any(e[1] <= b + slack and e[2] >= a for a, b in spans)]
    delays = []
    for a, b in spans:
        opens = [o for o, s, e in events if a - slack <= o <= b + slack or (s <= b + slack and e >= a)]
        if opens:
            delays.append(max(0, min(opens) - a) / sim.fps)
    days = (len(sim.mse) - eval_from) / sim.fps / DAY_S
    return EvalResult(
        len(false) / days, len(delays) / max(1, len(spans)), float(np.median(delays)) if delays else float("nan"),
        len(events), len(spans),
    )  # fmt: skip


def score_messages(
    camera_id: str, sim: SimStream, start_seq: int = 0, warmup_frames: int = 0, heatmap: bool = True, t0_ns: int = 0,
    model_version: str = "1", seed: int = 0,
) -> list[bytes]:  # fmt: skip
    """Encode a simulated stream as score messages (the worker's wire format), one per frame.

    Each carries its error map (:func:`frame_maps`: the anomaly on one of :data:`PATHS`), quantised as the
    worker quantises it; ``heatmap=False`` sends features only (an old worker: the scorer cannot score it).
    """
    from vigil.model.messages import MAP_ENCODING
    from vigil.shared.schemas import ErrorFeatures, ScoreMessage

    rng = np.random.default_rng(seed)
    out = []
    for i in range(len(sim.mse)):
        grid = frame_maps(sim, i, rng)["error"]
        payload, scale = ScoreMessage.quantize_heatmap(grid, MAP_ENCODING) if heatmap else (b"", 0.0)
        h, w = grid.shape if heatmap else (0, 0)
        msg = ScoreMessage(
            camera_id=camera_id, seq=start_seq + i, capture_ns=t0_ns + int(sim.t_ns[i]), processed_ns=t0_ns + int(sim.t_ns[i]),
            model_id="sim", model_version=model_version, warmup=i < warmup_frames, latency_ms=1.0,
            features=ErrorFeatures(mse=float(sim.mse[i]), psnr=float(-10 * np.log10(sim.mse[i])), patch_max=float(sim.patch_max[i])),
            heatmap_height=h, heatmap_width=w, heatmap_scale=scale, heatmap_encoding=MAP_ENCODING, payload=payload,
            frame_width=w * 8, frame_height=h * 8,
        )  # fmt: skip
        out.append(msg.encode())
    return out


def scripted(n: int, anomalies: list[tuple[int, int]], fps: float = 10.0, seed: int = 0, strength: float = 4.0) -> SimStream:
    """A short flat-level stream with anomalies at the given frame spans (inclusive), for tests."""
    rng = np.random.default_rng(seed)
    log_patch = np.log(0.02) + rng.normal(0, 0.05, n)
    log_mse = np.log(0.002) + rng.normal(0, 0.03, n)
    label = np.zeros(n, bool)
    for a, b in anomalies:
        label[a : b + 1] = True
        log_patch[a : b + 1] += math.log(strength)
    t_ns = (np.arange(n) / fps * 1e9).astype(np.int64)
    return SimStream(t_ns, np.exp(log_mse), np.exp(log_patch), label, list(anomalies), fps)


SIM_GRID = (4, 6)
"""Cells of a simulated camera's error map (3 x 5 scored locations)."""
PATHS = ((0, 0), (1, 2), (2, 4))
"""Top-left cells of the 2x2 patches where people (and anomalies) go: normal activity moves between them."""


def frame_maps(sim: SimStream, i: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The error map of frame ``i``: background cells at the frame error (each with its own noise), and
    the frame's busiest patch (its ``patch_max``, an injected anomaly included) on one of :data:`PATHS`."""
    grid = (sim.mse[i] * np.exp(rng.normal(0.0, 0.1, SIM_GRID))).astype(np.float32)
    r, c = PATHS[(i // 30) % len(PATHS)]
    grid[r:r + 2, c:c + 2] = sim.patch_max[i]
    return {"error": grid}


def observations(sim: SimStream, start: int, stop: int, seed: int = 0) -> list[object]:
    """Frames ``start..stop-1`` of a simulated stream as :class:`vigil.model.alerting.Observation`."""
    from vigil.model.alerting import Observation

    rng = np.random.default_rng(seed)
    return [Observation(i, int(sim.t_ns[i]), False, frame_maps(sim, i, rng)) for i in range(start, stop)]


def run_core(sim: SimStream, camera: object, start: int = 0, seed: int = 1) -> list[tuple[int, int, int]]:
    """Feed frames ``start..`` through one :class:`vigil.model.alerting.CameraScoring` (the scorer's core,
    events included); returns (open_idx, start_idx, end_idx) of every event."""
    from vigil.model.alerting import Observation

    rng = np.random.default_rng(seed)
    log = _EventLog()
    for i in range(start, len(sim.mse)):
        verdict = camera.step(Observation(i, int(sim.t_ns[i]), False, frame_maps(sim, i, rng)))  # type: ignore[attr-defined]
        log.add(i, verdict.changes)
    return log.events(len(sim.mse) - 1)
