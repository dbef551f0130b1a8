"""The Helm chart in infra/helm/vigil.

Two levels:

* always (no helm needed): Chart.yaml, values.yaml and the example values parse, every template the chart
  needs is there, every ``include`` names a defined template, the example values only use keys the chart
  has;
* marker ``helm`` (deselected by default, ``make test-helm``): ``helm lint`` and ``helm template`` with the
  default values and with the GPU, KEDA and external-Kafka/Redis examples, then checks of the rendered
  objects (kinds, probes on the real health paths, PDBs that never block a drain, commands the `vigil` CLI
  has, GPU scheduling, KEDA's TriggerAuthentication, no secret in the environment). The helm binary is
  ``.state/bin/helm``; when it is missing the test fails with the command that builds it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "infra" / "helm" / "vigil"
EXAMPLES = REPO / "infra" / "helm" / "examples"
HELM = REPO / ".state" / "bin" / "helm"
HELM_VERSION = "v3.18.6"
BUILD_HELM = f"GOBIN={REPO / '.state' / 'bin'} go install helm.sh/helm/v3/cmd/helm@{HELM_VERSION}   (or: make test-helm)"
SERVICES = ("ingest", "worker", "scorer", "evidence", "notify", "api")
TEMPLATES = ("_helpers.tpl", "_pod.tpl", "configmap.yaml", "secrets.yaml", "deployments.yaml", "pdb.yaml",
             "services.yaml", "topics-job.yaml", "kafka.yaml", "redis.yaml", "keda.yaml", "NOTES.txt")  # fmt: skip
API = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "PodDisruptionBudget": "policy/v1", "Service": "v1",
       "ConfigMap": "v1", "Secret": "v1", "Job": "batch/v1", "ScaledObject": "keda.sh/v1alpha1",
       "TriggerAuthentication": "keda.sh/v1alpha1"}  # fmt: skip


# -- structure (always) -------------------------------------------------------------------------------
def test_chart_metadata_and_values_parse() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "vigil" and chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"]), chart["version"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version, "appVersion (the default image tag) must follow pyproject's version"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for name in SERVICES:
        svc = values[name]
        assert {"enabled", "replicas", "resources", "pdb"} <= set(svc), f"values.{name} lacks a standard key"
    assert {"nodeSelector", "tolerations", "enabled", "count"} <= set(values["worker"]["gpu"])
    assert {"bundled", "bootstrapServers", "sasl", "tls"} <= set(values["kafka"])
    assert {"bundled", "url", "existingSecret"} <= set(values["redis"])
    assert values["keda"]["enabled"] is False, "KEDA needs its CRDs: off unless asked for"


def test_every_template_is_there_and_every_include_is_defined() -> None:
    present = {p.name for p in (CHART / "templates").iterdir()}
    assert set(TEMPLATES) <= present, f"missing templates: {set(TEMPLATES) - present}"
    text = "\n".join(p.read_text() for p in (CHART / "templates").iterdir())
    defined = set(re.findall(r'define "([^"]+)"', text))
    used = set(re.findall(r'include "([^"]+)"', text))
    assert used <= defined, f"templates include undefined {used - defined}"
    assert text.count("{{") == text.count("}}"), "unbalanced template braces"


def _keys(tree: Any, prefix: str = "") -> set[str]:
    if not isinstance(tree, dict):
        return set()
    out = set()
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.add(path)
        out |= _keys(value, path)
    return out


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_values_use_only_keys_of_the_chart(example: str) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    known = _keys(defaults)
    free = ("env", "nodeSelector", "values", "podAnnotations")  # maps whose keys are the user's
    for key in _keys(yaml.safe_load((EXAMPLES / example).read_text())):
        if any(f".{f}." in f".{key}" for f in free) and not key.endswith(free):
            continue
        assert key in known, f"{example}: {key} is not a value of the chart (typo?)"


def test_every_vigil_variable_in_the_chart_is_a_real_setting() -> None:
    from vigil.tools.settings_ref import env_names

    known = env_names()
    texts = [p.read_text() for p in (CHART / "templates").iterdir()] + [(CHART / "values.yaml").read_text()]
    texts += [p.read_text() for p in EXAMPLES.glob("*.yaml")]
    for text in texts:
        for name in re.findall(r"\bVIGIL_[A-Z0-9_]*[A-Z0-9]\b", text):
            assert name in known, f"the chart sets {name}, which no settings class reads"
    for service in SERVICES:
        for suffix in ("METRICS_PORT", "METRICS_HOST"):
            assert f"VIGIL_{service.upper()}_{suffix}" in known


# -- rendered (marker helm) ---------------------------------------------------------------------------
KUBE_VERSION = "1.31.0"  # a helm built with `go install` assumes Kubernetes 1.20, below the chart's kubeVersion


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (the API server and helm install do)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        dupes = {k for k in keys if keys.count(k) > 1}
        if dupes:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {dupes}", node.start_mark)
        return super().construct_mapping(node, deep)


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"helm is not at {HELM}. Build it with: {BUILD_HELM}", pytrace=False)
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)


def _render(*value_files: str, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    args = ["template", "vigil", str(CHART), "--namespace", "vigil", "--kube-version", KUBE_VERSION]
    for f in value_files:
        args += ["-f", str(EXAMPLES / f)]
    for s in sets:
        args += ["--set", s]
    out = _helm(*args)
    assert out.returncode == 0, f"helm {shlex.join(args)}\n{out.stderr}"
    return [d for d in yaml.load_all(out.stdout, Loader=_StrictLoader) if d]


def _cli_commands() -> set[str]:
    from vigil import cli

    cli._register_all()
    return {c.name or c.callback.__name__ for c in cli.app.registered_commands} | {
        g.name for g in cli.app.registered_groups
    }


def _kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


CASES = {"default": (), "gpu": ("values-gpu.yaml",), "keda": ("values-keda.yaml",),
         "external": ("values-external.yaml",),
         "all": ("values-external.yaml", "values-gpu.yaml", "values-keda.yaml")}  # fmt: skip


@pytest.mark.helm
@pytest.mark.parametrize("case", sorted(CASES))
def test_helm_lint(case: str) -> None:
    args = ["lint", "--strict", str(CHART)] + [a for f in CASES[case] for a in ("-f", str(EXAMPLES / f))]
    out = _helm(*args)
    assert out.returncode == 0, f"helm {shlex.join(args)}\n{out.stdout}\n{out.stderr}"


@pytest.mark.helm
@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_objects(case: str) -> None:
    docs = _render(*CASES[case])
    for doc in docs:
        assert API.get(doc["kind"]) == doc["apiVersion"], (doc["kind"], doc["apiVersion"])
    deployments, pdbs = _kind(docs, "Deployment"), _kind(docs, "PodDisruptionBudget")
    assert set(deployments) == {f"vigil-{s}" for s in SERVICES}
    commands = _cli_commands()
    for name, dep in deployments.items():
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        (container,) = pod["containers"]
        assert container["args"][0] in commands, f"{name} runs `vigil {container['args'][0]}`, unknown to the CLI"
        _check_probes(name, container)
        _check_no_secret_in_env(name, container)
        pdb = pdbs[name]["spec"]
        assert pdb["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
        replicas = spec.get("replicas", 1)
        allowed = pdb["maxUnavailable"] if "maxUnavailable" in pdb else replicas - pdb["minAvailable"]
        assert allowed >= 1, f"{name}: its PDB allows no disruption, so it blocks every node drain"
    assert deployments["vigil-scorer"]["spec"]["replicas"] >= 2, "one scorer must stay up while the PDB holds"
    assert deployments["vigil-ingest"]["spec"]["strategy"]["type"] == "Recreate"
    (job,) = _kind(docs, "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["topics"]


def _check_probes(name: str, container: dict[str, Any]) -> None:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    prefix = f"VIGIL_{name.removeprefix('vigil-').upper()}_"
    assert env[prefix + "METRICS_PORT"] == str(ports["metrics"]) and env[prefix + "METRICS_HOST"] == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]


def _check_no_secret_in_env(name: str, container: dict[str, Any]) -> None:
    for e in container["env"]:
        assert not re.search(r"(PASSWORD|TOKENS?|SECRET)$", e["name"]), f"{name}: {e['name']} in the environment"
        assert "valueFrom" not in e, f"{name}: {e['name']} comes from a Secret into the environment"


@pytest.mark.helm
def test_gpu_workers_are_scheduled_on_gpus_and_cpu_workers_are_not() -> None:
    cpu = _kind(_render(), "Deployment")["vigil-worker"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in str(cpu) and {"name": "KERAS_BACKEND", "value": "tensorflow"} in cpu["containers"][0]["env"]
    gpu = _kind(_render("values-gpu.yaml"), "Deployment")["vigil-worker"]["spec"]["template"]["spec"]
    (container,) = gpu["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-gpu") and {"name": "KERAS_BACKEND", "value": "jax"} in container["env"]
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])


@pytest.mark.helm
def test_keda_scales_workers_on_lag_with_sasl_tls_credentials() -> None:
    plain = _render("values-keda.yaml")
    (scaled,) = _kind(plain, "ScaledObject").values()
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka" and trigger["metadata"]["topic"] == "vigil.frames"
    assert trigger["metadata"]["consumerGroup"] == "vigil-worker" and int(trigger["metadata"]["lagThreshold"]) > 0
    assert "authenticationRef" not in trigger and not _kind(plain, "TriggerAuthentication")
    assert "replicas" not in _kind(plain, "Deployment")["vigil-worker"]["spec"], "KEDA owns the worker count"
    docs = _render("values-external.yaml", "values-keda.yaml")
    (trigger,) = next(iter(_kind(docs, "ScaledObject").values()))["spec"]["triggers"]
    auth = _kind(docs, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert {"sasl", "username", "password", "tls", "ca"} <= set(refs)
    assert refs["password"]["name"] == "vigil-kafka" and refs["ca"]["name"] == "vigil-kafka-tls"
    keda_secret = _kind(docs, "Secret")[refs["sasl"]["name"]]["stringData"]
    assert keda_secret == {"sasl": "scram_sha512", "username": "vigil", "tls": "enable"}
    assert not _kind(_render(), "ScaledObject"), "no ScaledObject unless keda.enabled"


@pytest.mark.helm
def test_bundled_or_external_kafka_and_redis() -> None:
    bundled = _render()
    assert set(_kind(bundled, "StatefulSet")) == {"vigil-kafka", "vigil-redis"}
    env = {e["name"]: e.get("value") for e in _kind(bundled, "Deployment")["vigil-scorer"]["spec"]["template"]
           ["spec"]["containers"][0]["env"]}  # fmt: skip
    assert env["VIGIL_KAFKA_BOOTSTRAP_SERVERS"] == "vigil-kafka:9092" and env["VIGIL_REDIS_URL"] == "redis://vigil-redis:6379/0"
    redis_cmd = " ".join(_kind(bundled, "StatefulSet")["vigil-redis"]["spec"]["template"]["spec"]["containers"][0]["command"])
    assert "/run/secrets/vigil/redis_password" in redis_cmd and "--requirepass" not in redis_cmd
    external = _render("values-external.yaml")
    assert not _kind(external, "StatefulSet")
    assert not {"vigil-redis", "vigil-kafka", "vigil-api-tokens"} & set(_kind(external, "Secret")), "existing Secrets are used"
    scorer = _kind(external, "Deployment")["vigil-scorer"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in scorer["containers"][0]["env"]}
    assert env["VIGIL_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["VIGIL_KAFKA_SASL_PASSWORD_FILE"].startswith("/run/secrets/")
    sources = scorer["volumes"][[v["name"] for v in scorer["volumes"]].index("secrets")]["projected"]["sources"]
    assert {s["secret"]["name"] for s in sources} == {"vigil-kafka", "vigil-redis"}


@pytest.mark.helm
@pytest.mark.parametrize("bad, message", [
    ("ingest.pdb.maxUnavailable=0", "blocks every node drain"),
    ("kafka.securityProtocol=SASL_SSL", "bundled Kafka speaks PLAINTEXT only"),
    ("kafka.bundled=false", "kafka.bootstrapServers is required"),
    ("env.VIGIL_REDIS_PASSWORD=x", "looks like a secret"),
])  # fmt: skip
def test_values_that_would_break_a_site_are_refused(bad: str, message: str) -> None:
    out = _helm("template", "vigil", str(CHART), "--kube-version", KUBE_VERSION, "--set", bad)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def _secret_names(pod: dict[str, Any]) -> set[str]:
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


@pytest.mark.helm
def test_each_pod_gets_only_its_secrets_and_binds_metrics_to_the_pod_address() -> None:
    docs = _render("values-external.yaml")
    pods = {n.removeprefix("vigil-"): d["spec"]["template"]["spec"] for n, d in _kind(docs, "Deployment").items()}
    kafka = {"vigil-kafka", "vigil-kafka-tls"}
    assert {name: _secret_names(pod) for name, pod in pods.items()} == {
        "ingest": kafka | {"vigil-cameras"}, "worker": kafka, "scorer": kafka | {"vigil-redis"},
        "evidence": kafka | {"vigil-redis"}, "notify": {"vigil-redis"}, "api": {"vigil-redis", "vigil-api-tokens"},
    }  # fmt: skip
    for name, pod in pods.items():
        (container,) = pod["containers"]
        assert {"name": f"VIGIL_{name.upper()}_METRICS_HOST", "value": "0.0.0.0"} in container["env"]
    assert _secret_names(_kind(_render(), "Deployment")["vigil-worker"]["spec"]["template"]["spec"]) == set()
