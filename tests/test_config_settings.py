"""Settings: one cameras file for every service, defaults defined once, and the deprecated names of the
previous release (each still works, with a DeprecationWarning and a log line naming the replacement)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from vigil.services.ingest.settings import IngestSettings
from vigil.services.scorer.settings import ScorerSettings
from vigil.services.worker.settings import WorkerSettings
from vigil.shared import kafka
from vigil.shared.scorer_params import EventParams, ScoringParams
from vigil.shared.settings import KafkaSettings, ProducerSettings

SECRETS = ("CAM_LOBBY_PASSWORD", "CAM_LOBBY_PASSWORD_FILE")
OURS = ("VIGIL_CAMERAS_FILE", "VIGIL_WORKER_CAMERA_MODELS", "VIGIL_SCORER_CAMERA_OVERRIDES", "VIGIL_INGEST_CAMERAS_FILE",
        "VIGIL_SCORER_GRACE_FRAMES", "VIGIL_SCORER_FADING_FACTOR", "VIGIL_SCORER_K", "VIGIL_SCORER_SCORING__GRACE_FRAMES",
        "VIGIL_SCORER_SCORING__FADING_FACTOR", "VIGIL_SCORER_EVENTS__K", "VIGIL_INGEST_LINGER_MS",
        "VIGIL_INGEST_PRODUCER_REQUEST_TIMEOUT_MS", "VIGIL_INGEST_PRODUCER__LINGER_MS")  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*SECRETS, *OURS):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cameras file as a worker or scorer machine sees it: secrets unset, the clip not there."""
    cams = [
        {"id": "lobby", "url": "rtsp://viewer:${CAM_LOBBY_PASSWORD}@10.0.0.21/s1", "model": "models/lobby",
         "scorer": {"grace_frames": 6000, "k": 3}},
        {"id": "replay", "url": "./clips/Test001.mkv", "model": "/models/replay"},
        {"id": "gate", "url": "rtsp://10.0.0.22/s1", "scorer": {"k": 50}},  # k > the site's n: rejected by the scorer
        {"id": "typo", "url": "rtsp://10.0.0.23/s1", "scorer": {"gracefrmes": 1}},  # rejected by the file's model
    ]  # fmt: skip
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump({"cameras": cams}))
    monkeypatch.setenv("VIGIL_CAMERAS_FILE", str(path))
    return path


def _deprecated(record: pytest.WarningsRecorder, caplog: pytest.LogCaptureFixture, *words: str) -> None:
    """One DeprecationWarning and one log warning, each containing every word."""
    texts = [str(w.message) for w in record if issubclass(w.category, DeprecationWarning)]
    assert any(all(w in t for w in words) for t in texts), texts
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(all(w in t for w in words) for t in logged), logged


# -- the cameras file, read by every service ------------------------------------------------------------
def test_worker_reads_models_from_the_cameras_file_without_secrets_or_sources(site: Path) -> None:
    models = WorkerSettings().camera_models
    assert models == {"lobby": site.parent / "models" / "lobby", "replay": Path("/models/replay")}


def test_scorer_reads_overrides_from_the_cameras_file_without_secrets_or_sources(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ScorerSettings()
    lobby, other = settings.camera_params("lobby"), settings.camera_params("replay")
    assert (lobby.scoring.grace_frames, lobby.events.k, lobby.scoring.smooth) == (6000, 3, ScoringParams().smooth)
    assert other.scoring == ScoringParams() and other.events == EventParams()
    assert settings.camera_params("gate").events == EventParams()  # its overrides do not fit: site parameters
    assert "camera gate: scorer overrides" in caplog.text and "need 1 <= k <= n" in caplog.text
    assert "camera typo: rejected" in caplog.text and "scorer.gracefrmes: unknown key" in caplog.text


def test_one_site_setting_names_the_file_for_ingest(site: Path) -> None:
    assert IngestSettings().cameras_file == site
    assert IngestSettings(cameras={"file": Path("other.yaml")}).cameras_file == Path("other.yaml")  # --cameras


def test_ingest_defaults_to_cameras_yaml_and_others_to_no_file() -> None:
    assert IngestSettings().cameras_file == Path("cameras.yaml")
    assert WorkerSettings().camera_models == {} and ScorerSettings().camera_overrides == {}


def test_an_unreadable_cameras_file_stops_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_CAMERAS_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(ValidationError, match="cannot read cameras file"):
        WorkerSettings()


# -- the deprecated per-camera variables --------------------------------------------------------------
PER_CAMERA: dict[str, tuple[Callable[[], Any], str, str, Callable[[Any], tuple]]] = {
    # variable: (settings class, its camera key, its value, what the settings say about cameras lobby and cam-9)
    "VIGIL_WORKER_CAMERA_MODELS": (WorkerSettings, "`model:`", '{"lobby": "/env/env-lobby", "cam-9": "/env/env-cam-9"}',
                                   lambda s: (s.camera_models["lobby"].name, s.camera_models["cam-9"].name)),
    "VIGIL_SCORER_CAMERA_OVERRIDES": (ScorerSettings, "`scorer:`", '{"lobby": {"k": 4, "m": 7}, "cam-9": {"k": 2}}',
                                      lambda s: (s.camera_params("lobby").events.k, s.camera_params("lobby").events.m,
                                                 s.camera_params("cam-9").events.k)),
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "with_file", "expected"),
    [
        ("VIGIL_WORKER_CAMERA_MODELS", False, ("env-lobby", "env-cam-9")),
        ("VIGIL_WORKER_CAMERA_MODELS", True, ("lobby", "env-cam-9")),  # the file's lobby
        ("VIGIL_SCORER_CAMERA_OVERRIDES", False, (4, 7, 2)),
        ("VIGIL_SCORER_CAMERA_OVERRIDES", True, (3, 20, 2)),  # the file's lobby, as a whole (m: the site's)
    ],
)
def test_deprecated_per_camera_variables_work_warn_and_lose_to_the_file(
    name: str, with_file: bool, expected: tuple, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    make, key, value, picks = PER_CAMERA[name]
    if with_file:
        request.getfixturevalue("site")
    monkeypatch.setenv(name, value)
    with pytest.warns(DeprecationWarning) as record:
        settings = make()
    assert picks(settings) == expected
    _deprecated(record, caplog, name, key, "VIGIL_CAMERAS_FILE")
    if with_file:
        _deprecated(record, caplog, name, "['lobby']", "the cameras file wins")


@pytest.mark.parametrize(("value", "error"), [('{"c": {"bogus": 1}}', "Extra inputs are not permitted"),
                                              ('{"c": {"k": 20}}', "k <= n")])  # fmt: skip
def test_deprecated_camera_overrides_are_still_validated(monkeypatch: pytest.MonkeyPatch, value: str, error: str) -> None:
    monkeypatch.setenv("VIGIL_SCORER_CAMERA_OVERRIDES", value)
    with pytest.raises(ValidationError, match=error):
        ScorerSettings()


# -- scorer parameters: defined once, nested ----------------------------------------------------------
def test_scorer_defaults_are_the_scorer_parameters() -> None:
    settings = ScorerSettings()
    assert settings.scoring == ScoringParams() and settings.events == EventParams()
    assert settings.camera_params("any").scoring is not None


def test_nested_scorer_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_SCORER_SCORING__GRACE_FRAMES", "200")
    monkeypatch.setenv("VIGIL_SCORER_SCORING__FADING_FACTOR", "0.02")
    monkeypatch.setenv("VIGIL_SCORER_EVENTS__K", "3")
    settings = ScorerSettings()
    assert (settings.scoring.grace_frames, settings.scoring.fading_factor, settings.scoring.smooth) == (200, 0.02, ScoringParams().smooth)
    assert (settings.events.k, settings.events.n) == (3, 6)
    monkeypatch.setenv("VIGIL_SCORER_EVENTS__K", "0")
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ScorerSettings()  # the bounds on the dataclass fields apply
    monkeypatch.setenv("VIGIL_SCORER_EVENTS__K", "11")
    with pytest.raises(ValidationError, match="k <= n"):
        ScorerSettings()  # and so does the dataclass's own check


def test_a_threshold_margin_set_on_the_scorer_is_said_to_be_unread(monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A calibration carries its threshold (``vigil calibrate --margin``); the scorer's margin changes nothing,
    so setting it is logged, naming where it was set and what to use instead."""
    with caplog.at_level(logging.WARNING):
        ScorerSettings()
    assert "threshold_margin" not in caplog.text
    monkeypatch.setenv("VIGIL_SCORER_SCORING__THRESHOLD_MARGIN", "0.5")
    with caplog.at_level(logging.WARNING):
        ScorerSettings()
    assert "VIGIL_SCORER_SCORING__THRESHOLD_MARGIN" in caplog.text and "threshold_offset" in caplog.text
    assert "vigil calibrate --margin" in caplog.text


@pytest.mark.parametrize(
    ("make", "old", "value", "new", "read", "expected"),
    [
        (ScorerSettings, "VIGIL_SCORER_GRACE_FRAMES", "20000", "VIGIL_SCORER_SCORING__GRACE_FRAMES",
         lambda s: s.scoring.grace_frames, 20_000),
        (ScorerSettings, "VIGIL_SCORER_SMOOTH", "7", "VIGIL_SCORER_SCORING__SMOOTH", lambda s: s.scoring.smooth, 7),
        (ScorerSettings, "VIGIL_SCORER_K", "3", "VIGIL_SCORER_EVENTS__K", lambda s: s.events.k, 3),
        (ScorerSettings, "VIGIL_SCORER_MIN_DURATION_S", "1.5", "VIGIL_SCORER_EVENTS__MIN_DURATION_S",
         lambda s: s.events.min_duration_s, 1.5),
        (IngestSettings, "VIGIL_INGEST_LINGER_MS", "3", "VIGIL_INGEST_PRODUCER__LINGER_MS", lambda s: s.producer.linger_ms, 3),
        (IngestSettings, "VIGIL_INGEST_PRODUCER_REQUEST_TIMEOUT_MS", "5000", "VIGIL_INGEST_PRODUCER__REQUEST_TIMEOUT_MS",
         lambda s: s.producer.request_timeout_ms, 5000),
        (IngestSettings, "VIGIL_INGEST_CAMERAS_FILE", "/config/old.yaml", "VIGIL_CAMERAS_FILE",
         lambda s: s.cameras_file, Path("/config/old.yaml")),
    ],
)  # fmt: skip
def test_deprecated_flat_env_works_and_warns(
    make: Callable[[], Any], old: str, value: str, new: str, read: Callable[[Any], Any], expected: Any,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setenv(old, value)
    with pytest.warns(DeprecationWarning) as record:
        settings = make()
    assert read(settings) == expected
    _deprecated(record, caplog, old, f"use {new}")


def test_new_scorer_name_wins_over_the_old_one(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("VIGIL_SCORER_K", "3")
    monkeypatch.setenv("VIGIL_SCORER_EVENTS__K", "4")
    with pytest.warns(DeprecationWarning) as record:
        assert ScorerSettings().events.k == 4
    _deprecated(record, caplog, "VIGIL_SCORER_K", "ignored: VIGIL_SCORER_EVENTS__K is set")


def test_deprecated_flat_scorer_keywords_still_work() -> None:
    with pytest.warns(DeprecationWarning, match=r"ScorerSettings\(grace_frames=...\) is deprecated.*scoring.grace_frames"):
        settings = ScorerSettings(grace_frames=100, fading_factor=0.05, k=3)
    assert (settings.scoring.grace_frames, settings.scoring.fading_factor, settings.events.k) == (100, 0.05, 3)


# -- the producer: defined once, used by ingest and make_producer ------------------------------------------
class _FakeProducer:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


@pytest.fixture
def fake_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    import kafka as kafka_python

    monkeypatch.setattr(kafka_python, "KafkaProducer", _FakeProducer)


def test_make_producer_defaults_are_producer_settings(fake_producer: None) -> None:
    kw = kafka.make_producer(KafkaSettings()).kwargs
    assert kw.items() >= ProducerSettings().kafka_python_kwargs().items()
    assert (kw["linger_ms"], kw["max_request_size"], kw["retries"], kw["acks"], kw["compression_type"]) == (
        10, 1024 * 1024, 2**31 - 1, "all", "lz4")  # fmt: skip
    assert kw["bootstrap_servers"] == KafkaSettings().servers
    kw = kafka.make_producer(KafkaSettings(), ProducerSettings(linger_ms=7, compression="none"), linger_ms=2).kwargs
    assert (kw["linger_ms"], kw["compression_type"]) == (2, None)  # overrides win over the settings


def test_ingest_nests_producer_settings(fake_producer: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert IngestSettings().producer == ProducerSettings()
    monkeypatch.setenv("VIGIL_INGEST_PRODUCER__LINGER_MS", "7")
    settings = IngestSettings()
    assert settings.producer.linger_ms == 7 and settings.producer.max_block_ms == ProducerSettings().max_block_ms
    assert kafka.make_producer(settings.kafka, settings.producer).kwargs["linger_ms"] == 7


def test_producer_settings_are_bounded() -> None:
    with pytest.raises(ValidationError, match="linger_ms"):
        ProducerSettings(linger_ms=-1)
    with pytest.raises(ValidationError, match="Extra inputs"):
        ProducerSettings(lingr_ms=1)
    assert ProducerSettings(acks="1").kafka_python_kwargs()["enable_idempotence"] is False


def test_site_cameras_file_wins_over_the_deprecated_ingest_one(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_INGEST_CAMERAS_FILE", "/config/old.yaml")
    with pytest.warns(DeprecationWarning, match="ignored: VIGIL_CAMERAS_FILE is set"):
        assert IngestSettings().cameras_file == site


def test_old_ingest_keywords_still_work_and_win_over_the_environment(site: Path) -> None:
    with pytest.warns(DeprecationWarning, match=r"IngestSettings\(cameras_file=...\)"):
        settings = IngestSettings(cameras_file=Path("cli.yaml"), linger_ms=4)  # what `vigil ingest --cameras` passed
    assert settings.cameras_file == Path("cli.yaml") and settings.producer.linger_ms == 4
