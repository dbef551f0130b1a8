"""Settings shared by every service (pydantic-settings).

Values come from the environment (prefixes below) or from secret files (``*_FILE`` variables, as
with Docker/Kubernetes secrets); nothing secret is ever in code. Services compose these into their
own settings class with a service prefix and pass them down explicitly.

Environment:
    VIGIL_KAFKA_BOOTSTRAP_SERVERS, VIGIL_KAFKA_SECURITY_PROTOCOL, VIGIL_KAFKA_SASL_MECHANISM,
    VIGIL_KAFKA_SASL_USERNAME, VIGIL_KAFKA_SASL_PASSWORD / VIGIL_KAFKA_SASL_PASSWORD_FILE,
    VIGIL_KAFKA_SSL_CAFILE, VIGIL_KAFKA_SSL_CERTFILE, VIGIL_KAFKA_SSL_KEYFILE,
    VIGIL_REDIS_URL, VIGIL_REDIS_USERNAME, VIGIL_REDIS_PASSWORD / VIGIL_REDIS_PASSWORD_FILE,
    VIGIL_TOPICS_FRAMES, VIGIL_TOPICS_SCORES, VIGIL_TOPICS_CAMERA_STATUS, VIGIL_TOPICS_DLQ,
    VIGIL_TOPICS_PARTITIONS, VIGIL_TOPICS_REPLICATION_FACTOR
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.shared.schemas import Topics


def read_secret(value: SecretStr | None, file: Path | None, what: str) -> str | None:
    """Return a secret from its value or, if unset, from its file; None when neither is given."""
    if value is not None:
        return value.get_secret_value()
    if file is None:
        return None
    try:
        return file.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read {what} from secret file {file}: {exc.strerror}") from exc


class KafkaSettings(BaseSettings):
    """How to reach Kafka, with optional SASL and TLS."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_KAFKA_", extra="ignore")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = Field(None, description="File holding the SASL password")
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    client_id: str = Field("vigil", max_length=128)
    request_timeout_ms: int = Field(30_000, ge=1_000, le=300_000)

    @model_validator(mode="after")
    def _check_sasl(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and (self.sasl_mechanism is None or not self.sasl_username):
            raise ValueError(
                f"security_protocol={self.security_protocol} needs VIGIL_KAFKA_SASL_MECHANISM and "
                "VIGIL_KAFKA_SASL_USERNAME (and the password or its _FILE)"
            )
        return self

    @property
    def servers(self) -> list[str]:
        """Bootstrap servers as a list."""
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def password(self) -> str | None:
        """The SASL password from the environment or its secret file."""
        return read_secret(self.sasl_password, self.sasl_password_file, "Kafka SASL password")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context for SSL / SASL_SSL, else None."""
        if not self.security_protocol.endswith("SSL"):
            return None
        ctx = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile:
            ctx.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None)
        return ctx

    def _client_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "bootstrap_servers": self.servers,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.sasl_mechanism:
            kw |= {"sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.sasl_username,
                   "sasl_plain_password": self.password()}  # fmt: skip
        if (ctx := self.ssl_context()) is not None:
            kw["ssl_context"] = ctx
        return kw

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Connection arguments for kafka-python's KafkaProducer / KafkaConsumer / KafkaAdminClient."""
        return self._client_kwargs() | {"request_timeout_ms": self.request_timeout_ms}

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Connection arguments for aiokafka clients (same names as kafka-python's)."""
        return self._client_kwargs()

    def faust_broker(self) -> str:
        """Broker URL list for faust.App(broker=...)."""
        return ";".join(f"kafka://{s}" for s in self.servers)

    def faust_credentials(self) -> Any:
        """faust.App(broker_credentials=...) for SASL/TLS, or None for PLAINTEXT."""
        import faust  # local: faust is heavy

        ctx = self.ssl_context()
        if self.sasl_mechanism:
            return faust.SASLCredentials(username=self.sasl_username, password=self.password(), ssl_context=ctx,
                       mechanism=self.sasl_mechanism)  # fmt: skip
        if ctx is not None:
            return faust.SSLCredentials(ctx)
        return None


class RedisSettings(BaseSettings):
    """How to reach Redis (AUTH and TLS through ``rediss://`` supported)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_REDIS_", extra="ignore")

    url: str = Field("redis://127.0.0.1:6390/0", description="redis:// or rediss:// URL without credentials")
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = Field(None, description="File holding the Redis password")
    socket_timeout_s: float = Field(5.0, gt=0, le=120)

    def client(self, **overrides: Any) -> Any:
        """Build a redis.Redis client (connects lazily)."""
        import redis

        kw: dict[str, Any] = {
            "username": self.username,
            "password": read_secret(self.password, self.password_file, "Redis password"),
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": self.socket_timeout_s,
            "health_check_interval": 30,
        }
        return redis.Redis.from_url(self.url, **(kw | overrides))

    def async_client(self, **overrides: Any) -> Any:
        """Build a redis.asyncio.Redis client (connects lazily)."""
        import redis.asyncio as aioredis

        kw: dict[str, Any] = {
            "username": self.username,
            "password": read_secret(self.password, self.password_file, "Redis password"),
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": self.socket_timeout_s,
        }
        return aioredis.Redis.from_url(self.url, **(kw | overrides))


class TopicSettings(BaseSettings):
    """Topic names and sizes. ``frames`` and ``scores`` share one partition count (co-partitioned)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_TOPICS_", extra="ignore")

    frames: str = Topics.FRAMES
    scores: str = Topics.SCORES
    camera_status: str = Topics.CAMERA_STATUS
    dlq: str = Topics.DLQ
    partitions: int = Field(12, ge=1, le=1000, description="Partitions of frames and scores")
    replication_factor: int = Field(1, ge=1, le=7)


class ServiceSettings(BaseSettings):
    """Fields every service has; subclass with ``env_prefix='VIGIL_<SERVICE>_'``."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = Field(False, description="Log one JSON object per line")
    metrics_port: int = Field(0, ge=0, le=65535, description="Port of /metrics and /healthz; 0 = off")
