"""Repository-level checks: the CLI, docker-compose.yml, and the local stack scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vigil import cli

REPO = Path(__file__).resolve().parent.parent


def _cli_commands() -> set[str]:
    cli._register_all()
    runner = CliRunner()
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0, result.output
    return {c.name or c.callback.__name__ for c in cli.app.registered_commands} | {
        g.name for g in cli.app.registered_groups
    }


def test_vigil_help_runs_as_installed_script() -> None:
    out = subprocess.run([str(REPO / ".venv" / "bin" / "vigil"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "smoke" in out.stdout and "bench" in out.stdout


def test_compose_services_exist_and_use_cli_commands() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("kafka", "redis", "ingest", "worker", "scorer", "api"):
        assert name in services, f"docker-compose.yml lacks service {name}"
    commands = _cli_commands()
    for name in ("ingest", "worker", "scorer", "api"):
        svc = services[name]
        assert svc["build"] or svc["image"]
        cmd = svc["command"]
        argv = cmd if isinstance(cmd, list) else cmd.split()
        assert argv[0] in commands, f"compose service {name} runs `vigil {argv[0]}`, which the CLI lacks"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert "container_name" not in services["worker"], "a container_name prevents --scale worker=N"
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "requirepass" in redis_cmd


@pytest.mark.integration
def test_stack_up_is_idempotent_and_status_reports(kafka_settings, redis_settings) -> None:  # noqa: ANN001
    stack = REPO / "infra" / "local" / "stack.sh"
    up = subprocess.run([str(stack), "up"], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert "already running" in up.stderr
    status = subprocess.run([str(stack), "status"], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "kafka: up" in status.stderr and "redis: up" in status.stderr
