"""``POST /v1/score``: an uploaded clip through the same path as `vigil score`.

The body is streamed to a temporary file while its size is counted (413 past ``max_upload_bytes``),
decoded with PyAV into the model's input by the one preprocessing function (:func:`to_model_input`,
stopping past ``max_frames``: 422), stepped by the streaming model into the worker's score messages
(:func:`vigil.model.replay.clip_messages`) and replayed through the scoring core with the model card's
calibration (:func:`vigil.model.live.replay`), as :func:`vigil.model.evaluate.score_video` does. The
model is loaded once per process, on the first clip; decoding and scoring run in a thread pool, so the
event loop never waits for them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from vigil.services.api import metrics
from vigil.services.api.core import ClipAlert, FrameScore, ScoreResult, finite

log = logging.getLogger(__name__)

MAX_ALERTS = 50


class UploadError(Exception):
    """A request the API refuses; ``status`` is the HTTP status and the text says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


async def receive_upload(request: Any, limit: int, directory: Path) -> Path:
    """Stream a ``multipart/form-data`` body into ``directory``; returns the path of its ``file`` part.

    Raises:
        UploadError: 413 when the body passes ``limit`` bytes, 415 when it is not multipart, 422 when it
            holds no (non-empty) ``file`` part or does not parse.
    """
    from python_multipart import create_form_parser

    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise UploadError(415, "send the clip as multipart/form-data with a `file` field")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"the upload is {int(declared)} bytes; the limit is {limit}")
    files: list[Any] = []
    config = {"UPLOAD_DIR": str(directory), "UPLOAD_DELETE_TMP": False, "MAX_MEMORY_FILE_SIZE": 0}
    try:
        parser = create_form_parser({"Content-Type": ctype.encode("latin-1")}, None, files.append, config)
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise UploadError(413, f"the upload passed the limit of {limit} bytes")
            parser.write(chunk)
        parser.finalize()
    except (ValueError, UnicodeError) as exc:  # python_multipart's errors are ValueErrors
        raise UploadError(422, f"the multipart body does not parse: {exc}") from None
    return _file_part(files)


def _file_part(files: list[Any]) -> Path:
    for f in files:
        f.close()
    part = next((f for f in files if f.field_name == b"file"), None)
    if part is None:
        raise UploadError(422, "the form has no `file` field: send the clip as `file`")
    if part.actual_file_name is None or part.size == 0:
        raise UploadError(422, "the uploaded file is empty")
    return Path(os.fsdecode(part.actual_file_name))


def decode_clip(path: Path, spec: Any, max_frames: int, max_pixels: int) -> np.ndarray:
    """The clip's frames as the model's input ``(T, H, W, C)`` uint8, as `vigil score` reads them.

    Raises:
        UploadError: 422 when it is no readable video, has frames larger than ``max_pixels``, or more than
            ``max_frames`` frames.
    """
    import av

    from vigil.model.preprocess import to_model_input

    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UploadError(422, "the file has no video stream")
            stream = container.streams.video[0]
            if stream.codec_context.width * stream.codec_context.height > max_pixels:
                raise UploadError(422, f"frames of {stream.codec_context.width}x{stream.codec_context.height} "
                                       f"are larger than the limit of {max_pixels} pixels")  # fmt: skip
            for frame in container.decode(stream):
                if len(frames) == max_frames:
                    raise UploadError(422, f"the clip is longer than the limit of {max_frames} frames")
                frames.append(to_model_input(frame, spec))
    except (av.FFmpegError, ValueError, EOFError) as exc:
        raise UploadError(422, f"not a readable video: {exc}") from None
    if not frames:
        raise UploadError(422, "no video frame could be decoded")
    return np.stack(frames)


class ClipScorer:
    """Scores uploaded clips with one lazily loaded model, in a thread pool.

    Args:
        model_dir: The model directory (None = the packaged model).
        max_frames: Longest clip, in frames.
        max_pixels: Largest frame, width x height.
        workers: Clips scored at once.
    """

    def __init__(self, model_dir: Path | None, max_frames: int, max_pixels: int, workers: int = 1) -> None:
        self.model_dir = model_dir
        self.max_frames = max_frames
        self.max_pixels = max_pixels
        self.workers = workers
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="vigil-api-score")
        self._lock = threading.Lock()
        self._model: tuple[Any, Any] | None = None
        self.pending = 0

    def model(self) -> tuple[Any, Any]:
        """The streaming predictor and its card's calibration, loaded on the first call."""
        with self._lock:
            if self._model is None:
                from vigil.model.evaluate import location_calibration
                from vigil.model.streaming import DEFAULT_MODEL_DIR, StreamingPredictor

                predictor = StreamingPredictor.load(self.model_dir or DEFAULT_MODEL_DIR)
                self._model = predictor, location_calibration(predictor.card)
            return self._model

    async def score(self, path: Path) -> ScoreResult:
        """Score one clip file without blocking the event loop; 503 when ``4 x workers`` clips wait already."""
        if self.pending >= 4 * self.workers:
            raise UploadError(503, f"{self.pending} clips are being scored; try again later")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self.score_file, path)
        finally:
            self.pending -= 1

    def score_file(self, path: Path) -> ScoreResult:
        """Decode and score one clip (blocking) with :func:`vigil.model.evaluate.score_clip`, as `vigil score` does."""
        from vigil.model.evaluate import score_clip
        from vigil.model.preprocess import InputSpec

        t0 = time.perf_counter()
        predictor, cal = self.model()
        frames = decode_clip(path, InputSpec(*predictor.input_shape), self.max_frames, self.max_pixels)
        msgs, run = score_clip(predictor, cal, frames, progress=False)
        rows = [FrameScore(frame=t, warmup=bool(run.warmup[t]), score=round(float(run.scores[t]), 4),
                           **finite(msgs[t].features.model_dump())) for t in range(len(msgs))]  # fmt: skip
        found = sorted(run.events, key=lambda e: -e.peak_score)[:MAX_ALERTS]
        alerts = [ClipAlert(start_frame=e.start_seq, alert_frame=e.open_seq, end_frame=e.end_seq, peak_score=float(e.peak_score),
                            box=e.box) for e in found]  # fmt: skip
        seconds = time.perf_counter() - t0
        metrics.SCORE_SECONDS.observe(seconds)
        return ScoreResult(model_id=predictor.model_id, model_version=predictor.model_version, threshold=float(cal.threshold),
                           frames=rows, alerts=alerts, seconds=round(seconds, 3))  # fmt: skip

    def close(self) -> None:
        """Stop the pool (clips in progress finish in their threads)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
