"""Structure of docker-compose.yml and docker-compose.gpu.yml (no Docker engine runs on CI machines).

What `docker compose up` relies on and a test can see without an engine: every Vigil service runs a
command the `vigil` CLI has, every secret and named volume a service uses is declared, every file or
folder mounted from the repository exists (so the demo needs no editing), secrets never reach a command
line or the environment, the default file reserves no GPU (it starts without an NVIDIA runtime) and the
GPU override does, with the JAX image. The demo's camera file, RTSP source and clips agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
VIGIL_SERVICES = ("topics", "ingest", "worker", "scorer", "evidence", "notify", "api")
ALL_SERVICES = (*VIGIL_SERVICES, "kafka", "redis", "mosquitto", "rtsp-demo")
_DEFAULT = re.compile(r"\$\{(\w+):?-([^}]*)\}")


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / name).read_text())


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with the variable unset (the demo runs without a .env)."""
    assert "$" not in _DEFAULT.sub("", value.replace("$$", "")), f"unset variable without a default: {value}"
    return _DEFAULT.sub(lambda m: m.group(2), value)


def _argv(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return cmd if isinstance(cmd, list) else cmd.split()


def cli_commands() -> set[str]:
    """Top-level commands of the `vigil` CLI (as `vigil --help` lists them)."""
    from vigil import cli

    cli._register_all()
    return {c.name or c.callback.__name__ for c in cli.app.registered_commands} | {
        g.name for g in cli.app.registered_groups
    }


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load("docker-compose.yml")


def test_every_service_is_there_and_runs_a_cli_command(compose: dict[str, Any]) -> None:
    services = compose["services"]
    missing = [s for s in ALL_SERVICES if s not in services]
    assert not missing, f"docker-compose.yml lacks services {missing}"
    commands = cli_commands()
    for name in VIGIL_SERVICES:
        svc = services[name]
        assert svc.get("build") and svc.get("image", "").startswith("vigil:"), name
        assert _argv(svc)[0] in commands, f"compose service {name} runs `vigil {_argv(svc)[0]}`, which the CLI lacks"
        assert "container_name" not in svc, f"{name}: a container_name prevents --scale"
    for name in ("ingest", "worker", "scorer", "evidence", "notify", "api"):
        assert "/healthz" in " ".join(services[name]["healthcheck"]["test"]), f"{name} has no /healthz healthcheck"


def test_secrets_and_volumes_are_declared_and_mounted_files_exist(compose: dict[str, Any]) -> None:
    declared_secrets, declared_volumes = compose["secrets"], compose["volumes"]
    for name, secret in declared_secrets.items():
        path = REPO / _interpolate(secret["file"])
        assert path.is_file(), f"secret {name}: {path.relative_to(REPO)} is not in the repository"
    for name, svc in compose["services"].items():
        for secret in svc.get("secrets", []):
            assert secret in declared_secrets, f"service {name} uses undeclared secret {secret}"
        for env_file in svc.get("env_file", []):
            assert isinstance(env_file, dict) and env_file["required"] is False, f"{name}: .env must stay optional"
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / _interpolate(source)).exists(), f"service {name} mounts {source}, not in the repository"
                assert not source.startswith(".."), f"service {name} mounts {source}, outside the repository"
            else:
                assert source in declared_volumes, f"service {name} uses undeclared volume {source}"


def test_no_secret_on_a_command_line_or_in_the_environment(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    cmd = " ".join(_argv(redis))
    assert "/run/secrets/redis_password" in cmd and "printf 'requirepass" in cmd, cmd
    assert "--requirepass" not in cmd and "redis-server /tmp/redis-auth.conf" in cmd
    assert "--appendonly yes" in cmd
    assert "REDISCLI_AUTH=" in " ".join(redis["healthcheck"]["test"]) and " -a " not in " ".join(redis["healthcheck"]["test"])
    secret_values = {(REPO / _interpolate(s["file"])).read_text().strip() for s in compose["secrets"].values()}
    text = (REPO / "docker-compose.yml").read_text()
    for name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            assert not re.search(r"PASSWORD$|TOKEN$|TOKENS$|SECRET$", key), f"{name} sets secret {key} in its environment"
            assert str(value) not in secret_values, f"{name}: {key} holds a secret value"
    for value in secret_values:
        for line in value.splitlines():
            assert line.split(":")[-1] not in text, "a secret value is written in docker-compose.yml"


def test_default_compose_reserves_no_gpu_and_the_override_does(compose: dict[str, Any]) -> None:
    assert "nvidia" not in (REPO / "docker-compose.yml").read_text().replace("docker-compose.gpu.yml", "")
    for name, svc in compose["services"].items():
        assert "deploy" not in svc or "devices" not in str(svc["deploy"]), f"{name} reserves a device by default"
        assert "gpu" not in svc.get("profiles", []) or name == "worker"
    assert compose["services"]["worker"]["environment"]["KERAS_BACKEND"] == "tensorflow"
    gpu = _load("docker-compose.gpu.yml")["services"]["worker"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1
    assert gpu["build"]["args"] == {"EXTRAS": "gpu", "KERAS_BACKEND": "jax"}
    assert gpu["environment"]["KERAS_BACKEND"] == "jax" and gpu["image"] == "vigil:gpu"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "ARG EXTRAS" in dockerfile and "ARG KERAS_BACKEND" in dockerfile and "KERAS_BACKEND=${KERAS_BACKEND}" in dockerfile
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("jax[cuda") for dep in extras["gpu"]), "the `gpu` extra must install JAX with CUDA"


def test_demo_cameras_rtsp_source_and_clips_agree(compose: dict[str, Any]) -> None:
    from vigil.shared.cameras import load_cameras

    cameras = load_cameras(REPO / "config" / "cameras.yaml", sources=False)
    assert not cameras.errors and cameras.cameras
    mediamtx = yaml.safe_load((REPO / "config" / "mediamtx.yml").read_text())
    mount = next(m for m in compose["services"]["rtsp-demo"]["volumes"] if m.endswith(":/clips:ro"))
    clips = REPO / mount.split(":")[0]
    for cam in cameras.cameras:
        path = re.fullmatch(r"rtsp://rtsp-demo:8554/(\w+)", str(cam.url))
        assert path, f"demo camera {cam.id} does not read the rtsp-demo service: {cam.url}"
        run = mediamtx["paths"][path.group(1)]["runOnInit"]
        clip = re.search(r"-i /clips/(\S+)", run).group(1)
        assert (clips / clip).is_file(), f"mediamtx path {path.group(1)} plays {clip}, not in {clips}"
    assert compose["services"]["rtsp-demo"]["image"].endswith("-ffmpeg"), "runOnInit needs the image with FFmpeg"


def test_demo_secrets_are_valid_for_the_services(compose: dict[str, Any]) -> None:
    from vigil.services.api.auth import Tokens

    files = {n: REPO / _interpolate(s["file"]) for n, s in compose["secrets"].items()}
    assert len(Tokens.load(files["api_tokens"])) >= 1
    assert re.fullmatch(r"[A-Za-z0-9]{16,}", files["redis_password"].read_text().strip()), \
        "the Redis password is written into a config line: letters and digits only"
    assert "VIGIL_SECRETS_DIR" in (REPO / "infra" / "compose.env.example").read_text()
    env_example = (REPO / "infra" / "compose.env.example").read_text()
    for mentioned in re.findall(r"/run/secrets/(\w+)", env_example):
        assert mentioned in compose["secrets"], f"compose.env.example names secret {mentioned}, not declared"


def test_every_vigil_variable_set_is_a_real_setting(compose: dict[str, Any]) -> None:
    from vigil.tools.settings_ref import env_names

    known = env_names()
    gpu = _load("docker-compose.gpu.yml")
    for file, services in (("docker-compose.yml", compose["services"]), ("docker-compose.gpu.yml", gpu["services"])):
        for name, svc in services.items():
            for key in svc.get("environment") or {}:
                assert not key.startswith("VIGIL_") or key in known, f"{file}: {name} sets {key}, which no settings class reads"
    for line in (REPO / "infra" / "compose.env.example").read_text().splitlines():
        key = line.lstrip("# ").split("=")[0]
        if re.fullmatch(r"VIGIL_[A-Z0-9_]+", key) and key != "VIGIL_SECRETS_DIR":
            assert key in known, f"compose.env.example names {key}, which no settings class reads"
