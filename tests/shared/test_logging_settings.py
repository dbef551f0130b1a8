"""Credential masking in logs, and settings from the environment and secret files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from vigil.shared.logging import MaskingFilter, mask_url
from vigil.shared.settings import KafkaSettings, RedisSettings, read_secret


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("rtsp://admin:s3cret@10.1.2.3:554/stream1", "rtsp://***:***@10.1.2.3:554/stream1"),
        ("http://user@cam/live.m3u8", "http://***@cam/live.m3u8"),
        ("https://cam/x?token=abc123&ch=2", "https://cam/x?token=***&ch=2"),
        ("opening rtsp://a:b@h/1 and rtsp://c:d@h/2", "opening rtsp://***:***@h/1 and rtsp://***:***@h/2"),
        ("rtsp://10.0.0.1/no-credentials", "rtsp://10.0.0.1/no-credentials"),
    ],
)
def test_mask_url(raw: str, masked: str) -> None:
    assert mask_url(raw) == masked


def test_masking_filter_masks_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("vigil.test.masking")
    logger.addFilter(MaskingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="vigil.test.masking"):
            logger.info("camera %s opened %s", "cam-1", "rtsp://admin:pw@h/s")
            try:
                raise ConnectionError("cannot open rtsp://admin:pw@h/s")
            except ConnectionError:
                logger.exception("failed")
    finally:
        logger.filters.clear()
    text = caplog.text
    assert "pw@" not in text and "admin" not in text
    assert "rtsp://***:***@h/s" in text


def test_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "redis_password"
    secret.write_text("from-file\n")
    monkeypatch.setenv("VIGIL_REDIS_PASSWORD_FILE", str(secret))
    monkeypatch.delenv("VIGIL_REDIS_PASSWORD", raising=False)
    settings = RedisSettings()
    assert read_secret(settings.password, settings.password_file, "x") == "from-file"
    assert "from-file" not in repr(settings)
    monkeypatch.setenv("VIGIL_REDIS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="cannot read Redis password from secret file"):
        RedisSettings().client()


def test_kafka_sasl_requires_mechanism_and_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIGIL_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(ValidationError, match="needs VIGIL_KAFKA_SASL_MECHANISM"):
        KafkaSettings()
    pw = tmp_path / "kafka_pw"
    pw.write_text("k-secret")
    monkeypatch.setenv("VIGIL_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("VIGIL_KAFKA_SASL_USERNAME", "vigil")
    monkeypatch.setenv("VIGIL_KAFKA_SASL_PASSWORD_FILE", str(pw))
    kw = KafkaSettings().kafka_python_kwargs()
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512" and kw["sasl_plain_password"] == "k-secret"
    assert KafkaSettings().aiokafka_kwargs()["sasl_plain_username"] == "vigil"
