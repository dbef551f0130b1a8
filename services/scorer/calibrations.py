"""Where each camera's calibration comes from: its own file, else its model's card, else none (online).

The scorer reads only JSON here (no model weights, no Keras):

* a camera's ``calibration:`` file in the cameras file, written by ``vigil calibrate --camera`` from that
  camera's own normal footage;
* otherwise the ``calibration.locations`` block of the model card of the camera's model directory (its
  ``model:`` in the cameras file, else the scorer's ``model_dir``, else the packaged model).

A calibration is used only for the model version it was measured with (the ``model_version`` of the
scores, the short hash of the weights file): errors of another model have another scale. A camera with
no usable calibration learns online, and its camera hash says ``scoring_mode: online``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from vigil.model.baseline import Calibration

log = logging.getLogger(__name__)

CARD_FILE = "model_card.json"
WEIGHTS_SUFFIX = ".weights.npz"


@dataclass(frozen=True)
class Found:
    """A calibration and where it came from (for logs and the camera hash)."""

    calibration: Calibration | None
    source: str


def _weights_version(model_dir: Path) -> str | None:
    weights = sorted(model_dir.glob(f"*{WEIGHTS_SUFFIX}"))
    return hashlib.sha256(weights[0].read_bytes()).hexdigest()[:12] if weights else None


def read_calibration(path: Path, model_version: str) -> Found:
    """The calibration in a model directory's card or a camera's calibration file, if it fits the version."""
    file = path / CARD_FILE if path.is_dir() else path
    try:
        data = json.loads(file.read_text())
        version = data.get("model_version") or (_weights_version(path) if path.is_dir() else None)
        block = data.get("calibration", {}).get("locations") if path.is_dir() else data.get("locations")
        if block is None:
            return Found(None, f"{file} holds no per-location calibration (run `vigil calibrate`)")
        if version != model_version:
            return Found(None, f"{file} was calibrated for model version {version}, the scores come from "
                               f"{model_version} (recalibrate: `vigil calibrate`)")  # fmt: skip
        return Found(Calibration.from_dict(block), str(file))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Found(None, f"{file} is not a usable calibration: {exc}")


class CalibrationBook:
    """Looks up, and caches, the calibration of each (camera, model version).

    Args:
        camera_files: ``{camera id: calibration file}`` from the cameras file.
        model_dirs: ``{camera id: model directory}`` from the cameras file.
        default_model: The model directory of every other camera.
    """

    def __init__(self, camera_files: dict[str, Path], model_dirs: dict[str, Path], default_model: Path) -> None:
        self.camera_files = camera_files
        self.model_dirs = model_dirs
        self.default_model = default_model
        self._cache: dict[tuple[str, str], Found] = {}

    def lookup(self, camera_id: str, model_version: str) -> Found:
        """The camera's calibration for scores of ``model_version`` (``Found.calibration`` None: online)."""
        key = (camera_id if camera_id in self.camera_files or camera_id in self.model_dirs else "", model_version)
        if key not in self._cache:
            self._cache[key] = self._find(camera_id, model_version)
            found = self._cache[key]
            level = logging.INFO if found.calibration is not None else logging.WARNING
            log.log(level, "camera %s (model %s): %s", camera_id if key[0] else "*", model_version,
                    f"calibrated from {found.source}" if found.calibration else f"no calibration, learns online: {found.source}")
        return self._cache[key]

    def _find(self, camera_id: str, model_version: str) -> Found:
        own = self.camera_files.get(camera_id)
        if own is not None:
            found = read_calibration(own, model_version)
            if found.calibration is not None:
                return found
            log.warning("camera %s: its calibration file is not used: %s", camera_id, found.source)
        return read_calibration(self.model_dirs.get(camera_id, self.default_model), model_version)
