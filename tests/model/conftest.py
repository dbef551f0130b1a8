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
    """UCSD Ped2 (``$VIGIL_PED2_DIR`` or ``../shared/data/ucsd_ped2``); fails loudly if missing."""
    path = Path(os.environ.get("VIGIL_PED2_DIR", REPO.parent / "shared" / "data" / "ucsd_ped2"))
    if not (path / "test" / "Test001.mkv").is_file():
        pytest.fail(f"UCSD Ped2 not found at {path}; set VIGIL_PED2_DIR to the folder with test/ and labels.")
    return path
