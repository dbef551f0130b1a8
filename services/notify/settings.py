"""Settings of `vigil notify` (environment prefix ``VIGIL_NOTIFY_``).

The service reads the alert stream in its own Redis consumer group and delivers each alert change to an
MQTT broker (``mqtt_*``) and to the webhooks listed in ``webhooks_file`` (see :mod:`.hooks`). Secrets (the
MQTT password, the webhooks' HMAC secrets) come from files or the environment, never from the command line.

Example:
    >>> s = NotifySettings(mqtt_port=1884, webhooks_file=None)
    >>> s.alerts_group, s.mqtt_port, s.topic_prefix, s.mqtt_qos
    ('vigil-notify', 1884, 'vigil', 1)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.shared.redis_keys import ALERTS_STREAM, NOTIFY_DEAD_LETTERS
from vigil.shared.settings import ServiceSettings, read_secret


class NotifySettings(ServiceSettings):
    """Settings of `vigil notify`: where alerts come from, the MQTT broker, webhook defaults, dead letters."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_NOTIFY_", extra="ignore", env_nested_delimiter="__")

    # where it reads
    alerts_stream: str = Field(ALERTS_STREAM, min_length=1, max_length=200, description="Redis stream of alert changes")
    alerts_group: str = Field("vigil-notify", min_length=1, max_length=200, description="Redis consumer group on "
                              "the alert stream (its own: a restart resumes where it left off)")  # fmt: skip
    consumer_name: str = Field("notify-1", min_length=1, max_length=200, description="Consumer name in that group")
    alerts_from_start: bool = Field(False, description="A new group starts at the oldest entry, not at new ones")
    alerts_batch: int = Field(100, ge=1, le=10_000, description="Alert entries read per loop turn")
    block_ms: int = Field(200, ge=1, le=10_000, description="Longest wait for new entries in one loop turn")
    claim_idle_s: float = Field(60.0, ge=1, le=86_400, description="Entries another consumer read but did not "
                                "acknowledge for this long are claimed (XAUTOCLAIM) at start and every minute")  # fmt: skip
    max_inflight: int = Field(2000, ge=1, le=1_000_000, description="Entries being delivered at most; beyond, the "
                              "service stops reading (the stream holds the rest: Redis is the source of truth)")  # fmt: skip
    # links in the payload
    notify_suppressed: bool = Field(False, description="Also deliver alerts the scorer's kind classifier suppressed "
                                    "(a kind operators mark as false positive; docs/classifier.md)")
    public_url: str = Field("", max_length=500, description="Base URL of `vigil api` for links to the evidence "
                            "(e.g. https://vigil.example.com); empty = links relative to the API")  # fmt: skip
    # MQTT
    mqtt_enabled: bool = Field(True, description="Publish alerts to the MQTT broker")
    mqtt_host: str = Field("127.0.0.1", min_length=1, max_length=255, description="MQTT broker host")
    mqtt_port: int = Field(1883, ge=1, le=65535, description="MQTT broker port (8883 with TLS)")
    mqtt_username: str | None = Field(None, max_length=200, description="MQTT user")
    mqtt_password: SecretStr | None = Field(None, description="MQTT password (prefer mqtt_password_file)")
    mqtt_password_file: Path | None = Field(None, description="File holding the MQTT password")
    mqtt_tls: bool = Field(False, description="Connect with TLS")
    mqtt_ca_file: Path | None = Field(None, description="CA bundle for the broker's certificate (TLS)")
    mqtt_client_id: str = Field("vigil-notify", min_length=1, max_length=128, description="MQTT client id")
    topic_prefix: str = Field("vigil", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-/]+$",
                              description="First level of every topic (Frigate uses `frigate`)")  # fmt: skip
    mqtt_qos: int = Field(1, ge=0, le=2, description="QoS of alert messages (1: at least once, acknowledged)")
    mqtt_keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive")
    mqtt_connect_timeout_s: float = Field(5.0, gt=0, le=120, description="Wait this long for the first connection "
                                          "at start (a refused login ends the start; an absent broker does not)")  # fmt: skip
    mqtt_deadline_s: float = Field(60.0, ge=1, le=86_400, description="A message without PUBACK after this is "
                                   "dead-lettered (the broker was unreachable)")  # fmt: skip
    mqtt_max_queued: int = Field(10_000, ge=10, le=1_000_000, description="Messages the MQTT client holds while "
                                 "the broker is unreachable; beyond, messages are dead-lettered")  # fmt: skip
    # webhooks
    webhooks_file: Path | None = Field(None, description="YAML or JSON file listing the webhooks (see docs/notify.md)")
    webhook_timeout_s: float = Field(5.0, gt=0, le=120, description="Default: one POST's connect + response timeout")
    webhook_max_attempts: int = Field(5, ge=1, le=100, description="Default: attempts before the dead letter")
    webhook_backoff_s: float = Field(1.0, ge=0, le=600, description="Default: first retry delay (doubles, + jitter)")
    webhook_backoff_max_s: float = Field(60.0, ge=0, le=3600, description="Default: longest retry delay")
    webhook_queue_size: int = Field(1000, ge=1, le=1_000_000, description="Default: deliveries waiting per webhook; "
                                    "beyond, new ones are dropped to the dead letters (counted)")  # fmt: skip
    webhook_concurrency: int = Field(2, ge=1, le=64, description="Default: POSTs in flight per webhook")
    # camera status
    status_every_s: float = Field(10.0, ge=0.1, le=3600, description="How often the camera hashes are read for the "
                                  "retained status topics")  # fmt: skip
    camera_stale_s: float = Field(30.0, ge=1, le=86_400, description="A camera whose hash was not updated for this "
                                  "long is `offline`")  # fmt: skip
    max_cameras: int = Field(10_000, ge=1, le=1_000_000, description="Cameras whose status is published at most")
    # dead letters and shutdown
    dead_letters: str = Field(NOTIFY_DEAD_LETTERS, min_length=1, max_length=200, description="Redis stream of "
                              "deliveries that failed after the last retry")  # fmt: skip
    dead_maxlen: int = Field(10_000, ge=10, le=10_000_000, description="Dead letters kept (approximately; oldest go)")
    dead_max_bytes: int = Field(64 << 10, ge=1024, le=16 << 20, description="A dead letter's payload is cut to this")
    flush_timeout_s: float = Field(10.0, ge=0, le=600, description="At shutdown, wait this long for deliveries in "
                                   "flight (what is not done stays pending in the group and is delivered after restart)")  # fmt: skip
    retry_s: float = Field(2.0, gt=0, le=600, description="Wait after a failed Redis call")

    @model_validator(mode="after")
    def _check(self) -> NotifySettings:
        if self.webhook_backoff_max_s < self.webhook_backoff_s:
            raise ValueError(f"webhook_backoff_max_s must be >= webhook_backoff_s. Received: "
                             f"{self.webhook_backoff_max_s} < {self.webhook_backoff_s}")  # fmt: skip
        if self.block_ms >= self.redis.socket_timeout_s * 1000:
            raise ValueError(f"block_ms must be shorter than the Redis socket timeout. Received: {self.block_ms} >= "
                             f"{self.redis.socket_timeout_s * 1000:g}")  # fmt: skip
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ValueError("public_url must start with http:// or https://. Received: another scheme")
        return self

    def mqtt_secret(self) -> str | None:
        """The MQTT password from the environment or its file (None: no password)."""
        return read_secret(self.mqtt_password, self.mqtt_password_file, "MQTT password")
