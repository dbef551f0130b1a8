"""Per-camera recurrent state, held outside the model and keyed by camera (STYLE habit 7).

A camera's state is reset (zero state, next frames marked ``warmup``) when:

* the worker has no state for it (first frame, or its partition was newly assigned after a rebalance);
* its ``session`` changed (the camera reconnected);
* its sequence number went backwards (camera or ingest restart, or a replay after a rebalance);
* more than ``max_seq_gap`` frames are missing since the last processed one;
* the model that serves it was swapped (hot swap) since the state was made.

Example:
    >>> import numpy as np
    >>> store = StreamStateStore(warmup_frames=2, max_seq_gap=1)
    >>> st, why = store.prepare("cam-1", partition=0, seq=5, session=0, model_token=1,
    ...                         initial_state=lambda: [np.zeros(2)])
    >>> why, st.warmup_left
    (<ResetReason.NEW: 'new'>, 2)
    >>> store.advance(st, seq=5, new_state=[np.ones(2)])
    True
    >>> store.prepare("cam-1", partition=0, seq=6, session=0, model_token=1,
    ...               initial_state=lambda: [np.zeros(2)])[1] is None
    True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

log = logging.getLogger(__name__)


class ResetReason(StrEnum):
    """Why a camera's state was (re)started."""

    NEW = "new"
    SESSION = "session"
    REWIND = "rewind"
    GAP = "gap"
    MODEL = "model"


@dataclass
class StreamState:
    """The recurrent state of one camera and where it stands in the camera's frame sequence."""

    camera_id: str
    partition: int
    session: int
    model_token: int
    states: list[np.ndarray]
    warmup_left: int
    last_seq: int | None = None
    frames: int = 0  # frames processed since the last reset
    last_seen: float = field(default_factory=time.monotonic)  # monotonic time of the last frame stepped


def reset_reason(
    state: StreamState | None, *, seq: int, session: int, model_token: int, max_seq_gap: int
) -> ResetReason | None:
    """Return why ``state`` must be reset before stepping frame ``seq``, or None to continue it.

    Example:
        >>> st = StreamState("c", 0, session=0, model_token=1, states=[], warmup_left=0, last_seq=10)
        >>> [reset_reason(st, seq=s, session=0, model_token=1, max_seq_gap=2) for s in (11, 13, 14, 10)]
        [None, None, <ResetReason.GAP: 'gap'>, <ResetReason.REWIND: 'rewind'>]
    """
    if state is None:
        return ResetReason.NEW
    if state.model_token != model_token:
        return ResetReason.MODEL
    if state.session != session:
        return ResetReason.SESSION
    if state.last_seq is None:
        return None
    if seq <= state.last_seq:
        return ResetReason.REWIND
    if seq - state.last_seq - 1 > max_seq_gap:
        return ResetReason.GAP
    return None


class StreamStateStore:
    """The states of the cameras this worker owns, with the reset rules of the module docstring.

    Args:
        warmup_frames: Frames marked ``warmup`` after every reset; None: each model's own, passed to
            :meth:`prepare` (measured by ``vigil calibrate``).
        max_seq_gap: Missing frames tolerated before a reset.
    """

    def __init__(self, warmup_frames: int | None, max_seq_gap: int) -> None:
        if (warmup_frames is not None and warmup_frames < 0) or max_seq_gap < 0:
            raise ValueError(
                f"warmup_frames and max_seq_gap must be >= 0. Received: {warmup_frames=}, {max_seq_gap=}"
            )
        self.warmup_frames = warmup_frames
        self.max_seq_gap = max_seq_gap
        self._cameras: dict[str, StreamState] = {}
        self.resets: dict[ResetReason, int] = dict.fromkeys(ResetReason, 0)

    def __len__(self) -> int:
        return len(self._cameras)

    def __contains__(self, camera_id: object) -> bool:
        return camera_id in self._cameras

    def get(self, camera_id: str) -> StreamState | None:
        """The camera's state, or None when the worker holds none."""
        return self._cameras.get(camera_id)

    def cameras(self) -> list[str]:
        """Ids of the cameras with a state."""
        return list(self._cameras)

    def prepare(
        self, camera_id: str, *, partition: int, seq: int, session: int, model_token: int,
        initial_state: Callable[[], list[np.ndarray]], warmup_frames: int = 10,
    ) -> tuple[StreamState, ResetReason | None]:  # fmt: skip
        """Return the state to step frame ``seq`` with, reset first if a rule says so (a reset state is marked
        warm-up for the store's ``warmup_frames``, or for this model's ``warmup_frames`` when the store has none)."""
        state = self._cameras.get(camera_id)
        reason = reset_reason(state, seq=seq, session=session, model_token=model_token,
                              max_seq_gap=self.max_seq_gap)  # fmt: skip
        if reason is None and state is not None:
            state.partition = partition
            return state, None
        if reason is not ResetReason.NEW and state is not None:
            log.info("camera %s: state reset (%s) at seq %s after seq %s", camera_id, reason, seq, state.last_seq)
        else:
            log.debug("camera %s: new state at seq %s", camera_id, seq)
        self.resets[reason] += 1
        state = StreamState(camera_id, partition, session=session, model_token=model_token,
                            states=initial_state(),
                            warmup_left=warmup_frames if self.warmup_frames is None else self.warmup_frames)
        self._cameras[camera_id] = state
        return state, reason

    @staticmethod
    def advance(state: StreamState, *, seq: int, new_state: list[np.ndarray]) -> bool:
        """Store the state after stepping frame ``seq``; return whether that frame was a warmup frame."""
        warmup = state.warmup_left > 0
        if warmup:
            state.warmup_left -= 1
        state.states = new_state
        state.last_seq = seq
        state.frames += 1
        state.last_seen = time.monotonic()
        return warmup

    def drop(self, camera_id: str) -> None:
        """Forget one camera (its next frame starts from zero)."""
        if self._cameras.pop(camera_id, None) is not None:
            log.info("camera %s: state dropped", camera_id)

    def drop_partitions(self, partitions: Iterable[int]) -> list[str]:
        """Forget every camera last seen on one of ``partitions``; return their ids."""
        gone = set(partitions)
        dropped = [cam for cam, st in self._cameras.items() if st.partition in gone]
        for cam in dropped:
            del self._cameras[cam]
        if dropped:
            log.info("dropped the state of %d cameras on partitions %s: %s", len(dropped), sorted(gone), dropped)
        return dropped

    def evict_idle(self, idle_s: float, now: float | None = None) -> list[str]:
        """Forget the cameras with no frame stepped for more than ``idle_s`` seconds; return their ids."""
        now = time.monotonic() if now is None else now
        idle = [cam for cam, st in self._cameras.items() if now - st.last_seen > idle_s]
        for cam in idle:
            del self._cameras[cam]
        if idle:
            log.info("evicted the state of %d cameras idle for more than %.0fs: %s", len(idle), idle_s, idle[:20])
        return idle

    def clear(self) -> None:
        """Forget every camera."""
        self._cameras.clear()
