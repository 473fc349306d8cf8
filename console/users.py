"""Console operators: who may log in, with which role, and their browser sessions.

Passwords are stored as ``hashlib.scrypt`` digests with a per-user random salt, so a
copied database does not hand out passwords and two users with the same password do not
share a digest.  Verification always runs scrypt — also for names that do not exist —
and compares with :func:`hmac.compare_digest`, so neither timing nor the answer tells
an attacker which names are real.  Repeated failures lock the account for a growing
while (:data:`LOCK_AFTER`, :func:`lock_seconds`): guessing becomes slow without letting
anyone lock an operator out for long.  The web server checks logins in a thread pool, so
twenty guesses sent at once would all read "no failures yet"; the checks of one name
therefore run one at a time in this process, and the failure count is incremented by
the database itself, so that a second console process cannot lose a count either.

A session token is 32 random bytes handed to the browser once, in an HttpOnly cookie;
the database keeps only its SHA-256, so a leaked database or backup cannot be replayed
as a login.  Sessions end at an absolute expiry and after an idle timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from console.db import format_time
from protocol.errors import Rejection

if TYPE_CHECKING:
    from console.db import Database

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
LOCK_AFTER = 5
"""Consecutive failed logins an account tolerates before it is locked for a while."""
MAX_LOCK_S = 15 * 60
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,31}$"

_DUMMY_SALT = secrets.token_bytes(SALT_BYTES)


class Role(StrEnum):
    """``operator`` watches, acknowledges alarms, unlocks and issues/revokes passes;
    ``admin`` may also manage users, read the audit log and bulk-import."""

    OPERATOR = "operator"
    ADMIN = "admin"


class UserProblem(StrEnum):
    """Why a user cannot be created or changed; the web console shows each in the user's language."""

    BAD_NAME = "bad_name"
    SHORT_PASSWORD = "short_password"
    LONG_PASSWORD = "long_password"
    BAD_ROLE = "bad_role"
    EXISTS = "exists"
    NO_SUCH_USER = "no_such_user"
    OWN_ROLE = "own_role"
    OWN_ACCOUNT = "own_account"
    UNKNOWN_ACTION = "unknown_action"


class UserError(Rejection[UserProblem], ValueError):
    """A user cannot be created or changed as asked.

    ``values`` fill the translated sentence (``users.error.<reason>`` in the locales);
    ``detail`` is the same sentence in English, for the command line and the log.
    """

    def __init__(self, reason: UserProblem, detail: str, **values: object) -> None:
        self.values = values
        super().__init__(reason, detail)


def parse_role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise UserError(UserProblem.BAD_ROLE, f"role must be one of {roles}", roles=roles) from None


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.rstrip("Z")).replace(tzinfo=UTC)


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024
    )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def lock_seconds(failures: int) -> float:
    """How long an account stays locked after ``failures`` consecutive failed logins.

    Nothing below :data:`LOCK_AFTER`; then 30 s doubling per further failure, capped at
    :data:`MAX_LOCK_S`, so an online guesser gets a few dozen tries an hour at most.
    """
    if failures < LOCK_AFTER:
        return 0.0
    return float(min(MAX_LOCK_S, 30 * 2 ** (failures - LOCK_AFTER)))


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError(
            UserProblem.SHORT_PASSWORD,
            f"password must have at least {MIN_PASSWORD_CHARS} characters",
            count=MIN_PASSWORD_CHARS,
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError(
            UserProblem.LONG_PASSWORD,
            f"password must have at most {MAX_PASSWORD_CHARS} characters",
            count=MAX_PASSWORD_CHARS,
        )


def check_name(name: str) -> str:
    import re

    if not re.match(NAME_PATTERN, name or ""):
        raise UserError(
            UserProblem.BAD_NAME, "user name must be 1-32 characters of a-z, 0-9, '.', '_' or '-'"
        )
    return name


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    created_at: str
    disabled: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class Session:
    """A live login.  ``csrf`` is the token every form of this session must echo."""

    user: User
    token_hash: str
    csrf: str
    expires_at: datetime
    lang: str | None


class LoginOutcome(StrEnum):
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    LOCKED = "locked"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class LoginResult:
    outcome: LoginOutcome
    user: User | None = None
    token: str | None = None
    locked_for_s: float = 0.0


def _migrations() -> list:
    from console.db import Migration

    return [
        Migration(
            1,
            "users and sessions",
            (
                """CREATE TABLE web_users (
                    name          TEXT PRIMARY KEY,
                    role          TEXT NOT NULL,
                    salt          TEXT NOT NULL,
                    password_hash TEXT NOT NULL,
                    created_at    TEXT NOT NULL,
                    updated_at    TEXT NOT NULL,
                    disabled      INTEGER NOT NULL DEFAULT 0,
                    failures      INTEGER NOT NULL DEFAULT 0,
                    locked_until  TEXT
                )""",
                """CREATE TABLE web_sessions (
                    token_hash TEXT PRIMARY KEY,
                    user_name  TEXT NOT NULL,
                    csrf       TEXT NOT NULL,
                    created_at TEXT NOT NULL,
                    last_seen  TEXT NOT NULL,
                    expires_at TEXT NOT NULL,
                    lang       TEXT
                )""",
                "CREATE INDEX web_sessions_user ON web_sessions (user_name)",
            ),
        )
    ]


class UserStore:
    """Users and sessions in the console database (component ``users``)."""

    def __init__(
        self,
        db: Database,
        *,
        session_lifetime: timedelta = timedelta(hours=12),
        idle_timeout: timedelta = timedelta(minutes=30),
    ) -> None:
        self.db = db
        self.session_lifetime = session_lifetime
        self.idle_timeout = idle_timeout
        self._checking: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._checking_guard = threading.Lock()
        db.migrate("users", _migrations())

    # -- users -----------------------------------------------------------------------

    def add(self, name: str, password: str, role: Role | str) -> User:
        check_name(name)
        check_password_rules(password)
        role = parse_role(role)
        if self.get(name) is not None:
            raise UserError(UserProblem.EXISTS, f"user {name!r} already exists", name=name)
        salt = secrets.token_bytes(SALT_BYTES)
        now = format_time(_now())
        self.db.execute(
            "INSERT INTO web_users (name, role, salt, password_hash, created_at, updated_at, disabled, failures)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
            (name, role.value, salt.hex(), hash_password(password, salt).hex(), now, now),
        )
        return User(name, role, now)

    def set_password(self, name: str, password: str) -> None:
        check_password_rules(password)
        salt = secrets.token_bytes(SALT_BYTES)
        changed = self.db.execute(
            "UPDATE web_users SET salt = ?, password_hash = ?, updated_at = ?, failures = 0, locked_until = NULL"
            " WHERE name = ?",
            (salt.hex(), hash_password(password, salt).hex(), format_time(_now()), name),
        )
        if not changed:
            raise UserError(UserProblem.NO_SUCH_USER, f"no user {name!r}", name=name)
        self.end_sessions(name)  # a new password ends every login made with the old one

    def set_role(self, name: str, role: Role | str) -> None:
        role = parse_role(role)
        if not self.db.execute(
            "UPDATE web_users SET role = ?, updated_at = ? WHERE name = ?",
            (role.value, format_time(_now()), name),
        ):
            raise UserError(UserProblem.NO_SUCH_USER, f"no user {name!r}", name=name)

    def set_disabled(self, name: str, disabled: bool) -> None:
        if not self.db.execute(
            "UPDATE web_users SET disabled = ?, updated_at = ? WHERE name = ?",
            (int(disabled), format_time(_now()), name),
        ):
            raise UserError(UserProblem.NO_SUCH_USER, f"no user {name!r}", name=name)
        if disabled:
            self.end_sessions(name)

    def get(self, name: str) -> User | None:
        rows = self.db.query("SELECT name, role, created_at, disabled FROM web_users WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    def list(self) -> list[User]:
        rows = self.db.query("SELECT name, role, created_at, disabled FROM web_users ORDER BY name")
        return [_user(row) for row in rows]

    def count(self) -> int:
        return int(self.db.query("SELECT COUNT(*) FROM web_users")[0][0])

    # -- logging in ------------------------------------------------------------------

    def login(self, name: str, password: str, *, lang: str | None = None) -> LoginResult:
        """Check a password; on success open a session and return its token (shown once).

        One check of ``name`` at a time: the guess after the one that locks the account
        must see the lock, not the count from before the guesses in flight.
        """
        with self._check_lock(name):
            return self._login(name, password, lang)

    def _check_lock(self, name: str) -> threading.Lock:
        """The lock of ``name``'s checks.

        Weakly held: it lives while a check holds or awaits it, so guesses at a million
        made-up names leave nothing behind.
        """
        with self._checking_guard:
            lock = self._checking.get(name)
            if lock is None:
                lock = self._checking[name] = threading.Lock()
            return lock

    def _login(self, name: str, password: str, lang: str | None) -> LoginResult:
        now = _now()
        rows = self.db.query(
            "SELECT name, role, created_at, disabled, salt, password_hash, locked_until"
            " FROM web_users WHERE name = ?",
            (name,),
        )
        if not rows or len(password) > MAX_PASSWORD_CHARS:
            hash_password(password[:MAX_PASSWORD_CHARS], _DUMMY_SALT)  # same cost as a real check
            return LoginResult(LoginOutcome.BAD_CREDENTIALS)
        user = _user(rows[0][:4])
        salt, stored, locked_until = rows[0][4:]
        if locked_until is not None and _parse(locked_until) > now:
            return LoginResult(
                LoginOutcome.LOCKED, user, locked_for_s=(_parse(locked_until) - now).total_seconds()
            )
        digest = hash_password(password, bytes.fromhex(salt))
        if not hmac.compare_digest(digest, bytes.fromhex(stored)):
            return self._failed(user, now)
        if user.disabled:
            return LoginResult(LoginOutcome.DISABLED, user)
        self.db.execute("UPDATE web_users SET failures = 0, locked_until = NULL WHERE name = ?", (name,))
        self.purge_expired()  # sessions are only made here, so this bounds the table
        token = secrets.token_urlsafe(32)
        stamp = format_time(now)
        self.db.execute(
            "INSERT INTO web_sessions (token_hash, user_name, csrf, created_at, last_seen, expires_at, lang)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                hash_token(token),
                name,
                secrets.token_urlsafe(32),
                stamp,
                stamp,
                format_time(now + self.session_lifetime),
                lang,
            ),
        )
        return LoginResult(LoginOutcome.OK, user, token)

    def _failed(self, user: User, now: datetime) -> LoginResult:
        """Count a wrong password in the database and lock the account when the count says so.

        The lock only ever moves later: a slower process that counted fewer failures
        must not shorten the lock another one set.
        """
        counted = self.db.query(
            "UPDATE web_users SET failures = failures + 1 WHERE name = ? RETURNING failures", (user.name,)
        )
        wait = lock_seconds(int(counted[0][0])) if counted else 0.0
        if not wait:
            return LoginResult(LoginOutcome.BAD_CREDENTIALS, user)
        until = format_time(now + timedelta(seconds=wait))
        self.db.execute(
            "UPDATE web_users SET locked_until = ? WHERE name = ? AND (locked_until IS NULL OR locked_until < ?)",
            (until, user.name, until),
        )
        return LoginResult(LoginOutcome.LOCKED, user, locked_for_s=wait)

    def session(self, token: str) -> Session | None:
        """The live session for a cookie's token, touching its idle clock; None if over."""
        if not token or len(token) > 128:
            return None
        now = _now()
        token_hash = hash_token(token)
        rows = self.db.query(
            "SELECT s.csrf, s.last_seen, s.expires_at, s.lang, u.name, u.role, u.created_at, u.disabled"
            " FROM web_sessions AS s JOIN web_users AS u ON u.name = s.user_name WHERE s.token_hash = ?",
            (token_hash,),
        )
        if not rows:
            return None
        csrf, last_seen, expires_at, lang, *user_row = rows[0]
        user = _user(tuple(user_row))
        expires = _parse(expires_at)
        if user.disabled or expires <= now or now - _parse(last_seen) > self.idle_timeout:
            self.db.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))
            return None
        if now - _parse(last_seen) > timedelta(seconds=30):  # not a write per request
            self.db.execute(
                "UPDATE web_sessions SET last_seen = ? WHERE token_hash = ?", (format_time(now), token_hash)
            )
        return Session(user, token_hash, csrf, expires, lang)

    def set_session_lang(self, token_hash: str, lang: str) -> None:
        self.db.execute("UPDATE web_sessions SET lang = ? WHERE token_hash = ?", (lang, token_hash))

    def logout(self, token_hash: str) -> None:
        self.db.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))

    def end_sessions(self, name: str) -> None:
        self.db.execute("DELETE FROM web_sessions WHERE user_name = ?", (name,))

    def purge_expired(self) -> int:
        now = _now()
        return self.db.execute(
            "DELETE FROM web_sessions WHERE expires_at <= ? OR last_seen <= ?",
            (format_time(now), format_time(now - self.idle_timeout)),
        )


def _user(row: tuple) -> User:
    name, role, created_at, disabled = row
    return User(name, Role(role), created_at, bool(disabled))
