"""The models a worker serves: the default one and per-camera overrides, with hot swap.

Each model directory is watched by polling a *fingerprint* (the name, size and modification time of
every file in it). When the fingerprint changes and then holds still for one more poll (so a directory
being copied is not read half-written), the model is loaded again and swapped in. Every load gets a new
``token``; camera states carry the token of the model that made them, so a swap resets the states of
the cameras that model serves on their next frame (see :mod:`vigil.services.worker.state`).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from vigil.model.features import FrameFeatures

log = logging.getLogger(__name__)

DEFAULT_KEY = "default"


class StepOutputLike(Protocol):
    """What ``Predictor.step`` returns (see ``vigil.model.streaming.StepOutput``): ``features`` holds
    one ``(B,)`` float32 array per feature, ``heatmaps`` is ``(B, h, w)``."""

    predictions: np.ndarray
    features: FrameFeatures
    heatmaps: np.ndarray
    new_states: list[list[np.ndarray]]
    motion_maps: np.ndarray | None


class Predictor(Protocol):
    """The streaming predictor interface the worker codes against (``vigil.model.streaming``)."""

    model_id: str
    model_version: str
    input_shape: tuple[int, int, int]
    heatmap_shape: tuple[int, int]

    def initial_state(self) -> list[np.ndarray]:
        """One camera's zero state, without batch dimension."""
        ...

    def step(self, frames: np.ndarray, states: list[list[np.ndarray]]) -> StepOutputLike:
        """One step over ``frames`` (B, H, W, C) uint8 with one state per frame."""
        ...


Loader = Callable[[Path], Predictor]


def import_loader(spec: str) -> Loader:
    """Resolve ``'module:Class'`` to that class's ``load`` method.

    Example:
        >>> import_loader("pathlib:Path").__name__
        'Path'
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"predictor must be 'module:Class'. Received: {spec!r}")
    cls = getattr(importlib.import_module(module_name), attr)
    return getattr(cls, "load", cls)


def fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of every file under ``path`` (empty when it does not exist)."""
    if path.is_file():
        st = path.stat()
        return ((path.name, st.st_size, st.st_mtime_ns),)
    out = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = Path(root) / name
            try:
                st = p.stat()
            except FileNotFoundError:  # removed while we walk: next poll sees it
                continue
            out.append((str(p.relative_to(path)), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


_tokens = count(1)


@dataclass
class ModelSlot:
    """One loaded model and the directory it came from."""

    key: str
    path: Path
    predictor: Predictor
    token: int
    print_: tuple = field(default=(), repr=False)
    pending: tuple | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        """``model_id:model_version`` for logs."""
        return f"{self.predictor.model_id}:{self.predictor.model_version}"


class ModelRegistry:
    """The default model plus per-camera overrides, each reloadable on change.

    Args:
        loader: Builds a predictor from a model directory (e.g. ``StreamingPredictor.load``).
        default_dir: The default model directory.
        camera_dirs: Camera id -> model directory of its fine-tuned model.
    """

    def __init__(self, loader: Loader, default_dir: Path, camera_dirs: Mapping[str, Path] | None = None) -> None:
        self._loader = loader
        self._camera_key = {cam: f"camera:{cam}" for cam in (camera_dirs or {})}
        dirs = {DEFAULT_KEY: Path(default_dir)} | {self._camera_key[c]: Path(p) for c, p in (camera_dirs or {}).items()}
        self._slots: dict[str, ModelSlot] = {}
        self._lock = threading.Lock()
        for key, path in dirs.items():
            self._slots[key] = self._load(key, path)

    def _load(self, key: str, path: Path) -> ModelSlot:
        print_ = fingerprint(path)
        predictor = self._loader(path)
        slot = ModelSlot(key, path, predictor, next(_tokens), print_)
        log.info("model %s loaded from %s: %s (token %d)", key, path, slot.version, slot.token)
        return slot

    def key_for(self, camera_id: str) -> str:
        """The model key serving ``camera_id``."""
        return self._camera_key.get(camera_id, DEFAULT_KEY)

    def slot(self, key: str) -> ModelSlot:
        """The current slot of a model key."""
        with self._lock:
            return self._slots[key]

    def slots(self) -> list[ModelSlot]:
        """All current slots."""
        with self._lock:
            return list(self._slots.values())

    def poll(self) -> list[str]:
        """Reload every model whose directory changed and then held still for a poll; return swapped keys.

        A model that fails to load keeps serving the old one (logged); the next change retries.
        """
        swapped = []
        for slot in self.slots():
            now = fingerprint(slot.path)
            if now == slot.print_ or not now:
                slot.pending = None
                continue
            if now != slot.pending:
                slot.pending = now  # changed: wait one more poll for it to settle
                continue
            if self._swap(slot):
                swapped.append(slot.key)
        return swapped

    def _swap(self, old: ModelSlot) -> bool:
        try:
            new = self._load(old.key, old.path)
        except (OSError, ValueError, KeyError, ImportError, RuntimeError) as exc:
            log.warning("model %s: reload from %s failed, keeping %s: %s", old.key, old.path, old.version, exc)
            old.print_, old.pending = old.pending or old.print_, None
            return False
        with self._lock:
            self._slots[old.key] = new
        log.info("model %s swapped: %s -> %s; its cameras restart from zero state", old.key, old.version, new.version)
        return True


def describe(slot: ModelSlot) -> dict[str, Any]:
    """A small dict describing a slot (for logs and the bench report)."""
    p = slot.predictor
    return {"key": slot.key, "path": str(slot.path), "model_id": p.model_id, "model_version": p.model_version,
            "input_shape": tuple(p.input_shape), "token": slot.token}  # fmt: skip
