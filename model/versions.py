"""Model versions of a site, kept for rollback: the store ``vigil retrain`` registers into (issue #17).

Layout under a store root (``VIGIL_MODEL_STORE``, default ``models/``)::

    <name>/versions/<model_version>/   a complete model directory (config, weights, model card), never changed
    <name>/current                     symlink -> versions/<model_version>: what the cameras run
    <name>/history.json                every registration and switch, newest last

A camera runs a stored model by naming ``<root>/<name>/current`` as its ``model:`` in the cameras file. The
worker watches that path and hot-swaps when the link moves (its fingerprint is the target's files); the scorer
finds the calibration of the new version in its card. Switching is one atomic ``rename`` of a new link over the
old one, so a worker never sees a half-switched model.

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> src = Path(tempfile.mkdtemp()) / "m"
    >>> src.mkdir()
    >>> _ = (src / "model_card.json").write_text(json.dumps({"model_version": "abc123"}))  # as vigil calibrate writes
    >>> store = ModelStore(Path(tempfile.mkdtemp()))
    >>> store.register("cam-1", src, {"passed": True}), store.current("cam-1")
    ('abc123', None)
    >>> store.switch("cam-1", "abc123"); store.current("cam-1")
    'abc123'
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CARD = "model_card.json"


def model_version_of(model_dir: Path) -> str:
    """The card's ``model_version``, else the hash of the weights (what the worker stamps on its scores)."""
    from vigil.model.architectures import arch_of_dir, get_architecture
    from vigil.model.streaming import weights_version

    card = json.loads((model_dir / CARD).read_text())
    if card.get("model_version"):
        return str(card["model_version"])
    return weights_version(model_dir / get_architecture(arch_of_dir(model_dir)).weights_file)


class VersionError(ValueError):
    """A version that does not exist, a bad name, or a store in an unexpected state."""


@dataclass(frozen=True)
class ModelStore:
    """The versions of every model name under ``root``."""

    root: Path

    def _name_dir(self, name: str) -> Path:
        if not NAME.match(name):
            raise VersionError(f"model name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        return self.root / name

    def link(self, name: str) -> Path:
        """The path a camera's ``model:`` names: ``<root>/<name>/current``."""
        return self._name_dir(name) / "current"

    def versions(self, name: str) -> list[str]:
        """Stored versions, oldest registration first."""
        registered = [e["version"] for e in self.history(name) if e.get("action") == "register"]
        present = {p.name for p in (self._name_dir(name) / "versions").glob("*") if p.is_dir()}
        return [v for v in dict.fromkeys(registered) if v in present]

    def current(self, name: str) -> str | None:
        """The version the cameras run, or None before the first switch."""
        link = self.link(name)
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def path(self, name: str, version: str) -> Path:
        """A stored version's model directory (it must exist)."""
        path = self._name_dir(name) / "versions" / version
        if not NAME.match(version) or not (path / CARD).is_file():
            raise VersionError(f"{name} has no version {version!r}; stored: {', '.join(self.versions(name)) or 'none'}")
        return path

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every registration and switch of ``name``, oldest first."""
        file = self._name_dir(name) / "history.json"
        return json.loads(file.read_text()) if file.is_file() else []

    def register(self, name: str, model_dir: Path, report: dict[str, Any], parent: str | None = None) -> str:
        """Copy a model directory in as a new version (named by its card's ``model_version``); returns it."""
        version = model_version_of(Path(model_dir))
        if not NAME.match(version):
            raise VersionError(f"{model_dir}/{CARD} has no usable model_version ({version!r})")
        target = self._name_dir(name) / "versions" / version
        if not target.exists():
            tmp = target.with_name(f".{version}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(model_dir, tmp)
            tmp.rename(target)
        self._log(name, {"action": "register", "version": version, "parent": parent, "report": report})
        return version

    def reject(self, name: str, version: str, report: dict[str, Any]) -> None:
        """Record a candidate that failed its gate (it is not stored; the running version stays)."""
        self._log(name, {"action": "reject", "version": version, "report": report})

    def switch(self, name: str, version: str, reason: str = "") -> None:
        """Point ``current`` at a stored version, atomically."""
        self.path(name, version)
        link, tmp = self.link(name), self._name_dir(name) / f".current.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path("versions") / version, target_is_directory=True)
        os.replace(tmp, link)
        self._log(name, {"action": "switch", "version": version, "reason": reason})

    def rollback(self, name: str, to: str | None = None) -> str:
        """Switch back to ``to``, or to the version that ran before the current one; returns it."""
        if to is None:
            switches = [e["version"] for e in self.history(name) if e.get("action") == "switch"]
            now = self.current(name)
            earlier = [v for v in switches if v != now]
            if not earlier:
                raise VersionError(f"{name}: no earlier version to roll back to (current {now})")
            to = earlier[-1]
        self.switch(name, to, reason="rollback")
        return to

    def _log(self, name: str, entry: dict[str, Any]) -> None:
        file = self._name_dir(name) / "history.json"
        file.parent.mkdir(parents=True, exist_ok=True)
        history = self.history(name) + [{"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())} | entry]
        tmp = file.with_suffix(".tmp")
        tmp.write_text(json.dumps(history, indent=1) + "\n")
        os.replace(tmp, file)
