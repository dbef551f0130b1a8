"""The webhooks file: validation, secrets from files or the environment, and nothing secret in errors or reprs."""

from __future__ import annotations

import json

import pytest

from vigil.services.notify import core
from vigil.services.notify.hooks import WebhookDefaults, WebhookError, load_webhooks, parse_webhooks

SECRET = "s3cret-value-0123456789"


def _parse(*entries: dict, environ: dict | None = None):  # noqa: ANN202
    return parse_webhooks({"webhooks": list(entries)}, WebhookDefaults(max_attempts=4), environ or {"S": SECRET})


def test_yaml_and_json_files_with_secret_file_and_overrides(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "secret").write_text(SECRET + "\n")
    entry = {"name": "ops", "url": "https://h.example/p?token=T0K", "secret_file": str(tmp_path / "secret"),
             "cameras": ["a"], "events": ["open", "close"], "max_attempts": 9}  # fmt: skip
    (tmp_path / "hooks.yaml").write_text(f"webhooks:\n  - {json.dumps(entry)}\n")
    (tmp_path / "hooks.json").write_text(json.dumps({"webhooks": [entry]}))
    for name in ("hooks.yaml", "hooks.json"):
        [hook] = load_webhooks(tmp_path / name, WebhookDefaults())
        assert (hook.secret, hook.max_attempts, hook.cameras, hook.events) == (SECRET.encode(), 9, {"a"}, {"open", "close"})
        assert hook.host == "https://h.example" and "T0K" not in repr(hook) and SECRET not in repr(hook)
    assert load_webhooks(None, WebhookDefaults()) == []


@pytest.mark.parametrize(("entry", "expected"), [
    ({"name": "a", "url": "https://x.example", "secret_env": "MISSING"}, "secret in $MISSING is missing or shorter"),
    ({"name": "a", "url": "https://x.example", "secret_env": "SHORT"}, "shorter than 16 bytes"),
    ({"name": "a", "url": "ftp://x.example/T0K", "secret_env": "S"}, "must be an http:// or https:// URL"),
    ({"name": "a", "url_env": "NOPE", "secret_env": "S"}, "(from $NOPE)"),
    ({"name": "a", "url": "https://x.example", "url_env": "U", "secret_env": "S"}, "exactly one of url and url_env"),
    ({"name": "a", "url": "https://x.example"}, "exactly one of secret_file and secret_env"),
    ({"name": "a", "url": "https://x.example", "secret_env": "S", "secret": "inline"}, "Extra inputs"),
    ({"name": "a b", "url": "https://x.example", "secret_env": "S"}, "name"),
    ({"name": "a", "url": "https://x.example", "secret_env": "S", "events": ["boom"]}, "events"),
])  # fmt: skip
def test_invalid_entries_are_refused_without_secrets(entry: dict, expected: str) -> None:
    with pytest.raises(WebhookError) as err:
        _parse(entry, environ={"S": SECRET, "SHORT": "short"})
    assert expected in str(err.value) and SECRET not in str(err.value) and "T0K" not in str(err.value)


def test_names_are_unique_and_url_env_is_read() -> None:
    with pytest.raises(WebhookError, match="unique"):
        _parse({"name": "a", "url": "http://x", "secret_env": "S"}, {"name": "a", "url": "http://y", "secret_env": "S"})
    [hook] = _parse({"name": "a", "url_env": "U", "secret_env": "S"}, environ={"S": SECRET, "U": "http://h:81/k"})
    assert (hook.url, hook.host, hook.max_attempts) == ("http://h:81/k", "http://h:81", 4)


def test_bad_files_say_what_is_wrong(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(WebhookError, match="cannot read"):
        load_webhooks(tmp_path / "absent.yaml", WebhookDefaults())
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(WebhookError, match="not valid json"):
        load_webhooks(tmp_path / "bad.json", WebhookDefaults())
    (tmp_path / "bad.yaml").write_text("webhooks: [")
    with pytest.raises(WebhookError, match="not valid yaml"):
        load_webhooks(tmp_path / "bad.yaml", WebhookDefaults())


def test_payload_links_ledger_and_status_classes() -> None:
    a = core.parse_alert({b"json": json.dumps({"alert_id": "c:1:2", "camera_id": "c", "event": "update", "start_seq": 1,
                                               "start_ns": 2, "peak_score": 5, "score": 4, "threshold": 3,
                                               "peak_seq": 1, "snapshot_key": "vigil:snapshot:c:1:2"})})  # fmt: skip
    body = json.loads(core.alert_payload(a, "5-1", core.links("", a.alert_id, {}, True), {}))
    assert body["type"] == "update" and body["links"] == {"alert": "/v1/alerts/c:1:2", "snapshot": "/v1/alerts/c:1:2/snapshot"}
    with pytest.raises(core.BadAlertError, match="schema version"):
        core.parse_alert({"json": a.model_copy(update={"schema_version": 99}).to_json()})
    ledger = core.Ledger()
    with pytest.raises(ValueError):
        ledger.open("1-0", 0)
    assert core.classify_status(201) == "ok" and core.classify_status(301) == "reject"
    assert core.entry_time_ns("12-3") == 12_000_000 and core.redact_url("http://[bad") == "<invalid url>"
