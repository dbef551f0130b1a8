"""Bearer tokens and roles of `vigil api`.

The tokens file holds one ``role:token`` a line (``#`` comments and blank lines ignored); roles are
``viewer`` (read-only) and ``operator`` (may also label alerts and score clips). Tokens are kept only as
SHA-256 digests, compared in constant time, and logged only as the first 8 hex digits of that digest.

Example:
    >>> tokens = Tokens.parse("# site tokens\\nviewer:v-0123456789abcdef\\noperator:o-0123456789abcdef\\n")
    >>> tokens.role_of("o-0123456789abcdef"), tokens.role_of("wrong") is None
    ('operator', True)
    >>> allows("operator", "viewer"), allows("viewer", "operator")
    (True, False)
    >>> short_hash("o-0123456789abcdef") == short_hash("o-0123456789abcdef"), len(short_hash("x"))
    (True, 8)
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
"""Roles from least to most allowed: each role may do what the ones before it may."""
MIN_TOKEN_CHARS = 16


def short_hash(token: str) -> str:
    """What the logs show of a token: 8 hex digits of its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def allows(role: Role, needed: Role) -> bool:
    """Whether ``role`` may do what ``needed`` may."""
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class Caller:
    """Who made a request: the role of its token and the token's short hash (for logs and labels)."""

    role: Role
    token_hash: str


class Tokens:
    """The accepted tokens (as digests) and their roles."""

    def __init__(self, entries: list[tuple[Role, bytes]]) -> None:
        self._entries = entries

    @classmethod
    def parse(cls, text: str, source: str = "tokens") -> Tokens:
        """Parse ``role:token`` lines; raises ``ValueError`` naming the line (never the token) when one is bad."""
        entries: list[tuple[Role, bytes]] = []
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            role, sep, token = line.partition(":")
            if not sep or role not in ROLES:  # the line may be a bare token: never echo it
                shown = f"role {role!r}" if sep and len(role) <= 20 else "no `role:` prefix"
                raise ValueError(f"{source} line {n}: expected `viewer:TOKEN` or `operator:TOKEN`. Received {shown}")
            if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
                raise ValueError(f"{source} line {n}: a token must be at least {MIN_TOKEN_CHARS} characters, no spaces")
            entries.append((role, hashlib.sha256(token.encode()).digest()))  # type: ignore[arg-type]
        if not entries:
            raise ValueError(f"{source} holds no token: add lines such as `viewer:<random 32 characters>`")
        return cls(entries)

    @classmethod
    def load(cls, path: Path) -> Tokens:
        """Read the tokens file; raises ``ValueError`` when it is unreadable or invalid."""
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read the tokens file {path}: {exc.strerror}") from exc
        return cls.parse(text, str(path))

    def __len__(self) -> int:
        return len(self._entries)

    def role_of(self, token: str) -> Role | None:
        """The role of a presented token, or None; every entry is compared, in constant time."""
        digest = hashlib.sha256(token.encode()).digest()
        found: Role | None = None
        for role, known in self._entries:
            if hmac.compare_digest(digest, known) and (found is None or allows(role, found)):
                found = role
        return found
