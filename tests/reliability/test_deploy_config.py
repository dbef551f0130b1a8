"""Deployment settings that reliability and secrecy rely on (issue #15): compose and Kubernetes bind the
metrics server to the pod address, the Redis password never reaches a command line, each pod gets only its
secrets, ingest is never rolled (two ingests = two sessions per camera), SASL PLAIN in clear text warns."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from vigil.shared.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"


def deployments() -> dict[str, dict]:
    out = {}
    for name in ("ingest", "worker", "scorer"):
        for doc in yaml.safe_load_all((K8S / f"{name}.yaml").read_text()):
            if doc and doc["kind"] == "Deployment":
                out[name] = doc
    return out


def secret_names(pod: dict) -> set[str]:
    """Every Secret a pod spec can read (env, envFrom, volumes, projected volumes)."""
    names = set()
    for c in pod["containers"]:
        names |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
        names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "valueFrom" in e}
    for v in pod.get("volumes", []):
        if "secret" in v:
            names.add(v["secret"]["secretName"])
        names |= {s["secret"]["name"] for s in v.get("projected", {}).get("sources", []) if "secret" in s}
    return names


def test_k8s_pods_get_only_their_secrets_and_ingest_is_recreated() -> None:
    deps = deployments()
    assert deps["ingest"]["spec"]["strategy"] == {"type": "Recreate"}
    pods = {name: d["spec"]["template"]["spec"] for name, d in deps.items()}
    assert secret_names(pods["ingest"]) == {"vigil-camera-credentials", "vigil-kafka"}
    assert secret_names(pods["worker"]) == {"vigil-kafka"}
    assert secret_names(pods["scorer"]) == {"vigil-redis", "vigil-kafka"}


def test_metrics_bind_to_the_pod_address_in_compose_and_k8s() -> None:
    for name, dep in deployments().items():
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert {"name": f"VIGIL_{name.upper()}_METRICS_HOST", "value": "0.0.0.0"} in container["env"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    for name in ("ingest", "worker", "scorer", "api"):
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
