"""Tokens file, roles and CORS of `vigil api` (no server needed beyond the session's Redis client)."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import VIEWER, auth


@pytest.mark.parametrize(("text", "says"), [("admin:" + "a" * 20, "role 'admin'"), ("viewer:short", "at least 16"),
                                            ("viewer " + "a" * 20, "expected"), ("# only a comment\n", "no token")])  # fmt: skip
def test_a_bad_tokens_file_is_refused_without_echoing_the_token(text: str, says: str) -> None:
    from vigil.services.api.auth import Tokens

    with pytest.raises(ValueError, match=says) as err:
        Tokens.parse(text)
    assert "a" * 20 not in str(err.value)


def test_build_service_turns_a_bad_tokens_file_into_a_startup_error(api_settings, tmp_path) -> None:  # noqa: ANN001
    from vigil.services.api.transport import build_service
    from vigil.shared.runner import StartupError

    (tmp_path / "t").write_text("root:" + "x" * 20)
    with pytest.raises(StartupError, match="line 1"):
        build_service(api_settings.model_copy(update={"tokens_file": tmp_path / "t"}))
    with pytest.raises(StartupError, match="cannot read"):
        build_service(api_settings.model_copy(update={"tokens_file": tmp_path / "missing"}))


def test_cors_is_off_by_default_and_on_for_listed_origins(service) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from vigil.services.api.app import create_app

    pre = {"Origin": "https://console.example", "Access-Control-Request-Method": "GET"}
    with TestClient(create_app(service.ctx)) as off:
        assert "access-control-allow-origin" not in off.get("/v1/cameras", headers=auth(VIEWER) | pre).headers
    settings = service.ctx.settings.model_copy(update={"cors_origins": ["https://console.example"]})
    with TestClient(create_app(dataclasses.replace(service.ctx, settings=settings))) as on:
        r = on.options("/v1/cameras", headers=pre)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://console.example"
        assert "access-control-allow-origin" not in on.options("/v1/cameras", headers=pre | {"Origin": "https://evil.example"}).headers
