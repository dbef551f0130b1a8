"""docs/settings.md is generated from the settings models (tools/settings_ref.py) and must be up to date."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from vigil.shared.settings import ServiceSettings
from vigil.tools import settings_ref

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "settings.md"


def test_settings_doc_is_up_to_date() -> None:
    assert DOC.read_text() == settings_ref.render(), (
        "docs/settings.md is out of date: run `python -m vigil.tools.settings_ref` (or `vigil settings-doc`)"
    )


def test_every_service_settings_class_is_documented() -> None:
    import vigil.services

    for mod in pkgutil.walk_packages(vigil.services.__path__, "vigil.services."):
        if mod.name.endswith(".settings"):
            importlib.import_module(mod.name)
    classes = {f"{c.__module__}:{c.__name__}" for c in _subclasses(ServiceSettings)}
    documented = {s.target for s in settings_ref.SECTIONS}
    assert classes <= documented, f"settings classes missing from the reference: {sorted(classes - documented)}"


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        if sub.__module__.startswith("vigil.services."):
            out.add(sub)
        out |= _subclasses(sub)
    return out


def test_secrets_are_never_shown(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("VIGIL_REDIS_PASSWORD", "hunter2-must-not-appear")
    monkeypatch.setenv("VIGIL_NOTIFY_MQTT_PASSWORD", "hunter3-must-not-appear")
    text = settings_ref.render()
    assert "hunter2" not in text and "hunter3" not in text
    for section in settings_ref.SECTIONS:
        for row in settings_ref.rows_of(section):
            if settings_ref.SECRET_NAME.search(row.env.lower()):
                assert row.default == "(secret)", row
    names = settings_ref.env_names()
    assert {"VIGIL_SCORER_SCORING__GRACE_FRAMES", "VIGIL_INGEST_PRODUCER__ACKS", "VIGIL_API_TOKENS_FILE",
            "VIGIL_EVIDENCE_METRICS_PORT", "VIGIL_NOTIFY_MQTT_HOST", "VIGIL_KAFKA_SASL_PASSWORD_FILE"} <= names


def test_docstring_example() -> None:
    import doctest

    failures, tried = doctest.testmod(settings_ref)
    assert tried > 0 and failures == 0
