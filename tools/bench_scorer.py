"""`vigil bench scorer`: adaptive vs static thresholds on the simulator, throughput via Kafka + Redis, and
frame AUC / event precision-recall of the scorer on UCSD Ped2 (causal, one camera)."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vigil.model.features import FEATURE_NAMES, FrameFeatures
from vigil.services.scorer.scoring import CameraScorer, ScoringParams, normal_cdf
from vigil.shared.scorer_params import EventParams
from vigil.tools.simulator import (
    DAY_S,
    Detector,
    SimConfig,
    SimStream,
    evaluate,
    run_events,
    simulate,
)

log = logging.getLogger(__name__)

SIM_FPS = 1.0
# The service's defaults (10 fps) scaled to the simulator's 1 fps: same memory in seconds.
SIM_EVENTS = EventParams(k=3, n=5, m=5, min_duration_s=2, cooldown_s=30, max_length_s=600, update_interval_s=5)


def adaptive(**kw: object) -> Callable[[SimStream], Detector]:
    """The scorer's model (CameraScorer) with simulator-scaled parameters."""

    def make(sim: SimStream) -> Detector:
        s = CameraScorer(ScoringParams(**({"fading_factor": 0.01, "grace_frames": 600, "q": 0.998} | kw)))

        def det(mse: float, patch: float) -> tuple[float, bool, float]:
            x = {"mse": mse, "patch_max": patch}
            if not s.ready:
                s.update(x)
                return 0.0, False, 1.0
            score, thr = s.score(x), s.threshold
            above = s.classify(score)
            s.update(x, score)
            return score, above, thr or 1.0

        return det

    return make


def static(q: float) -> Callable[[SimStream], Detector]:
    """The same z-score, frozen on day 1: mean/std of day 1, threshold at day 1's q-quantile."""

    def make(sim: SimStream) -> Detector:
        n1 = int(DAY_S * sim.fps)
        lm, lp = np.log(sim.mse[:n1] + 1e-6), np.log(sim.patch_max[:n1] + 1e-6)
        mm, sm, mp, sp = lm.mean(), lm.std(), lp.mean(), lp.std()
        thr = float(np.quantile(np.maximum((lm - mm) / sm, (lp - mp) / sp)[~sim.label[:n1]], q))

        def det(mse: float, patch: float) -> tuple[float, bool, float]:
            z = max((math.log(mse + 1e-6) - mm) / sm, (math.log(patch + 1e-6) - mp) / sp)
            return normal_cdf(z), z >= thr, normal_cdf(thr)

        return det

    return make


def river_gaussian(window: int, q: float) -> Callable[[SimStream], Detector]:
    """river's stock GaussianScorer (rolling window, raw patch error) in a QuantileFilter."""
    from river import anomaly

    def make(sim: SimStream) -> Detector:
        f = anomaly.QuantileFilter(anomaly.GaussianScorer(window_size=window, grace_period=600), q=q)

        def det(mse: float, patch: float) -> tuple[float, bool, float]:
            s = f.score_one(None, patch)
            above = f.classify(s)
            f.learn_one(None, patch)
            return s, above, f.quantile.get() or 1.0

        return det

    return make


METHODS: dict[str, Callable[[SimStream], Detector]] = {
    "static, fitted on day 1 (q=0.999)": static(0.999),
    "static, fitted on day 1 (day-1 max)": static(1.0),
    "**adaptive (chosen): EW level, q=0.998, protected**": adaptive(),
    "adaptive, unprotected": adaptive(protect=False),
    "adaptive, slow level (EW 0.001)": adaptive(fading_factor=0.001, grace_frames=3000),
    "adaptive, q=0.995": adaptive(q=0.995),
    "river GaussianScorer(window=600), q=0.998": river_gaussian(600, 0.998),
}


def simulator_table(days: float, cameras: int) -> tuple[str, dict[str, tuple[float, float, float]]]:
    """Markdown table of every method over ``cameras`` simulated cameras (days 2.. evaluated)."""
    sums: dict[str, list] = {m: [] for m in METHODS}
    timing: dict[str, float] = {}
    for seed in range(cameras):
        sim = simulate(SimConfig(days=days, fps=SIM_FPS, seed=seed))
        for name, make in METHODS.items():
            t0 = time.perf_counter()
            events = run_events(sim, make(sim), SIM_EVENTS)
            timing[name] = timing.get(name, 0.0) + (time.perf_counter() - t0) / len(sim.mse)
            sums[name].append(evaluate(sim, events, eval_from=int(DAY_S * sim.fps)))
    rows = ["| method | false alerts / camera / day | anomalies alerted | median delay (s) | µs / score (incl. events) |",
            "|---|---|---|---|---|"]  # fmt: skip
    summary = {}
    for name, res in sums.items():
        fa = float(np.mean([r.false_alerts_per_day for r in res]))
        det = float(sum(r.detected * r.n_spans for r in res) / max(1, sum(r.n_spans for r in res)))
        delay = float(np.nanmedian([r.median_delay_s for r in res]))
        summary[name] = (fa, det, delay)
        rows.append(f"| {name} | {fa:.2f} | {det:.0%} | {delay:.0f} | {timing[name] / cameras * 1e6:.1f} |")
    return "\n".join(rows), summary


def throughput(n_scores: int, n_cameras: int = 200) -> dict[str, float]:
    """Push ``n_scores`` scores (``n_cameras`` cameras) through a `vigil scorer` subprocess; scores/s."""
    from vigil.shared.kafka import delete_topics, ensure_topics, make_admin, make_producer
    from vigil.shared.redis_keys import camera_hash
    from vigil.shared.settings import KafkaSettings, RedisSettings
    from vigil.tools.simulator import score_messages, scripted

    kafka, redis_client = KafkaSettings(), RedisSettings().client()
    token = uuid.uuid4().hex[:8]
    scores_topic, dlq, app_id = f"bench.scores.{token}", f"bench.dlq.{token}", f"bench-scorer-{token}"
    ensure_topics(kafka, {scores_topic: 12, dlq: 1})
    per_cam = max(1, n_scores // n_cameras)
    producer = make_producer(kafka)
    cams = [f"bench-{token}-{i:03d}" for i in range(n_cameras)]
    base = scripted(per_cam, [(per_cam // 2, per_cam // 2 + 30)])
    for cam in cams:
        for v in score_messages(cam, base, t0_ns=time.time_ns()):
            producer.send(scores_topic, key=cam.encode(), value=v)
    producer.flush()
    env = dict(os.environ) | {
        "VIGIL_TOPICS_SCORES": scores_topic, "VIGIL_TOPICS_DLQ": dlq, "VIGIL_TOPICS_PARTITIONS": "12",
        "VIGIL_SCORER_APP_ID": app_id, "VIGIL_SCORER_SCORING__GRACE_FRAMES": str(min(100, per_cam // 3)),
        "VIGIL_SCORER_SCORING__FADING_FACTOR": "0.05", "VIGIL_SCORER_DATADIR": f"/tmp/{app_id}", "VIGIL_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", "from vigil.cli import main; main()", "scorer"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        first = _wait(lambda: any(redis_client.exists(camera_hash(c)) for c in cams[:20]), 120)
        cpu0 = _cpu_s(proc.pid)
        last = _wait(lambda: all(_seq(redis_client, c) == per_cam - 1 for c in cams), 600)
        cpu = _cpu_s(proc.pid) - cpu0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        admin = make_admin(kafka)
        internal = [t for t in admin.list_topics() if t.startswith(app_id)]
        admin.close()
        delete_topics(kafka, [scores_topic, dlq, *internal])
    n = per_cam * n_cameras
    return {"scores": n, "wall_s": last - first, "per_s": n / (last - first), "cpu_s": cpu, "per_cpu_s": n / max(cpu, 1e-9)}


PED2_SCORING = {"fading_factor": 0.002, "grace_frames": 1000}
"""Scoring overrides for Ped2: the service's defaults learn over 3000 frames, Ped2 has 2550 training frames."""
CACHE_DIR = Path(".state/bench-scorer")  # relative to the working directory


def ped2_features(data: Path | None = None) -> tuple[dict[str, FrameFeatures], dict[str, np.ndarray], str, int]:
    """Causal per-frame features of every Ped2 clip (train then test), cached by model version.

    Returns:
        ``({clip: FrameFeatures of (T,) arrays}, {test clip: labels}, model version, n_warmup)``;
        clips in camera order (Train001..Train016, Test001..Test012).
    """
    from vigil.model.data import list_videos, load_ped2_labels, ped2_dir, read_video
    from vigil.model.inference import run_clips
    from vigil.model.streaming import StreamingPredictor

    root = ped2_dir(data)
    labels = load_ped2_labels(root)
    videos = [*list_videos(root / "train"), *[root / "test" / f"{n}.mkv" for n in sorted(labels)]]
    names = [v.stem for v in videos]
    predictor = StreamingPredictor.load()
    n_warmup = int(predictor.card.get("calibration", {}).get("n_warmup", 3))
    cache = CACHE_DIR / f"ped2-{predictor.model_id}-{predictor.model_version}.npz"
    feats: dict[str, FrameFeatures] = {}
    if cache.is_file():
        with np.load(cache) as z:
            if all(f"{n}/{f}" in z.files for n in names for f in FEATURE_NAMES):
                feats = {n: FrameFeatures.from_mapping({f: z[f"{n}/{f}"] for f in FEATURE_NAMES}) for n in names}
    if not feats:
        h, w, c = predictor.input_shape
        t0 = time.perf_counter()
        frames = {v.stem: read_video(v, h, w, c) for v in videos}
        out = run_clips(predictor, frames, progress=False)
        feats = {n: out[n].features for n in names}
        log.info("ped2: model inference over %d clips in %.0f s", len(names), time.perf_counter() - t0)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, **{f"{n}/{f}": v for n, d in feats.items() for f, v in d.as_dict().items()})
    labels = {n: labels[n][: len(feats[n])] for n in labels}
    return feats, labels, predictor.model_version, n_warmup


def _spans(label: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) frame index of each run of 1s."""
    d = np.diff(np.r_[0, label.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1).tolist(), (np.flatnonzero(d == -1) - 1).tolist(), strict=True))


def ped2_eval(data: Path | None = None) -> dict[str, object]:
    """Run the cached Ped2 features through one :class:`ScorerState` and measure frame AUC and events."""
    from dataclasses import replace

    from vigil.model.roc import roc_auc
    from vigil.services.scorer.state import CameraParams, ScorerState
    from vigil.shared.schemas import ErrorFeatures, ScoreMessage

    feats, labels, version, n_warmup = ped2_features(data)
    params = CameraParams(scoring=replace(ScoringParams(), **PED2_SCORING))
    state = ScorerState("ped2", params)
    seq = 0
    clip_start: dict[str, int] = {}
    alerts: dict[str, dict[str, int]] = {}  # alert_id -> start, end, trigger (open)
    test_scores, test_patch, test_labels = [], [], []
    for name, f in feats.items():
        clip_start[name] = seq
        for i in range(len(f)):
            warm = i < n_warmup
            msg = ScoreMessage(
                camera_id="ped2", seq=seq, capture_ns=seq * 100_000_000, processed_ns=seq * 100_000_000,
                model_id="prednet-ped2", model_version=version, warmup=warm, latency_ms=0.0,
                features=ErrorFeatures(**f.frame(i)),
            )  # fmt: skip
            r = state.step(msg)
            for p in r.alerts:
                a = p.alert
                if a.event == "open":
                    alerts[a.alert_id] = {"start": a.start_seq, "end": -1, "trigger": a.trigger_seq}
                elif a.event == "close" and a.alert_id in alerts:
                    alerts[a.alert_id]["end"] = int(a.end_seq or a.trigger_seq)
            state.confirm(len(state.outbox))
            if name in labels:
                test_scores.append(r.score)
                test_patch.append(0.0 if warm else float(f.patch_max[i]))
                test_labels.append(int(labels[name][i]))
            seq += 1
    for a in alerts.values():
        if a["end"] < 0:
            a["end"] = seq - 1
    y = np.asarray(test_labels)
    first_test = min(clip_start[n] for n in labels)
    test_alerts = [a for a in alerts.values() if a["trigger"] >= first_test]
    spans = {n: [(clip_start[n] + s, clip_start[n] + e) for s, e in _spans(labels[n])] for n in labels}
    all_spans = [s for v in spans.values() for s in v]

    def overlaps(a: dict[str, int], s: tuple[int, int]) -> bool:
        return a["start"] <= s[1] and a["end"] >= s[0]

    true_alerts = sum(any(overlaps(a, s) for s in all_spans) for a in test_alerts)
    hit, hit_own, delays = 0, 0, []
    for n, ss in spans.items():
        over = [a for a in test_alerts for s in ss if overlaps(a, s)]
        hit += bool(over)
        own = [a for a in over if a["trigger"] >= clip_start[n]]
        if own:
            hit_own += 1
            first = min(own, key=lambda a: a["trigger"])
            span0 = min(s[0] for s in ss if overlaps(first, s))
            delays.append(max(0, first["trigger"] - span0))
    n_clips = sum(bool(ss) for ss in spans.values())
    return {
        "model_version": version, "n_warmup": n_warmup, "frames_train": first_test, "frames_test": len(y),
        "anomalous": int(y.sum()), "auc_score": roc_auc(y, np.asarray(test_scores)),
        "auc_patch_max": roc_auc(y, np.asarray(test_patch)), "alerts": len(test_alerts), "true_alerts": true_alerts,
        "train_alerts": len(alerts) - len(test_alerts), "clips": n_clips, "clips_hit": hit, "clips_hit_own": hit_own,
        "median_delay": float(np.median(delays)) if delays else float("nan"), "delays": delays,
    }  # fmt: skip


def ped2_section(data: Path | None = None) -> list[str]:
    """Markdown lines of the Ped2 part of the bench."""
    r = ped2_eval(data)
    prec = r["true_alerts"] / r["alerts"] if r["alerts"] else float("nan")
    ev = EventParams()
    return [
        "### UCSD Ped2: the scorer on the committed model's causal scores",
        f"Protocol: the committed model (`model/weights/ped2`, version `{r['model_version']}`) steps the 16 training "
        f"clips then the 12 test clips as **one camera**, causally (a fresh recurrent state per clip, its first "
        f"{r['n_warmup']} frames sent as warm-up). Every frame becomes a `ScoreMessage` (seq increasing across clips, "
        "10 fps capture times) and goes through one `ScorerState` (the service's code) with the default parameters "
        f"except a learning period that fits the {r['frames_train']} training frames: fading_factor "
        f"{PED2_SCORING['fading_factor']}, grace_frames {PED2_SCORING['grace_frames']} (q={ScoringParams().q}, events "
        f"k={ev.k} of n={ev.n}, m={ev.m}, min {ev.min_duration_s:g} s, cooldown {ev.cooldown_s:g} s). The training "
        f"clips are the camera's normal warm-up; only the {r['frames_test']} test frames ({r['anomalous']} anomalous) "
        "are evaluated. Warm-up frames get score 0 (the scorer gives none). Model outputs are cached in "
        "`.state/bench-scorer/` by model version.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| frame AUC, scorer score (Phi of max z) | **{r['auc_score']:.3f}** |",
        f"| frame AUC, raw patch_max (reference; warm-up frames 0) | {r['auc_patch_max']:.3f} |",
        f"| event precision (test alerts overlapping a labelled span) | **{prec:.0%}** ({r['true_alerts']}/{r['alerts']}) |",
        f"| event recall (test clips with an alert overlapping the span) | **{r['clips_hit'] / r['clips']:.0%}** "
        f"({r['clips_hit']}/{r['clips']}) |",
        f"| recall, counting only alerts opened in that clip | {r['clips_hit_own'] / r['clips']:.0%} "
        f"({r['clips_hit_own']}/{r['clips']}) |",
        f"| median delay, span start to first alert open (frames, own-clip alerts) | {r['median_delay']:.0f} "
        f"(all: {r['delays']}) |",
        f"| alerts during the training clips (after grace; all false) | {r['train_alerts']} |",
        "",
        "Caveats: 10 of the 12 test clips are anomalous from (nearly) their first frame and the clips are joined "
        "back to back, so an alert can run on from one clip into the next (the second recall line excludes "
        "those), and spans that start at frame 1 are only seen after the warm-up frames.",
    ]


def _seq(client: object, cam: str) -> int:
    from vigil.shared.redis_keys import camera_hash

    v = client.hget(camera_hash(cam), "last_seq")  # type: ignore[attr-defined]
    return -1 if v is None else int(v)


def _wait(check: Callable[[], bool], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.1)
    raise TimeoutError(f"bench scorer: condition not met within {timeout:.0f}s")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_bench(days: float, cameras: int, throughput_scores: int, doc: Path | None = None, ped2: bool = True,
              data: Path | None = None) -> str:
    """Run all parts, write the `scorer` section of docs/benchmarks.md, and return the markdown."""
    from vigil.tools.benchdoc import DEFAULT_DOC, machine_line, write_section

    table, summary = simulator_table(days, cameras)
    static_fa, static_det, _ = summary["static, fitted on day 1 (q=0.999)"]
    fa, det, _ = summary["**adaptive (chosen): EW level, q=0.998, protected**"]
    floor = 1 / ((days - 1) * cameras)
    ratio = static_fa / max(fa, floor)
    md = [
        "## Scorer (`vigil bench scorer`)",
        f"Command: `vigil bench scorer --days {days:g} --cameras {cameras} --throughput-scores {throughput_scores}"
        f"{'' if ped2 else ' --no-ped2'}`  ",
        f"Machine: {machine_line()}",
        "",
        f"### Simulator: {cameras} cameras x {days:g} days at {SIM_FPS:g} score/s, evaluated on days 2-{days:g}",
        "Daily curve (quiet nights at 45%, rush peaks +70%), drift +4%/day, AR(1) log noise, ~8 injected anomalies "
        "per day (4 s - 4 min, patch error x1.6 - x4). Event rules scaled to 1 fps: k=3 of n=5, m=5, min 2 s, "
        "cooldown 30 s. An alert is false when it overlaps no injected span (30 s slack).",
        "",
        table,
        "",
        f"Adaptive vs static (q=0.999): **{ratio:.0f}x fewer false alerts** "
        f"({'none seen; floor 1 alert' if fa == 0 else f'{fa:.2f}/day'} vs {static_fa:.1f}/day), "
        f"detection {det:.0%} vs {static_det:.0%}.",
    ]
    if throughput_scores > 0:
        t = throughput(throughput_scores)
        md += ["", "### Throughput through real Kafka and Redis (one `vigil scorer` process, 200 cameras)",
               f"{t['scores']:.0f} scores in {t['wall_s']:.1f} s: **{t['per_s']:.0f} scores/s** wall, "
               f"{t['per_cpu_s']:.0f} scores per CPU-second of the scorer process (target 2,000)."]  # fmt: skip
    if ped2:
        md += ["", *ped2_section(data)]
    text = "\n".join(md)
    write_section("scorer", text, doc or DEFAULT_DOC)
    return text
