"""Fixtures of the model tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from model_testutils import tiny_config

from vigil.model.config import PredNetConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config() -> PredNetConfig:
    """The tiny config."""
    return tiny_config()


@pytest.fixture(scope="session")
def ped2_root() -> Path:
    """UCSD Ped2: ``$VIGIL_PED2_DIR`` or ``../shared/data/ucsd_ped2`` when present, else the mini set shipped in
    ``data/ped2-mini`` (Test001, Test002, Train015, Train016: every clip these tests use); fails loudly if neither."""
    from vigil.model.data import ped2_mini_dir

    path = Path(os.environ.get("VIGIL_PED2_DIR", REPO.parent / "shared" / "data" / "ucsd_ped2"))
    if (path / "test" / "Test001.mkv").is_file():
        return path
    mini = ped2_mini_dir()
    if mini is None:
        pytest.fail(f"UCSD Ped2 not found at {path} and no data/ped2-mini in the checkout; set VIGIL_PED2_DIR.")
    return mini
