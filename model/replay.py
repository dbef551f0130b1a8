"""Clips as the scorer sees them: score messages built exactly as the worker builds them, then replayed.

:func:`clip_messages` runs clips through the streaming step (each clip a camera with a fresh state) and
turns every frame into the :class:`ScoreMessage` the worker would publish for it
(:func:`vigil.model.messages.score_message`, quantised maps included), with the worker's warm-up flag
on the first ``warmup_frames`` frames. ``vigil evaluate``, ``vigil score``, ``vigil calibrate`` and the
benchmarks feed these messages to the one scoring core (:mod:`vigil.model.alerting`).

:class:`MessageCache` keeps the encoded messages of a model version on disk (``.npz`` of raw bytes and
offsets, no pickle), so a second evaluation skips the model.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from vigil.model.messages import FrameRef, score_message
from vigil.shared.schemas import ScoreMessage

log = logging.getLogger(__name__)

FPS = 10.0
"""Frame rate of the replayed clips (UCSD Ped2 and the demo cameras run at 10 fps)."""
WORKER_WARMUP_FRAMES = 10
"""Frames the worker marks ``warmup`` after a state reset for a model whose card has no measured warm-up."""
CACHE_FORMAT = 3
"""Bumped whenever the messages a replay builds change (the cache file name carries it)."""
T0_NS = 1_750_000_000 * 10**9
"""Capture time of a replayed clip's first frame (a fixed time, so replays are deterministic)."""


def model_warmup(card: dict) -> int:
    """The warm-up a worker uses for a model: measured by ``vigil calibrate`` (the card's
    ``calibration.locations.warmup_frames``), else :data:`WORKER_WARMUP_FRAMES`.

    Example:
        >>> model_warmup({"calibration": {"locations": {"warmup_frames": 3}}}), model_warmup({})
        (3, 10)
    """
    found = card.get("calibration", {}).get("locations", {}).get("warmup_frames")
    return int(found) if isinstance(found, int) and 0 <= found <= 10_000 else WORKER_WARMUP_FRAMES


def rewarm(messages: dict[str, list[ScoreMessage]], warmup_frames: int) -> dict[str, list[ScoreMessage]]:
    """The same messages with the warm-up flag a worker using ``warmup_frames`` would set (each clip starts fresh)."""
    return {n: [m if m.warmup == (t < warmup_frames) else m.model_copy(update={"warmup": t < warmup_frames})
                for t, m in enumerate(msgs)] for n, msgs in messages.items()}


def clip_messages(predictor: object, clips: dict[str, np.ndarray], *, warmup_frames: int | None = None,
                  fps: float = FPS, progress: bool = True, cache_dir: Path | None = None) -> dict[str, list[ScoreMessage]]:
    """The score messages of every frame of every clip, each clip a camera named after it.

    Args:
        predictor: A streaming predictor (``vigil.model.streaming.StreamingPredictor``).
        clips: ``{name: (T, H, W, C) uint8}`` at the model's input shape.
        warmup_frames: Leading frames of each clip marked ``warmup`` (as the worker marks them); None: the
            model's own (:func:`model_warmup`).
        fps: Frame rate for the capture times.
        progress: Show progress bars.
        cache_dir: Keep the messages of this model version and these exact clips (names and pixels) in a
            :class:`MessageCache` there, so that ``vigil train``'s calibration and a later ``vigil calibrate``
            on the same clips run the model once.
    """
    if warmup_frames is None:
        warmup_frames = model_warmup(getattr(predictor, "card", {}) or {})
    cache = MessageCache(Path(cache_dir) / _clips_cache_name(predictor, clips, fps)) if cache_dir is not None else None
    cached = cache.load_or_none() if cache is not None else None
    if cached is not None and set(cached) == set(clips):
        return rewarm(cached, warmup_frames)
    out = _build_messages(predictor, clips, warmup_frames, fps, progress)
    if cache is not None:
        cache.save(out)
    return out


def _clips_cache_name(predictor: object, clips: dict[str, np.ndarray], fps: float) -> str:
    """Cache file name of a model version and a set of clips (their names and pixels)."""
    digest = hashlib.sha256(f"{fps}".encode())
    for name in sorted(clips):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(clips[name]).tobytes())
    return f"{predictor.model_id}-{predictor.model_version}-clips-{digest.hexdigest()[:12]}-v{CACHE_FORMAT}.npz"  # type: ignore[attr-defined]


def _build_messages(predictor: object, clips: dict[str, np.ndarray], warmup_frames: int, fps: float,
                    progress: bool) -> dict[str, list[ScoreMessage]]:
    from vigil.model.inference import run_clips

    outputs = run_clips(predictor, clips, progress=progress)  # type: ignore[arg-type]
    model = (predictor.model_id, predictor.model_version)  # type: ignore[attr-defined]
    step_ns = int(1e9 / fps)
    h, w = clips[next(iter(clips))].shape[1:3] if clips else (0, 0)
    out: dict[str, list[ScoreMessage]] = {}
    for name, o in outputs.items():
        out[name] = [
            score_message(FrameRef(name, seq=t, pts=t / fps, capture_ns=T0_NS + t * step_ns, width=w, height=h), model, o, t,
                          warmup=t < warmup_frames, gap=min(t, 1), received_ns=T0_NS + t * step_ns,
                          now_ns=T0_NS + t * step_ns)
            for t in range(len(o.features))
        ]  # fmt: skip
    return out


class MessageCache:
    """Encoded score messages per clip in one ``.npz`` (bytes and offsets; loaded without pickle).

    Example:
        >>> import tempfile
        >>> from vigil.shared.schemas import ErrorFeatures
        >>> m = ScoreMessage(camera_id="c", seq=0, capture_ns=1, processed_ns=1, model_id="m", model_version="v",
        ...                  warmup=True, latency_ms=0.0, features=ErrorFeatures(mse=0.1, psnr=10.0, patch_max=0.2))
        >>> cache = MessageCache(Path(tempfile.mkdtemp()) / "x.npz")
        >>> cache.save({"clip": [m, m]})
        >>> [len(v) for v in cache.load().values()]
        [2]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, list[ScoreMessage]] | None:
        """The cached messages, or None when there is no cache file."""
        if not self.path.is_file():
            return None
        with np.load(self.path, allow_pickle=False) as z:
            names = [str(n) for n in z["names"]]
            return {n: [ScoreMessage.decode(b) for b in _split(z[f"{n}/data"], z[f"{n}/offsets"])] for n in names}

    def load_or_none(self) -> dict[str, list[ScoreMessage]] | None:
        """:meth:`load`, or None when the file is unreadable or holds messages this build rejects (then rebuilt)."""
        try:
            return self.load()
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cache %s not used (%s); rebuilding it", self.path, exc)
            return None

    def save(self, messages: dict[str, list[ScoreMessage]]) -> None:
        """Write the messages (atomically: a temporary file, then a rename)."""
        arrays: dict[str, np.ndarray] = {"names": np.array(list(messages))}
        for name, msgs in messages.items():
            encoded = [m.encode() for m in msgs]
            arrays[f"{name}/data"] = np.frombuffer(b"".join(encoded), np.uint8)
            arrays[f"{name}/offsets"] = np.cumsum([0, *map(len, encoded)]).astype(np.int64)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(self.path)


def _fingerprint(root: Path) -> bytes:
    """What identifies a copy of the data: its manifest, else its resolved path."""
    manifest = Path(root) / "manifest.json"
    return manifest.read_bytes() if manifest.is_file() else str(Path(root).resolve()).encode()


def _split(data: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    raw = data.tobytes()
    return [raw[int(a):int(b)] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def ped2_messages(root: Path, predictor: object, cache_dir: Path | None,
                  clips: list[str] | None = None) -> dict[str, list[ScoreMessage]]:
    """Score messages of the Ped2 clips (``TrainNNN``, ``TestNNN``; all by default), cached by model version."""
    from vigil.model.data import list_videos, read_video

    videos = {v.stem: v for v in [*list_videos(root / "train"), *list_videos(root / "test")]}
    names = clips or sorted(videos)
    missing = [n for n in names if n not in videos]
    if missing:
        raise FileNotFoundError(f"Clips not found under {root}/train or {root}/test: {missing}")
    cache = None
    if cache_dir is not None:
        data = hashlib.sha256(_fingerprint(root)).hexdigest()[:8]  # the mini set and the full set differ
        name = f"{predictor.model_id}-{predictor.model_version}-{data}-v{CACHE_FORMAT}.npz"  # type: ignore[attr-defined]
        cache = MessageCache(Path(cache_dir) / name)
        cached = cache.load_or_none() or {}
        if all(n in cached for n in names):  # the flags follow the card's warm-up, which recalibration changes
            return rewarm({n: cached[n] for n in names}, model_warmup(predictor.card))  # type: ignore[attr-defined]
    h, w, c = predictor.input_shape  # type: ignore[attr-defined]
    log.info("running the model over %d clips (cached afterwards)", len(names))
    fresh = clip_messages(predictor, {n: read_video(videos[n], h, w, c) for n in names})
    if cache is not None:
        cache.save({**(cache.load_or_none() or {}), **fresh})
    return fresh
