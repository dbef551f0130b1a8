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
    VIGIL_TOPICS_PARTITIONS, VIGIL_TOPICS_REPLICATION_FACTOR,
    VIGIL_CAMERAS_FILE (the cameras file every service reads, see :mod:`vigil.shared.cameras`)

The environment holds site-wide settings and secrets only; everything about one camera is in the
cameras file. Settings renamed in a release keep working for one more release through
:func:`apply_renamed` and :func:`merge_per_camera`, which warn (``DeprecationWarning`` and a log line
naming the replacement).
"""

from __future__ import annotations

import logging
import os
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.shared.schemas import Topics

log = logging.getLogger(__name__)
V = TypeVar("V")


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

    def warn_insecure(self) -> None:
        """Log a warning when SASL credentials would cross the network in clear text (call once at start)."""
        if self.security_protocol == "SASL_PLAINTEXT" and self.sasl_mechanism == "PLAIN":
            log.warning("Kafka SASL PLAIN over SASL_PLAINTEXT sends the password %s in clear text to %s; use "
                        "VIGIL_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or a SCRAM mechanism) outside a trusted network",
                        "of user " + repr(self.sasl_username), self.bootstrap_servers)  # fmt: skip

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
    dlq_max_record_bytes: int = Field(
        1_000_000, ge=16 * 1024, le=64 * 1024 * 1024,
        description="Largest dead-letter record (key + value); the original bytes are truncated to fit. Keep it "
        "under the DLQ topic's max.message.bytes and the producers' max request size (1 MiB by default)",
    )  # fmt: skip


class ProducerSettings(BaseModel):
    """How every Kafka producer behaves: the one definition of its defaults (see ``make_producer``).

    Tuned for many small (~22 KB) frames per second that must stay in order per camera, and for a
    service that keeps its own bounded buffer: ``send`` blocks at most ``max_block_ms`` and a record not
    acknowledged within ``delivery_timeout_ms`` fails instead of waiting minutes. Ingest nests it as
    ``VIGIL_INGEST_PRODUCER__<FIELD>``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    acks: Literal["all", "1", "0"] = Field("all", description="'all' is needed by idempotence")
    idempotence: bool = Field(True, description="No duplicates or reordering when the producer retries (acks all)")
    linger_ms: int = Field(10, ge=0, le=1000, description="Wait this long to fill a batch")
    batch_size: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024, description="Bytes per partition batch")
    compression: Literal["none", "lz4", "gzip", "snappy", "zstd"] = Field("lz4", description="Batch compression")
    max_request_size: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest produce request (bytes)")
    retries: int = Field(2**31 - 1, ge=0, le=2**31 - 1, description="Retries of a failed send (bounded by delivery_timeout_ms)")
    max_in_flight_requests: int = Field(5, ge=1, le=5, description="Unacknowledged requests per connection (<= 5 keeps order)")
    max_block_ms: int = Field(1000, ge=0, le=60_000, description="How long send() may block when Kafka is down")
    delivery_timeout_ms: int = Field(15_000, ge=1000, le=3_600_000, description="A record not acknowledged by then fails")
    request_timeout_ms: int = Field(10_000, ge=1000, le=300_000, description="One produce request's timeout")
    bootstrap_timeout_ms: int = Field(3000, ge=100, le=300_000, description="Creating the producer gives up after this")

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """kafka-python ``KafkaProducer`` arguments (connection arguments come from :class:`KafkaSettings`)."""
        return {
            "acks": self.acks if self.acks == "all" else int(self.acks),
            "enable_idempotence": self.idempotence and self.acks == "all",
            "linger_ms": self.linger_ms,
            "batch_size": self.batch_size,
            "compression_type": None if self.compression == "none" else self.compression,
            "max_request_size": self.max_request_size,
            "retries": self.retries,
            "max_in_flight_requests_per_connection": self.max_in_flight_requests,
            "max_block_ms": self.max_block_ms,
            "delivery_timeout_ms": self.delivery_timeout_ms,
            "request_timeout_ms": self.request_timeout_ms,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
        }


class CameraFileSettings(BaseSettings):
    """Which cameras file the services read (one file for the whole site, see :mod:`vigil.shared.cameras`)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_CAMERAS_", extra="ignore")

    file: Path | None = Field(None, description="The cameras YAML file; None = no per-camera settings "
                              "(ingest then reads ./cameras.yaml)")  # fmt: skip

    def per_camera(self, key: str) -> dict[str, Any]:
        """``{camera id: value}`` of one camera field (``"model"``, ``"scorer"``) for the cameras that set it.

        The file is read without its sources (no secret needed, file sources need not exist here); a
        rejected camera entry is logged and left out, the others apply. Empty when no file is named.

        Raises:
            ConfigError: the file is unreadable or its structure is invalid.
        """
        if self.file is None:
            return {}
        from vigil.shared.cameras import load_cameras  # local: only services that name a file need it

        config = load_cameras(self.file, sources=False)
        for rejected in config.errors:
            log.error("camera %s: rejected in %s, so its %s (if any) is not used: %s", rejected.who, self.file, key,
                      rejected.message)  # fmt: skip
        return {cam.id: value for cam in config.cameras if (value := getattr(cam, key)) is not None}


class ServiceSettings(BaseSettings):
    """Fields every service has; subclass with ``env_prefix='VIGIL_<SERVICE>_'``."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    cameras: CameraFileSettings = Field(default_factory=CameraFileSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = Field(False, description="Log one JSON object per line")
    metrics_port: int = Field(0, ge=0, le=65535, description="Port of /metrics and /healthz; 0 = off")
    metrics_host: str = Field(
        "127.0.0.1", min_length=1, max_length=255,
        description="Address /metrics, /healthz and /readyz bind to: loopback by default; containers set 0.0.0.0 "
        "(docker-compose.yml and the Helm chart do) so that Prometheus and the probes reach it",
    )  # fmt: skip
    heartbeat_timeout_s: float = Field(
        60.0, ge=1, le=3600, description="/healthz fails when the service loop has not beaten for this long, or one "
        "batch has been in progress for this long (a stuck loop)",
    )  # fmt: skip


# -- settings that moved (kept for one release) ---------------------------------------------------------
def warn_deprecated(message: str, operator: bool = True) -> None:
    """Warn that a setting is deprecated: a ``DeprecationWarning`` and, for ``operator``, a log warning."""
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    if operator:
        log.warning("%s", message)


@dataclass(frozen=True)
class Moved:
    """Where a deprecated flat setting went: its place in the nested settings and its new env variable."""

    path: tuple[str, ...]
    env: str


def moved_into(prefix: str, group: str, names: Mapping[str, str]) -> dict[str, Moved]:
    """``{old name: Moved}`` for flat settings moved into the nested ``group`` (env ``<prefix><GROUP>__<NAME>``).

    Example:
        >>> moved_into("VIGIL_INGEST_", "producer", {"producer_request_timeout_ms": "request_timeout_ms"})
        {'producer_request_timeout_ms': Moved(path=('producer', 'request_timeout_ms'), env='VIGIL_INGEST_PRODUCER__REQUEST_TIMEOUT_MS')}
    """
    return {old: Moved((group, new), f"{prefix}{group}__{new}".upper()) for old, new in names.items()}


def apply_renamed(
    settings_cls: type[BaseSettings], data: Any, moved: Mapping[str, Moved], environ: Mapping[str, str] | None = None
) -> Any:
    """Move deprecated flat settings to their new place; call it from a ``mode="before"`` model validator.

    pydantic-settings reads no environment variable for an undeclared field, so the old variables
    (``<env_prefix><OLD NAME>``, upper case) are read here. A value under the new name always wins over
    an old variable; an old keyword argument wins over the environment, as keyword arguments do. Each
    old name in use warns (see :func:`warn_deprecated`).

    Example:
        >>> moved = moved_into("VIGIL_", "events", {"k": "k"})
        >>> apply_renamed(ServiceSettings, {"k": 3}, moved, environ={})
        {'events': {'k': 3}}
    """
    if not isinstance(data, dict):
        return data
    environ = os.environ if environ is None else environ
    out = dict(data)
    for old, new in moved.items():
        old_env = f"{settings_cls.model_config.get('env_prefix', '')}{old}".upper()
        if old in out:
            placed = _place(out, new.path, out.pop(old), overwrite=True)
            ignored = "" if placed else f" (ignored: {new.path[0]} is given)"
            warn_deprecated(f"{settings_cls.__name__}({old}=...) is deprecated and will be removed in the next "
                            f"release; use {'.'.join(new.path)}{ignored}", operator=False)  # fmt: skip
        elif old_env in environ:
            placed = new.env not in environ and _place(out, new.path, environ[old_env], overwrite=False)
            ignored = "" if placed else f" (ignored: {new.env if new.env in environ else '.'.join(new.path)} is set)"
            warn_deprecated(f"{old_env} is deprecated and will be removed in the next release; use {new.env}{ignored}")
    return out


def _place(data: dict[str, Any], path: tuple[str, ...], value: Any, overwrite: bool) -> bool:
    """Set ``data[path[0]][path[1]]... = value`` in plain dicts; False when the new name holds a value already."""
    *parents, last = path
    for key in parents:
        child = data.get(key, {})
        if not isinstance(child, dict):  # an object given under the new name: it wins
            return False
        data[key] = child = dict(child)
        data = child
    if last in data and not overwrite:
        return False
    data[last] = value
    return True


def merge_per_camera(from_file: Mapping[str, V], from_env: Mapping[str, V], env_name: str, key: str) -> dict[str, V]:
    """Per-camera values of the cameras file over those of a deprecated JSON env variable (which warns).

    Example:
        >>> merge_per_camera({"a": 1}, {}, "VIGIL_X", "x")
        {'a': 1}
    """
    if from_env:
        both = sorted(set(from_file) & set(from_env))
        wins = f"; cameras {both} are set in both, the cameras file wins" if both else ""
        warn_deprecated(f"{env_name} is deprecated and will be removed in the next release: set `{key}:` on each "
                        f"camera in the cameras file (VIGIL_CAMERAS_FILE) instead{wins}")  # fmt: skip
    return {**from_env, **from_file}
