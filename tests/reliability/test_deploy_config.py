"""Deployment settings that reliability and secrecy rely on (issue #15): compose binds the metrics server to
the container address, the Redis password never reaches a command line, SASL PLAIN in clear text warns. The
Helm chart's side (each pod gets only its secrets, ingest is recreated, metrics bound to the pod address)
is checked on the rendered chart by tests/test_helm.py (marker helm)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from vigil.shared.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[2]


def test_metrics_bind_to_the_container_address_in_compose() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    for name in ("ingest", "worker", "scorer", "evidence", "notify", "api"):
        assert compose[name]["environment"][f"VIGIL_{name.upper()}_METRICS_HOST"] == "0.0.0.0"
    assert compose["api"]["environment"]["VIGIL_API_TOKENS_FILE"].startswith("/run/secrets/")


def test_redis_password_is_not_on_a_command_line() -> None:
    redis = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--requirepass" not in command and "redis_password" in command
    assert "redis-server /tmp/redis-auth.conf" in command


def test_sasl_plain_over_plaintext_warns_without_the_password(caplog: pytest.LogCaptureFixture) -> None:
    settings = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="vigil",
                             sasl_password="hunter2")  # fmt: skip
    with caplog.at_level(logging.WARNING):
        settings.warn_insecure()
        KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="v").warn_insecure()
    (record,) = caplog.records
    assert "clear text" in record.getMessage() and "SASL_SSL" in record.getMessage()
    assert "hunter2" not in record.getMessage()
