"""The cameras file holds everything about a camera: source and sampling, its model, its scorer overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from vigil.shared.cameras import ConfigError, ScorerOverrides, load_cameras
from vigil.shared.scorer_params import EventParams, ScoringParams


def _write(folder: Path, cameras: list[dict], defaults: dict | None = None) -> Path:
    path = folder / "cameras.yaml"
    path.write_text(yaml.safe_dump({"defaults": defaults or {}, "cameras": cameras}, sort_keys=False))
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mkv"
    path.write_bytes(b"not read at load time")
    return path


def test_model_is_relative_to_the_file_and_scorer_overrides_are_typed(tmp_path: Path, clip: Path) -> None:
    cams = [{"id": "a", "url": str(clip), "model": "models/a", "scorer": {"grace_frames": 6000, "k": 3}},
            {"id": "b", "url": str(clip), "model": "/abs/b"}, {"id": "c", "url": str(clip)}]  # fmt: skip
    a, b, c = load_cameras(_write(tmp_path, cams)).cameras
    assert a.model == (tmp_path / "models" / "a").resolve() and b.model == Path("/abs/b") and c.model is None
    assert isinstance(a.scorer, ScorerOverrides)
    assert a.scorer.model_dump(exclude_none=True) == {"grace_frames": 6000, "k": 3}
    assert b.scorer is None


def test_a_relative_model_link_is_not_resolved_so_a_retrain_switch_is_followed(tmp_path: Path, clip: Path) -> None:
    """`model: models/cam/current` (the link `vigil retrain` moves) must stay the link, not its target today."""
    versions = tmp_path / "models" / "cam" / "versions"
    (versions / "v1").mkdir(parents=True)
    (versions / "v2").mkdir()
    (tmp_path / "models" / "cam" / "current").symlink_to(Path("versions") / "v1", target_is_directory=True)
    (cam,) = load_cameras(_write(tmp_path, [{"id": "cam", "url": str(clip), "model": "models/cam/current"}])).cameras
    assert cam.model == tmp_path / "models" / "cam" / "current" and cam.model.is_absolute()
    (tmp_path / "models" / "cam" / "current").unlink()
    (tmp_path / "models" / "cam" / "current").symlink_to(Path("versions") / "v2", target_is_directory=True)
    assert cam.model.resolve() == (versions / "v2").resolve()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"scorer": {"grace_frame": 10}}, "camera cam: scorer.grace_frame: unknown key"),
        ({"scorer": {"k": 0}}, "camera cam: scorer.k: Input should be greater than or equal to 1"),
        ({"scorer": {"location_weight": 1.5}}, "camera cam: scorer.location_weight: Input should be less than or equal to 1"),
        ({"scorer": {"smooth": "maybe"}}, "camera cam: scorer.smooth: Input should be a valid integer"),
        ({"scorer": [1, 2]}, "camera cam: scorer: Input should be a valid dictionary"),
        ({"model": ["a"]}, "camera cam: model: Input is not a valid path"),
    ],
)
def test_bad_model_or_scorer_rejects_only_that_camera(tmp_path: Path, clip: Path, entry: dict, expected: str) -> None:
    cfg = load_cameras(_write(tmp_path, [{"id": "cam", "url": str(clip)} | entry, {"id": "ok", "url": str(clip)}]))
    assert [c.id for c in cfg.cameras] == ["ok"]
    assert expected in cfg.error_text(), cfg.error_text()


@pytest.mark.parametrize("key", ["model", "scorer"])
def test_model_and_scorer_are_per_camera_not_defaults(tmp_path: Path, clip: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid defaults: {key}: unknown key"):
        load_cameras(_write(tmp_path, [{"id": "a", "url": str(clip)}], {key: {}}))


def test_scorer_overrides_have_the_scorer_parameters_fields_and_bounds() -> None:
    names = [f.name for cls in (ScoringParams, EventParams) for f in dataclasses.fields(cls)]
    assert list(ScorerOverrides.model_fields) == names
    assert ScorerOverrides().model_dump(exclude_none=True) == {}  # nothing set: nothing overridden
    schema = ScorerOverrides.model_json_schema()["properties"]
    assert {"minimum": 2, "maximum": 1_000_000, "type": "integer"} in schema["grace_frames"]["anyOf"]
    assert schema["k"]["description"] == "Open after k of the last n frames are above"


def test_without_sources_no_secret_is_needed_and_file_sources_need_not_exist(tmp_path: Path) -> None:
    cams = [{"id": "lobby", "url": "rtsp://viewer:${CAM_PASSWORD}@10.0.0.5/s", "model": "m",
             "options": {"token": "${CAM_TOKEN}"}},
            {"id": "replay", "url": "./clips/missing.mkv", "scorer": {"k": 2}}]  # fmt: skip
    path = _write(tmp_path, cams)
    strict = load_cameras(path, env={})
    assert not strict.cameras and "CAM_PASSWORD" in strict.error_text() and "file not found" in strict.error_text()
    lobby, replay = load_cameras(path, env={}, sources=False).cameras
    assert lobby.url == "rtsp://viewer:${CAM_PASSWORD}@10.0.0.5/s" and lobby.options == {"token": "${CAM_TOKEN}"}
    assert lobby.model == (tmp_path / "m").resolve() and replay.scorer.k == 2
    filled = load_cameras(path, env={"CAM_PASSWORD": "pw", "CAM_TOKEN": "t"}, sources=False).cameras[0]
    assert "pw" not in filled.url  # sources=False never reads a secret, even when it is there


def test_without_sources_other_camera_errors_still_reject_that_camera(tmp_path: Path) -> None:
    cams = [{"id": "a", "url": "rtsp://h/a", "fps": 0}, {"id": "b", "url": "rtsp://h/b"}]
    cfg = load_cameras(_write(tmp_path, cams), sources=False)
    assert [c.id for c in cfg.cameras] == ["b"] and "camera a: fps: Input should be greater than 0" in cfg.error_text()


def test_the_shipped_cameras_files_are_valid_for_every_service(tmp_path: Path) -> None:
    """The Helm chart's default cameras file and compose's config/cameras.yaml load for every service."""
    repo = Path(__file__).resolve().parent.parent
    values = yaml.safe_load((repo / "infra" / "helm" / "vigil" / "values.yaml").read_text())
    helm = tmp_path / "cameras.yaml"
    helm.write_text(values["cameras"]["file"])
    for path, env in ((helm, {"CAM_LOBBY_PASSWORD": "pw"}), (repo / "config" / "cameras.yaml", {})):
        for_worker_and_scorer = load_cameras(path, env={}, sources=False)
        assert for_worker_and_scorer.cameras and not for_worker_and_scorer.errors, path
        assert not load_cameras(path, env=env).errors, path  # and for ingest, with its secrets


def test_secrets_with_url_characters_are_escaped_and_never_echoed(tmp_path: Path) -> None:
    from vigil.shared.cameras import load_cameras

    path = tmp_path / "cameras.yaml"
    path.write_text("cameras:\n  - {id: a, url: 'rtsp://viewer:${PW}@10.0.0.5:554/s?token=${TOK}'}\n"
                    "  - {id: b, url: 'rtsp://viewer:pa/ss@10.0.0.6:55x/s'}\n")
    secret = "p@ss/w?rd #1"
    config = load_cameras(path, env={"PW": secret, "TOK": "t&k"})
    (a,) = config.cameras
    assert a.url == "rtsp://viewer:p%40ss%2Fw%3Frd%20%231@10.0.0.5:554/s?token=t%26k"
    assert secret not in a.masked_url and "p%40ss" not in a.masked_url
    (bad,) = config.errors  # a raw password the URL parser trips on: its text is never quoted
    assert bad.who == "b" and "invalid host or port" in bad.message and "pa" not in bad.message.split("@")[0].split("viewer")[-1]
