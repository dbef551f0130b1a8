"""Repository-level checks: the CLI and the local stack scripts (docker-compose.yml: tests/test_compose.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_vigil_help_runs_as_installed_script() -> None:
    out = subprocess.run([str(REPO / ".venv" / "bin" / "vigil"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "smoke" in out.stdout and "bench" in out.stdout


@pytest.mark.integration
def test_stack_up_is_idempotent_and_status_reports(kafka_settings, redis_settings) -> None:  # noqa: ANN001
    stack = REPO / "infra" / "local" / "stack.sh"
    up = subprocess.run([str(stack), "up"], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert "already running" in up.stderr
    status = subprocess.run([str(stack), "status"], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "kafka: up" in status.stderr and "redis: up" in status.stderr
