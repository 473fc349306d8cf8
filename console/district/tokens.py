"""Tokens for the district's pull API: made by an admin, read-only, limited to sites, stored hashed.

A token is ``gpd_<id>_<secret>``: the id (public, shown in lists and the audit log) and
32 random bytes.  The database keeps only the SHA-256 of the whole string, so a copied
database or backup cannot be used to pull anything; the plain token is shown once, when it
is made.  SHA-256 rather than a slow password hash, because the secret is random (there is
nothing to guess) and every API request checks it.

A token grants reading ``/api/v1/events`` and ``/api/v1/flow`` of its sites, nothing
else: no page, no command, no write.  Revoking is immediate (each request looks it up).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from console.db import Database, IntegrityError, format_time, now_text
from console.district.schema import migrate
from protocol.errors import GatepostError
from protocol.topics import NAME_PATTERN

__all__ = ["DistrictToken", "TokenError", "TokenStore", "hash_token"]

PREFIX = "gpd_"
_TOKEN = re.compile(r"^gpd_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
_SITE = re.compile(NAME_PATTERN)
LABEL_CHARS = 100
USED_EVERY = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per token: not one write per API page."""


class TokenError(GatepostError, ValueError):
    """A token request that cannot be honoured (bad label or sites, unknown token)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class DistrictToken:
    token_id: str
    label: str
    sites: frozenset[str] | None
    """None: every site."""
    created_by: str
    created_at: str
    revoked_at: str | None = None
    last_used_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def sees(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    @property
    def sites_text(self) -> str:
        return "*" if self.sites is None else ",".join(sorted(self.sites))


def parse_sites(text: str) -> frozenset[str] | None:
    names = text.replace(",", " ").split()
    if not names or names == ["*"]:
        return None
    for name in names:
        if not _SITE.match(name):
            raise TokenError(f"sites must be '*' or site names; not {name[:40]!r}")
    return frozenset(names)


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        migrate(db)
        self._used: dict[str, datetime] = {}

    def create(self, label: str, sites: str, *, by: str) -> tuple[DistrictToken, str]:
        """A new token and its plain text, which is never stored and cannot be shown again."""
        label = label.strip()
        if not label or len(label) > LABEL_CHARS or any(ord(c) < 32 for c in label):
            raise TokenError(f"a token needs a label of 1 to {LABEL_CHARS} printable characters")
        scope = parse_sites(sites)
        token_id = secrets.token_hex(6)
        plain = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        token = DistrictToken(token_id, label, scope, by, now_text())
        try:
            self.db.execute(
                "INSERT INTO district_tokens (token_id, token_hash, label, sites, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, hash_token(plain), label, token.sites_text, by, token.created_at),
            )
        except IntegrityError as exc:  # 48 random bits colliding: say so rather than overwrite
            raise TokenError(f"could not store the token, try again: {exc}") from exc
        return token, plain

    def list(self) -> list[DistrictToken]:
        rows = self.db.query(
            "SELECT token_id, label, sites, created_by, created_at, revoked_at, last_used_at"
            " FROM district_tokens ORDER BY created_at, token_id"
        )
        return [_token(row) for row in rows]

    def revoke(self, token_id: str) -> bool:
        """True if an active token was revoked now."""
        return bool(
            self.db.execute(
                "UPDATE district_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
                (now_text(), token_id),
            )
        )

    def authenticate(self, plain: str) -> DistrictToken | None:
        """The active token ``plain`` is, or None (malformed, unknown or revoked)."""
        if not _TOKEN.match(plain):
            return None
        rows = self.db.query(
            "SELECT token_id, label, sites, created_by, created_at, revoked_at, last_used_at"
            " FROM district_tokens WHERE token_hash = ?",
            (hash_token(plain),),
        )
        if not rows:
            return None
        token = _token(rows[0])
        if not token.active:
            return None
        now = datetime.now(UTC)
        if now - self._used.get(token.token_id, datetime.min.replace(tzinfo=UTC)) >= USED_EVERY:
            self._used[token.token_id] = now
            self.db.execute(
                "UPDATE district_tokens SET last_used_at = ? WHERE token_id = ?",
                (format_time(now), token.token_id),
            )
        return token


def _token(row: tuple) -> DistrictToken:
    token_id, label, sites, by, created, revoked, used = row
    return DistrictToken(token_id, label, parse_sites(sites), by, created, revoked, used)
