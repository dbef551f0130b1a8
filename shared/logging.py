"""Logging setup: module loggers, optional JSON lines, and credential masking in every record.

Camera URLs often carry credentials (``rtsp://user:pass@host/...``). :class:`MaskingFilter` rewrites
every formatted message, argument and exception text so that no credential reaches a log line.

Example:
    >>> mask_url("rtsp://admin:hunter2@10.0.0.5:554/live?token=abc&ch=1")
    'rtsp://***:***@10.0.0.5:554/live?token=***&ch=1'
    >>> mask_url("rtsp://admin:p/a?s#s@w0rd@10.0.0.5/live, http://cam/x?password=p%40ss&a=1")
    'rtsp://***:***@10.0.0.5/live, http://cam/x?password=***&a=1'
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

# User info runs to the LAST "@" of the URL's whitespace-free run, so a password holding a raw "@", "/", "?" or
# "#" is masked whole (masking a later "@" of the path too is the safe side). Percent-escaped secrets (the
# cameras file fills them in escaped) never hold whitespace, so nothing of them can be left over.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>\S+)@")
_SECRET_PARAMS = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|pass|token|access_token|api_key|apikey|key|secret|auth|signature|sig)=)"
    r"(?P<value>[^&;#\s]+)",
    re.IGNORECASE,
)


def mask_url(text: str) -> str:
    """Mask user info and secret query parameters in every URL inside ``text``."""

    def _userinfo(m: re.Match[str]) -> str:
        masked = "***:***" if ":" in m.group("userinfo") else "***"
        return f"{m.group('scheme')}{masked}@"

    text = _USERINFO.sub(_userinfo, text)
    return _SECRET_PARAMS.sub(lambda m: f"{m.group('key')}***", text)


class MaskingFilter(logging.Filter):
    """Masks credentials in the final message of every record passing through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = mask_url(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_url(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields (e.g. camera_id)."""

    _STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        """Format the record as JSON."""
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out |= {k: v for k, v in vars(record).items() if k not in self._STD and not k.startswith("_")}
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", json_lines: bool = False) -> None:
    """Configure the root logger once for a service process (call from ``main()``, not at import)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(MaskingFilter())
    fmt = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(fmt))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("kafka", "aiokafka", "faust", "mode", "urllib3", "absl"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
