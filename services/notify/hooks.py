"""The webhooks file of `vigil notify` (``VIGIL_NOTIFY_WEBHOOKS_FILE``, YAML or JSON) and its validation.

The file names each webhook, its URL and where its HMAC secret is; the secret itself is never in the file::

    webhooks:
      - name: ops                      # shown in logs and metrics (the URL is not: it may hold a token)
        url: https://hooks.example.com/vigil
        secret_file: /run/secrets/vigil_ops_hook
      - name: chat
        url_env: CHAT_HOOK_URL         # the URL from the environment (when it carries a token)
        secret_env: CHAT_HOOK_SECRET
        cameras: [gate-1, gate-2]      # only these cameras (empty: all)
        events: [open]                 # only these changes (open, update, close; empty: all)
        max_attempts: 8                # per-hook overrides of the VIGIL_NOTIFY_WEBHOOK_* defaults

Example:
    >>> import os
    >>> os.environ["DOC_HOOK_SECRET"] = "0123456789abcdef"
    >>> [hook] = parse_webhooks({"webhooks": [{"name": "ops", "url": "https://h.example/x?t=1",
    ...                                          "secret_env": "DOC_HOOK_SECRET"}]}, WebhookDefaults())
    >>> hook.name, hook.host, hook.secret == b"0123456789abcdef", hook.max_attempts
    ('ops', 'https://h.example', True, 5)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vigil.services.notify.core import redact_url

MIN_SECRET_BYTES = 16
Event = Literal["open", "update", "close"]


class WebhookError(ValueError):
    """The webhooks file is unreadable or invalid (the text never holds a secret or a URL's path)."""


@dataclass(frozen=True)
class WebhookDefaults:
    """Delivery parameters a webhook entry may override (from the service settings)."""

    timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    queue_size: int = 1000
    concurrency: int = 2


class WebhookEntry(BaseModel):
    """One entry of the webhooks file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="Name in logs, metrics and dead letters")  # fmt: skip
    url: str | None = Field(None, max_length=2000, description="http:// or https:// URL")
    url_env: str | None = Field(None, max_length=200, description="Environment variable holding the URL")
    secret_file: Path | None = Field(None, description="File holding the HMAC secret")
    secret_env: str | None = Field(None, max_length=200, description="Environment variable holding the HMAC secret")
    cameras: list[str] = Field(default_factory=list, max_length=10_000, description="Only these cameras (empty: all)")
    events: list[Event] = Field(default_factory=list, description="Only these changes (empty: all)")
    timeout_s: float | None = Field(None, gt=0, le=120)
    max_attempts: int | None = Field(None, ge=1, le=100)
    backoff_s: float | None = Field(None, ge=0, le=600)
    backoff_max_s: float | None = Field(None, ge=0, le=3600)
    queue_size: int | None = Field(None, ge=1, le=1_000_000)
    concurrency: int | None = Field(None, ge=1, le=64)

    @model_validator(mode="after")
    def _one_each(self) -> WebhookEntry:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url and url_env")
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret_file and secret_env")
        return self


class WebhooksFile(BaseModel):
    """The whole file: a list of webhooks with unique names."""

    model_config = ConfigDict(extra="forbid")

    webhooks: list[WebhookEntry] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _unique(self) -> WebhooksFile:
        names = [h.name for h in self.webhooks]
        if len(set(names)) != len(names):
            raise ValueError(f"webhook names must be unique. Received: {sorted(names)}")
        return self


@dataclass(frozen=True)
class Webhook:
    """A resolved webhook: URL and secret read, defaults filled in. ``repr`` shows neither URL nor secret."""

    name: str
    url: str
    secret: bytes
    cameras: frozenset[str]
    events: frozenset[str]
    timeout_s: float
    max_attempts: int
    backoff_s: float
    backoff_max_s: float
    queue_size: int
    concurrency: int

    @property
    def host(self) -> str:
        """Scheme and host of the URL (what may be logged)."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"Webhook(name={self.name!r}, host={self.host!r})"


def load_webhooks(path: Path | None, defaults: WebhookDefaults, environ: Mapping[str, str] | None = None) -> list[Webhook]:
    """The webhooks of ``path`` (YAML or JSON; none when ``path`` is None).

    Raises:
        WebhookError: unreadable or invalid file, a missing URL or secret, a secret that is too short.
    """
    if path is None:
        return []
    try:
        text = path.read_text()
    except OSError as exc:
        raise WebhookError(f"cannot read the webhooks file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else _yaml(text)
    except ValueError as exc:
        raise WebhookError(f"the webhooks file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    return parse_webhooks(data, defaults, environ)


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


def parse_webhooks(data: Any, defaults: WebhookDefaults, environ: Mapping[str, str] | None = None) -> list[Webhook]:
    """Validate the parsed file and resolve each webhook's URL and secret (see :func:`load_webhooks`)."""
    environ = os.environ if environ is None else environ
    try:
        parsed = WebhooksFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))
        raise WebhookError(f"invalid webhooks file: {problems}") from None
    return [_resolve(entry, defaults, environ) for entry in parsed.webhooks]


def _resolve(entry: WebhookEntry, defaults: WebhookDefaults, environ: Mapping[str, str]) -> Webhook:
    url = entry.url if entry.url is not None else environ.get(entry.url_env or "", "")
    if not url.startswith(("http://", "https://")) or redact_url(url) == "<invalid url>":
        raise WebhookError(f"webhook {entry.name}: the URL must be an http:// or https:// URL"
                           f"{f' (from ${entry.url_env})' if entry.url_env else ''}")  # fmt: skip
    secret = _secret(entry, environ)
    pick = {k: (v if (v := getattr(entry, k)) is not None else getattr(defaults, k))
            for k in ("timeout_s", "max_attempts", "backoff_s", "backoff_max_s", "queue_size", "concurrency")}  # fmt: skip
    return Webhook(entry.name, url, secret, frozenset(entry.cameras), frozenset(entry.events), **pick)


def _secret(entry: WebhookEntry, environ: Mapping[str, str]) -> bytes:
    if entry.secret_file is not None:
        try:
            value = entry.secret_file.read_text().strip()
        except OSError as exc:
            raise WebhookError(f"webhook {entry.name}: cannot read its secret file {entry.secret_file}: "
                               f"{exc.strerror}") from None  # fmt: skip
        where = f"file {entry.secret_file}"
    else:
        value = environ.get(entry.secret_env or "", "").strip()
        where = f"${entry.secret_env}"
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise WebhookError(f"webhook {entry.name}: the secret in {where} is missing or shorter than "
                           f"{MIN_SECRET_BYTES} bytes")  # fmt: skip
    return value.encode()
