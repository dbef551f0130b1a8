"""The Grafana dashboard and the Prometheus rules name only metrics that Vigil exports.

The exported names are read from prometheus_client's registry after importing every service's
``metrics`` module (``vigil.services.<service>.metrics``, created through ``vigil.shared.telemetry``), so
the suffixes (``_total``, ``_bucket``, ``_sum``, ``_count``) are the ones Prometheus scrapes. Label
names in selectors and ``by (...)`` clauses must be labels of the metric. The rules are checked with
``promtool check rules`` when promtool is on the PATH, else for their YAML structure only.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "infra" / "monitoring" / "grafana" / "vigil.json"
RULES = REPO / "infra" / "monitoring" / "prometheus" / "rules.yml"
BUILTIN = {"up"}  # Prometheus's own series
_METRIC = re.compile(r"\b(vigil_[a-z0-9_]+)\b(\{[^}]*\})?")
_BY = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
_GRAFANA_VARS = {"$__rate_interval", "$__interval", "$camera"}


def exported() -> dict[str, set[str]]:
    """Every metric name the services register (with suffixes) -> its label names."""
    from prometheus_client import REGISTRY

    import vigil.services

    for mod in pkgutil.walk_packages(vigil.services.__path__, "vigil.services."):
        if mod.name.endswith(".metrics"):
            importlib.import_module(mod.name)
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("_count", "_sum", "_created"), "gauge": ("",)}  # fmt: skip
    names = {}
    for collector in set(REGISTRY._names_to_collectors.values()):  # noqa: SLF001 - no public listing
        base, kind = getattr(collector, "_name", None), getattr(collector, "_type", None)
        if not base or not base.startswith("vigil_") or kind not in suffixes:
            continue
        labels = set(collector._labelnames) | {"instance", "job"}  # noqa: SLF001
        for suffix in suffixes[kind]:
            names[base + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if v.get("definition")]
    return exprs


def rule_exprs() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def unknown_names(exprs: list[str], names: dict[str, set[str]]) -> list[str]:
    """``metric`` or ``metric{label}`` problems of the expressions, one line each."""
    problems = []
    for expr in exprs:
        for metric, selector in _METRIC.findall(expr):
            if metric not in names:
                problems.append(f"{metric} (in {expr!r}) is exported by no service")
                continue
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector or ""):
                if label not in names[metric]:
                    problems.append(f"{metric} has no label {label!r} (in {expr!r})")
        for group in _BY.findall(expr):
            used = {m for m, _ in _METRIC.findall(expr) if m in names}
            for label in filter(None, (s.strip() for s in group.split(","))):
                if used and not any(label in names[m] for m in used):
                    problems.append(f"label {label!r} of `by/on ({group})` is on none of {sorted(used)}")
    return problems


def test_dashboard_names_only_exported_metrics() -> None:
    problems = unknown_names(dashboard_exprs(), exported())
    assert not problems, "\n".join(problems)


def test_rules_name_only_exported_metrics() -> None:
    problems = unknown_names(rule_exprs(), exported())
    for expr in rule_exprs():
        others = set(re.findall(r"\b([a-z_]+)\{", expr)) - {m for m, _ in _METRIC.findall(expr)}
        assert others <= BUILTIN, f"{expr}: {others - BUILTIN} is neither Vigil's nor Prometheus's"
    assert not problems, "\n".join(problems)


def test_dashboard_covers_what_an_operator_needs() -> None:
    dash: dict[str, Any] = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] == "Vigil" and isinstance(dash["schemaVersion"], int)
    text = " ".join(dashboard_exprs())
    for what, metric in [("cameras online", "vigil_ingest_camera_state"), ("fps per camera", "vigil_ingest_frames_per_second"),
                         ("dropped frames by reason", "vigil_ingest_frames_dropped_total"),
                         ("consumer lag", "vigil_worker_consumer_lag"), ("step time", "vigil_worker_step_seconds_bucket"),
                         ("scores per camera", "vigil_scorer_camera_score"),
                         ("thresholds per camera", "vigil_scorer_camera_threshold"),
                         ("alerts", "vigil_scorer_alerts_published_total"), ("outbox", "vigil_scorer_outbox")]:  # fmt: skip
        assert metric in text, f"the dashboard has no panel for {what} ({metric})"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for var in re.findall(r"\$\{?\w+\}?", text):
        assert var.strip("{}").replace("${", "$") in _GRAFANA_VARS, f"unknown dashboard variable {var}"


def test_rules_structure_and_promtool() -> None:
    rules = yaml.safe_load(RULES.read_text())
    names = set()
    for group in rules["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"]
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["expr"]
            names.add(rule["alert"])
    assert {"VigilCameraOffline", "VigilConsumerLagGrowing", "VigilScorerOutboxGrowing", "VigilNoScoresFromCamera"} <= names
    promtool = shutil.which("promtool")
    if promtool:  # absent on CI machines: the structure above is then what is checked
        out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
