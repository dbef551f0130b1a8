"""``vigil calibrate``: measure a scene's normal statistics, for a model or for one camera.

* ``--model DIR``: the model card's ``calibration.locations`` (what every camera of that model starts
  from), measured on the model's training clips (the card's ``data.train_clips``; ``--clips`` to choose
  others); the frame-feature statistics on the held-out clips are refreshed too. It also measures the
  worker's warm-up for the model on the same clips (:func:`vigil.model.alerting.choose_warmup`): workers
  mark that many frames ``warmup`` after a camera's state starts, unless VIGIL_WORKER_WARMUP_FRAMES says.
* ``--camera ID --folder DIR``: that camera's own normal footage (a folder of videos), written to a file
  the cameras file names in the camera's ``calibration:``.
* ``--camera ID --since T --until T``: a time range of the camera's own stream, read back from the score
  topic (the worker must have been scoring it with the same model): no video needed. This is also how an
  operator accepts a changed scene as the new normal.

All of them replay score messages through the same core the scorer runs (:func:`vigil.model.alerting.calibrate`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vigil.model.alerting import Observation, calibrate, choose_warmup, with_warmup
from vigil.model.baseline import Calibration
from vigil.shared.scorer_params import ScoringParams

log = logging.getLogger(__name__)


def _cell_px(predictor: Any) -> int:
    return int(predictor.config.features.heatmap_stride)


def calibrate_model(model_dir: str | os.PathLike, data: str | os.PathLike, clips: list[str] | None = None,
                    command: str = "", cache_dir: Path | None = None, margin: float | None = None) -> Calibration:
    """Write the model card's per-location calibration (and refresh its feature statistics); the clips' score
    messages are cached in ``cache_dir`` when given (``vigil calibrate``: ``.state/replay``, where ``vigil
    train`` left those of its own calibration). ``margin``: the threshold's margin over the largest normal
    score; by default the one the card's calibration records (docs/model.md, scoring step 12), else
    :class:`ScoringParams`'s."""
    from vigil.model.data import list_videos, read_video
    from vigil.model.replay import WORKER_WARMUP_FRAMES, clip_messages
    from vigil.model.streaming import StreamingPredictor
    from vigil.model.train import recalibrate, training_folder, write_card

    model_dir = Path(model_dir)
    predictor = StreamingPredictor.load(model_dir)
    names = clips or list(predictor.card.get("data", {}).get("train_clips", []))
    folder = training_folder(data)
    videos = {p.stem: p for p in list_videos(folder)}
    missing = [n for n in names if n not in videos]
    if not names or missing:
        raise FileNotFoundError(f"Calibration clips {missing or '(none named)'} are not under {folder}; pass --clips.")
    log.info("calibrating %s on %d normal clips", predictor.model_id, len(names))
    messages = clip_messages(predictor, {n: read_video(videos[n], *predictor.input_shape) for n in names},
                             warmup_frames=WORKER_WARMUP_FRAMES, cache_dir=cache_dir)
    if margin is None:
        margin = card_margin(predictor.card)
    cal = warmed_calibration([messages[n] for n in names], _cell_px(predictor), source=",".join(names), margin=margin)
    card = dict(predictor.card)
    if card.get("data", {}).get("val_clips"):
        recalibrate(model_dir, data)
        card = json.loads((model_dir / "model_card.json").read_text())
    card.setdefault("calibration", {})["locations"] = cal.to_dict() | {"command": command}
    card["model_version"] = predictor.model_version
    write_card(model_dir, card)
    return cal


def check_margin(margin: float | None) -> None:
    """Raise a ``ValueError`` naming ``--margin`` when it is not a finite number within the field's bounds
    (``vigil calibrate`` calls it before any footage is scored).

    Example:
        >>> check_margin(None), check_margin(0.5)
        (None, None)
        >>> check_margin(float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: --margin must be a finite number between -10 and 100. Received: nan
    """
    from pydantic import ValidationError

    try:
        _params(margin)
    except ValidationError:
        raise ValueError(f"--margin must be a finite number between -10 and 100. Received: {margin}") from None


def card_margin(card: dict[str, Any]) -> float:
    """The margin a model card's calibration was written with (``threshold_margin``), else the default.

    Example:
        >>> card_margin({"calibration": {"locations": {"threshold_margin": 0.0}}}), card_margin({})
        (0.0, -1.5)
    """
    recorded = card.get("calibration", {}).get("locations", {}).get("threshold_margin")
    return _params(recorded).threshold_margin


def _params(margin: Any) -> ScoringParams:
    """Scoring parameters with ``margin`` as ``threshold_margin``, checked against the field's bounds (a NaN or
    out-of-range margin raises ``pydantic.ValidationError`` naming it), or the defaults.

    Example:
        >>> _params(None).threshold_margin, _params(0).threshold_margin
        (-1.5, 0.0)
    """
    if margin is None:
        return ScoringParams()
    from pydantic import TypeAdapter

    return TypeAdapter(ScoringParams).validate_python({"threshold_margin": margin})


def warmed_calibration(messages: list[list[Any]], cell_px: int, source: str, margin: float | None = None) -> Calibration:
    """A model's per-location calibration from the score messages of its normal clips (each clip from a fresh
    state), with the worker's warm-up measured on them (:func:`~vigil.model.alerting.choose_warmup`) and recorded
    as ``warmup_frames`` / ``warmup_thresholds``: what ``vigil calibrate`` and ``vigil train`` both write.

    The warm-up is measured at the default margin (its rule, docs/model.md step 9, was fixed with it); the
    threshold then takes ``margin`` (default: :class:`ScoringParams`'s), recorded as ``threshold_margin``."""
    from vigil.model.replay import WORKER_WARMUP_FRAMES

    clips = [[Observation.from_message(m) for m in msgs] for msgs in messages]
    warmup, thresholds = choose_warmup(clips, ScoringParams(), cell_px, longest=WORKER_WARMUP_FRAMES)
    log.info("warm-up: %d frames (calibration thresholds for 1..%d frames: %s)", warmup, WORKER_WARMUP_FRAMES,
             ", ".join(f"{t:.3f}" for t in thresholds))
    cal = calibrate([with_warmup(c, warmup) for c in clips], _params(margin), cell_px, source=source)
    cal.extra.update(warmup_frames=warmup, warmup_thresholds=[round(t, 4) for t in thresholds],
                     warmup_margin=ScoringParams().threshold_margin)
    return cal


def calibrate_folder(camera_id: str, folder: str | os.PathLike, model_dir: str | os.PathLike, out: str | os.PathLike,
                     command: str = "", margin: float | None = None) -> Calibration:
    """A camera's own calibration from a folder of its normal footage (``margin``: default :class:`ScoringParams`'s)."""
    from vigil.model.data import list_videos, read_video
    from vigil.model.replay import clip_messages
    from vigil.model.streaming import StreamingPredictor

    predictor = StreamingPredictor.load(model_dir)
    videos = list_videos(folder)
    messages = clip_messages(predictor, {v.stem: read_video(v, *predictor.input_shape) for v in videos})
    cal = calibrate([[Observation.from_message(m) for m in msgs] for msgs in messages.values()], _params(margin),
                    _cell_px(predictor), source=f"{len(videos)} clips in {folder}")
    write_camera_calibration(out, camera_id, predictor.model_id, predictor.model_version, cal, command)
    return cal


def calibrate_stream(camera_id: str, since: datetime, until: datetime, kafka: Any, topic: str,
                     out: str | os.PathLike, command: str = "", timeout_s: float = 60.0,
                     margin: float | None = None) -> Calibration:
    """A camera's own calibration from a time range of its score stream (read back from Kafka; ``margin``:
    default :class:`ScoringParams`'s)."""
    msgs = read_scores(camera_id, since, until, kafka, topic, timeout_s)
    versions = {(m.model_id, m.model_version) for m in msgs}
    if len(versions) != 1:
        raise ValueError(f"Camera {camera_id} has {len(msgs)} scores between {since} and {until} from models "
                         f"{sorted(versions)}; calibrate a range scored by one model version.")
    (model_id, version), first = versions.pop(), msgs[0]
    cell = first.frame_width // first.heatmap_width if first.heatmap_width and first.frame_width else 8
    cal = calibrate([[Observation.from_message(m) for m in msgs]], _params(margin), cell,
                    source=f"stream {since.isoformat()} .. {until.isoformat()}")
    write_camera_calibration(out, camera_id, model_id, version, cal, command)
    return cal


def read_scores(camera_id: str, since: datetime, until: datetime, kafka: Any, topic: str,
                timeout_s: float = 60.0) -> list[Any]:
    """The camera's score messages captured in ``[since, until)``, read from the score topic."""
    from kafka import KafkaConsumer, TopicPartition
    from tqdm import tqdm

    from vigil.shared.schemas import SchemaError, ScoreMessage

    lo, hi = int(since.timestamp() * 1e9), int(until.timestamp() * 1e9)
    consumer = KafkaConsumer(enable_auto_commit=False, consumer_timeout_ms=int(timeout_s * 1000), **kafka.kafka_python_kwargs())
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not parts:
            raise ValueError(f"Topic {topic} does not exist on {kafka.bootstrap_servers}.")
        consumer.assign(parts)
        starts = consumer.offsets_for_times({p: int(since.timestamp() * 1000) - 60_000 for p in parts})
        ends = consumer.end_offsets(parts)
        for p in parts:
            consumer.seek(p, starts[p].offset if starts.get(p) else ends[p])
        out, key = [], camera_id.encode()
        with tqdm(desc=f"reading {camera_id}'s scores", unit="msg") as bar:
            for rec in consumer:
                bar.update()
                if rec.key == key:
                    try:
                        msg = ScoreMessage.decode(rec.value)
                    except SchemaError:
                        continue
                    if lo <= msg.capture_ns < hi:
                        out.append(msg)
                if all(consumer.position(p) >= ends[p] for p in parts):
                    break
    finally:
        consumer.close()
    if len(out) < 100:
        raise ValueError(f"Only {len(out)} scores of camera {camera_id} between {since} and {until} on {topic}; "
                         "is the worker scoring it, and is the range right (times are capture times, UTC)?")
    return sorted(out, key=lambda m: m.capture_ns)


def write_camera_calibration(out: str | os.PathLike, camera_id: str, model_id: str, model_version: str,
                             cal: Calibration, command: str) -> Path:
    """Write a camera's calibration file (read by the scorer through the camera's ``calibration:``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"camera_id": camera_id, "model_id": model_id, "model_version": model_version, "command": command,
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "locations": cal.to_dict()}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return out


def parse_time(text: str) -> datetime:
    """An ISO time (UTC when it names no zone)."""
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)
