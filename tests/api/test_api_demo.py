"""`vigil demo` starts the console: its generated tokens, the guard for a missing `vigil evidence`, and `vigil api`
started as a process and answering with the demo's operator token."""

from __future__ import annotations

import httpx
from conftest import auth, free_port


def test_demo_tokens_are_generated_once_and_private(tmp_path) -> None:  # noqa: ANN001
    from vigil.services.api.auth import Tokens
    from vigil.tools.demo import demo_tokens

    first = demo_tokens(tmp_path)
    assert set(first) == {"viewer", "operator"} and first == demo_tokens(tmp_path)
    assert (tmp_path / "api-tokens").stat().st_mode & 0o077 == 0
    assert Tokens.load(tmp_path / "api-tokens").role_of(first["operator"]) == "operator"


def test_demo_knows_which_commands_exist() -> None:
    from vigil.tools.demo import has_command

    assert has_command("api") and not has_command("no_such_service")


def test_demo_starts_the_console(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    from vigil.tools import demo

    monkeypatch.setattr(demo, "has_command", lambda name: False)  # this test is about the console only
    monkeypatch.setenv("VIGIL_API_PORT", str(free_port()))
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text("cameras: []\n")
    procs = demo._start_console(cameras, tmp_path / "logs", tmp_path)
    try:
        out = capsys.readouterr().out
        assert "no `vigil evidence` here" in out and "console: http://127.0.0.1:" in out
        url = out.split("console: ")[1].split()[0]
        token = demo.demo_tokens(tmp_path)["operator"]
        assert token in out
        assert httpx.get(url + "v1/cameras", headers=auth(token), timeout=10).status_code == 200
        assert httpx.get(url, follow_redirects=False, timeout=10).headers["location"].startswith("/login")
    finally:
        for p in procs:
            p.stop()
