"""Settings of `vigil api` (environment prefix ``VIGIL_API_``).

The bearer tokens are a secret: they are read from a file (``VIGIL_API_TOKENS_FILE``, e.g. a mounted
Kubernetes secret), one ``role:token`` per line, never from the environment or the command line.

Example:
    >>> s = ApiSettings(port=8081, cors_origins=["https://console.example"])
    >>> s.host, s.port, s.max_upload_bytes // 2**20, s.cors_origins
    ('127.0.0.1', 8081, 64, ['https://console.example'])
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil.shared.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    """Settings of `vigil api`: where it listens, who may call it, and the limits of every request."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_API_", extra="ignore", env_nested_delimiter="__")

    host: str = Field("127.0.0.1", min_length=1, max_length=255, description="Address the API binds to: loopback "
                      "by default; containers set 0.0.0.0")  # fmt: skip
    port: int = Field(8080, ge=0, le=65535, description="Port of the API (0 = any free port, for tests)")
    tokens_file: Path | None = Field(None, description="File of bearer tokens, one `role:token` a line (roles viewer, "
                                     "operator); required")  # fmt: skip
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; empty = CORS off")
    max_upload_bytes: int = Field(64 * 2**20, ge=1024, le=4 * 2**30, description="Largest POST /v1/score body")
    max_frames: int = Field(3000, ge=1, le=1_000_000, description="Longest clip POST /v1/score scores (frames)")
    max_pixels: int = Field(4096 * 4096, ge=64 * 64, le=2**28, description="Largest frame (width x height) of an uploaded clip")
    score_workers: int = Field(1, ge=1, le=16, description="Clips scored at once (threads; the model is shared)")
    model_dir: Path | None = Field(None, description="Model that scores uploaded clips (None = the packaged model)")
    upload_dir: Path | None = Field(None, description="Where uploads are spooled (None = the system temp dir)")
    sse_keepalive_s: float = Field(15.0, gt=0, le=300, description="Keep-alive comment interval on /v1/events")
    sse_queue: int = Field(256, ge=1, le=100_000, description="Alert changes buffered per /v1/events client (oldest dropped)")
    sse_max_clients: int = Field(100, ge=1, le=10_000, description="Concurrent /v1/events clients at most")
    scan_limit: int = Field(20_000, ge=500, le=1_000_000, description="Stream entries one GET /v1/alerts reads at most "
                            "(a sparse filter returns fewer items and a cursor to continue)")  # fmt: skip
    cameras_cache_s: float = Field(5.0, ge=0, le=300, description="How long the list of camera ids is reused (finding "
                                   "them scans Redis' keyspace); a new camera shows up within this time")  # fmt: skip
    access_log: bool = Field(False, description="Log every request (method, path, status; never the token)")
    console: bool = Field(True, description="Serve the web console (/, /review, /cameras/...) besides the API")
    session_max_age_s: int = Field(12 * 3600, ge=60, le=30 * 86400, description="Lifetime of the console's login cookie")
    cookie_secure: bool | None = Field(None, description="Mark the console's cookie Secure (HTTPS only); None = when "
                                       "the request came over HTTPS (set true behind a TLS proxy)")  # fmt: skip
    shutdown_timeout_s: float = Field(5.0, gt=0, le=120, description="Open requests (and /v1/events) get this long on SIGTERM")
