"""Console users: who may log in, with which role, what each may see and do, and their sessions.

Passwords are stored as ``hashlib.scrypt`` digests with a per-user random salt, so a
copied database does not hand out passwords and two users with the same password do not
share a digest.  Verification always runs scrypt — also for names that do not exist —
and compares with :func:`hmac.compare_digest`.

Failed logins are counted per **name and source address** (``web_login_failures``), and
a (name, address) pair that failed :data:`LOCK_AFTER` times waits a growing while
(:func:`lock_seconds`).  Per pair, because a lock per account lets anyone lock the admin
out with five wrong guesses every fifteen minutes; the attacker's own address is what
waits.  Names that do not exist are counted and locked exactly like real ones, so no
answer — wrong password, locked, its timing — tells which names exist.  Every hash goes
through one :class:`~console.throttle.HashThrottle`: a flood of logins gets a bounded
share of the CPU and the rest is refused before hashing.  A password shorter than
:data:`MIN_PASSWORD_CHARS` or longer than :data:`MAX_PASSWORD_CHARS`, or a name no user
can have, is refused without hashing: it cannot be anyone's.  One
check of a (name, address) pair runs at a time: a second one arriving meanwhile is
refused as busy rather than queued, and the failure count is incremented by the
database itself, so neither threads nor a second console process can slip past a lock.

What an operator may do beyond watching is granted by an admin (:class:`Grant`):
``unlock`` per gate or per site, ``passes`` (issue, print, revoke passes and hand out a
dynamic pass's phone key) per site.  An operator may also be limited to some sites
(:attr:`User.sites`): a subdistrict office runs several compounds, and an operator of
one sees and acts on that one alone.  Admins see every site and hold every permission.

A session token is 32 random bytes handed to the browser once, in an HttpOnly cookie;
the database keeps only its SHA-256, so a leaked database or backup cannot be replayed
as a login.  Sessions end at an absolute expiry and after an idle timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import weakref
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from console.db import format_time
from console.throttle import HashThrottle, ThrottleBusy
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
"""Consecutive failed logins a (name, address) pair tolerates before it waits a while."""
MAX_LOCK_S = 15 * 60
FAILURE_MEMORY = timedelta(hours=24)
"""A pair's failures are forgotten this long after its last one (and its row purged)."""
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,31}$"
SITE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
"""A site or gate name, as ``protocol.topics.validate_name`` allows."""
ANY = "*"
"""A grant's site or gate that covers all of them; a user's sites when not limited."""
MAX_NAME_CHARS = 64

_DUMMY_SALT = secrets.token_bytes(SALT_BYTES)


class Role(StrEnum):
    """``operator`` watches, acknowledges alarms and edits cards, and does what they are
    granted; ``admin`` may do everything, everywhere, and manages users."""

    OPERATOR = "operator"
    ADMIN = "admin"


class Permission(StrEnum):
    """What an admin grants an operator beyond watching (:class:`Grant`)."""

    UNLOCK = "unlock"
    """Open a door from the console: per gate (``site/gate``), per site, or everywhere."""
    PASSES = "passes"
    """Issue, print and revoke passes and hand out a dynamic pass's phone key: per site."""


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
    BAD_PERMISSION = "bad_permission"
    BAD_SCOPE = "bad_scope"
    BAD_SITES = "bad_sites"


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


def parse_permission(permission: Permission | str) -> Permission:
    try:
        return Permission(permission)
    except ValueError:
        names = ", ".join(p.value for p in Permission)
        raise UserError(
            UserProblem.BAD_PERMISSION, f"permission must be one of {names}", permissions=names
        ) from None


def parse_sites(text: str | Iterable[str] | None) -> frozenset[str] | None:
    """``*`` (or nothing) is every site; else site names separated by commas or spaces."""
    names = text.replace(",", " ").split() if isinstance(text, str) else list(text or [])
    if not names or names == [ANY]:
        return None
    for name in names:
        if not SITE_PATTERN.match(name):
            raise UserError(
                UserProblem.BAD_SITES,
                f"sites must be '*' or site names (a-z, 0-9, '-', '_'); not {name[:40]!r}",
                value=name[:40],
            )
    return frozenset(names)


def sites_text(sites: frozenset[str] | None) -> str:
    return ANY if sites is None else ",".join(sorted(sites))


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
    """How long a (name, address) pair waits after ``failures`` consecutive failed logins.

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
    if not re.match(NAME_PATTERN, name or ""):
        raise UserError(
            UserProblem.BAD_NAME, "user name must be 1-32 characters of a-z, 0-9, '.', '_' or '-'"
        )
    return name


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """One permission over ``site`` (or :data:`ANY`) and, for ``unlock``, ``gate`` (or :data:`ANY`)."""

    permission: Permission
    site: str = ANY
    gate: str = ANY

    @classmethod
    def parse(cls, permission: Permission | str, scope: str) -> Grant:
        """``unlock`` + ``longtan/north``, ``unlock`` + ``longtan``, ``passes`` + ``*``, …"""
        kind = parse_permission(permission)
        scope = (scope or "").strip()
        site, _, gate = scope.partition("/")
        gate = gate or ANY
        bad = not site or any(part != ANY and not SITE_PATTERN.match(part) for part in (site, gate))
        if bad or (site == ANY and gate != ANY) or (kind is Permission.PASSES and gate != ANY):
            shape = "'*' or a site" if kind is Permission.PASSES else "'*', a site, or site/gate"
            raise UserError(
                UserProblem.BAD_SCOPE,
                f"the scope of {kind.value} must be {shape}; not {scope[:70]!r}",
                permission=kind.value,
                value=scope[:70],
            )
        return cls(kind, site, gate)

    @property
    def scope(self) -> str:
        return self.site if self.gate == ANY else f"{self.site}/{self.gate}"

    def covers(self, permission: Permission, site: str, gate: str | None = None) -> bool:
        if permission is not self.permission or self.site not in (ANY, site):
            return False
        return self.gate == ANY or gate == self.gate


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    created_at: str
    disabled: bool = False
    sites: frozenset[str] | None = None
    """The sites this user sees and acts on; None: every site."""
    grants: frozenset[Grant] = frozenset()

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def site_limit(self) -> frozenset[str] | None:
        """The sites to filter by; None when this user sees every site (admins always do)."""
        return None if self.is_admin else self.sites

    def sees(self, site: str) -> bool:
        return self.site_limit is None or site in self.site_limit

    def may(self, permission: Permission, site: str, gate: str | None = None) -> bool:
        """Whether this user may ``permission`` at ``site`` (and ``gate``): an admin may everything."""
        if self.is_admin:
            return True
        return self.sees(site) and any(g.covers(permission, site, gate) for g in self.grants)


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
    BUSY = "busy"
    """Refused before any check: the hashing queue was full, or this pair's check was running."""


@dataclass(frozen=True, slots=True)
class LoginResult:
    outcome: LoginOutcome
    user: User | None = None
    token: str | None = None
    locked_for_s: float = 0.0
    checked: bool = False
    """Whether a password was hashed for this answer (a refused attempt costs nothing)."""


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
        ),
        Migration(
            2,
            "operator sites and grants; failed logins per name and address",
            (
                # every user keeps seeing every site; an admin limits operators afterwards
                "ALTER TABLE web_users ADD COLUMN sites TEXT NOT NULL DEFAULT '*'",
                """CREATE TABLE web_grants (
                    user_name  TEXT NOT NULL,
                    permission TEXT NOT NULL,
                    site       TEXT NOT NULL,
                    gate       TEXT NOT NULL,
                    granted_by TEXT NOT NULL,
                    granted_at TEXT NOT NULL,
                    PRIMARY KEY (user_name, permission, site, gate)
                )""",
                """CREATE TABLE web_login_failures (
                    name         TEXT NOT NULL,
                    address      TEXT NOT NULL,
                    failures     INTEGER NOT NULL,
                    last_failure TEXT NOT NULL,
                    locked_until TEXT,
                    PRIMARY KEY (name, address)
                )""",
                "CREATE INDEX web_login_failures_last ON web_login_failures (last_failure)",
                # the per-account count and lock are no longer read: a lock per account was the bug
                "UPDATE web_users SET failures = 0, locked_until = NULL",
            ),
        ),
    ]


_USER_COLUMNS = "name, role, created_at, disabled, sites"


class UserStore:
    """Users, their grants and sessions in the console database (component ``users``).

    ``throttle`` paces every password hash of :meth:`login`; one store (so one throttle)
    per console process.
    """

    def __init__(
        self,
        db: Database,
        *,
        session_lifetime: timedelta = timedelta(hours=12),
        idle_timeout: timedelta = timedelta(minutes=30),
        throttle: HashThrottle | None = None,
    ) -> None:
        self.db = db
        self.session_lifetime = session_lifetime
        self.idle_timeout = idle_timeout
        self.throttle = throttle if throttle is not None else HashThrottle()
        self._checking: weakref.WeakValueDictionary[tuple[str, str], threading.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._checking_guard = threading.Lock()
        self._purged_at = datetime.min.replace(tzinfo=UTC)
        db.migrate("users", _migrations())

    # -- users -----------------------------------------------------------------------

    def add(
        self, name: str, password: str, role: Role | str, *, sites: str | Iterable[str] | None = None
    ) -> User:
        check_name(name)
        check_password_rules(password)
        role = parse_role(role)
        limit = parse_sites(sites)
        if self.get(name) is not None:
            raise UserError(UserProblem.EXISTS, f"user {name!r} already exists", name=name)
        salt = secrets.token_bytes(SALT_BYTES)
        now = format_time(_now())
        self.db.execute(
            "INSERT INTO web_users (name, role, salt, password_hash, created_at, updated_at, disabled,"
            " failures, sites) VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?)",
            (name, role.value, salt.hex(), hash_password(password, salt).hex(), now, now, sites_text(limit)),
        )
        return User(name, role, now, sites=limit)

    def set_password(self, name: str, password: str) -> None:
        check_password_rules(password)
        salt = secrets.token_bytes(SALT_BYTES)
        changed = self.db.execute(
            "UPDATE web_users SET salt = ?, password_hash = ?, updated_at = ? WHERE name = ?",
            (salt.hex(), hash_password(password, salt).hex(), format_time(_now()), name),
        )
        if not changed:
            raise UserError(UserProblem.NO_SUCH_USER, f"no user {name!r}", name=name)
        self.db.execute("DELETE FROM web_login_failures WHERE name = ?", (name,))
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

    def set_sites(self, name: str, sites: str | Iterable[str] | None) -> frozenset[str] | None:
        """Limit ``name`` to ``sites`` (``*``: every site); takes effect on their next request."""
        limit = parse_sites(sites)
        if not self.db.execute(
            "UPDATE web_users SET sites = ?, updated_at = ? WHERE name = ?",
            (sites_text(limit), format_time(_now()), name),
        ):
            raise UserError(UserProblem.NO_SUCH_USER, f"no user {name!r}", name=name)
        return limit

    def grant(self, name: str, permission: Permission | str, scope: str, *, by: str = "-") -> Grant:
        """Give ``name`` ``permission`` over ``scope``; granting what is held already changes nothing."""
        grant = Grant.parse(permission, scope)
        if self.get(name) is None:
            raise UserError(UserProblem.NO_SUCH_USER, f"no user {name!r}", name=name)
        self.db.execute(
            "INSERT INTO web_grants (user_name, permission, site, gate, granted_by, granted_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_name, permission, site, gate) DO NOTHING",
            (name, grant.permission.value, grant.site, grant.gate, by[:MAX_NAME_CHARS], format_time(_now())),
        )
        return grant

    def revoke(self, name: str, permission: Permission | str, scope: str) -> bool:
        """Take the grant back; False if ``name`` did not hold exactly that grant."""
        grant = Grant.parse(permission, scope)
        return bool(
            self.db.execute(
                "DELETE FROM web_grants WHERE user_name = ? AND permission = ? AND site = ? AND gate = ?",
                (name, grant.permission.value, grant.site, grant.gate),
            )
        )

    def grants(self, name: str) -> frozenset[Grant]:
        rows = self.db.query("SELECT permission, site, gate FROM web_grants WHERE user_name = ?", (name,))
        return frozenset(_grant(row) for row in rows)

    def get(self, name: str) -> User | None:
        rows = self.db.query(f"SELECT {_USER_COLUMNS} FROM web_users WHERE name = ?", (name,))
        return _user(rows[0], self.grants(name)) if rows else None

    def list(self) -> list[User]:
        rows = self.db.query(f"SELECT {_USER_COLUMNS} FROM web_users ORDER BY name")
        grants: dict[str, set[Grant]] = {}
        for user_name, *grant in self.db.query("SELECT user_name, permission, site, gate FROM web_grants"):
            grants.setdefault(user_name, set()).add(_grant(tuple(grant)))
        return [_user(row, frozenset(grants.get(row[0], ()))) for row in rows]

    def count(self) -> int:
        return int(self.db.query("SELECT COUNT(*) FROM web_users")[0][0])

    # -- logging in ------------------------------------------------------------------

    def login(self, name: str, password: str, *, address: str = "", lang: str | None = None) -> LoginResult:
        """Check a password from ``address``; on success open a session and return its token (shown once).

        The same steps for every name, real or not: a locked pair is refused without
        hashing; a password or name no user can have is refused without hashing or counting;
        anything else waits for a turn of the throttle (or is refused as busy) and is
        hashed.  One check of a (name, address) pair at a time: the guess after the one
        that locks it must see the lock, so a second one arriving meanwhile is busy.
        """
        name, address = name[:MAX_NAME_CHARS], address[:MAX_NAME_CHARS]
        lock = self._check_lock(name, address)
        if not lock.acquire(blocking=False):
            return LoginResult(LoginOutcome.BUSY)
        try:
            return self._login(name, password, address, lang)
        finally:
            lock.release()

    def locked_for(self, name: str, address: str = "") -> float:
        """Seconds the (name, address) pair still waits; 0 when it may try."""
        rows = self.db.query(
            "SELECT locked_until FROM web_login_failures WHERE name = ? AND address = ?",
            (name[:MAX_NAME_CHARS], address[:MAX_NAME_CHARS]),
        )
        if not rows or rows[0][0] is None:
            return 0.0
        return max(0.0, (_parse(rows[0][0]) - _now()).total_seconds())

    def _check_lock(self, name: str, address: str) -> threading.Lock:
        """The lock of this pair's checks.

        Weakly held: it lives while a check holds it, so guesses at a million made-up
        names leave nothing behind.
        """
        with self._checking_guard:
            lock = self._checking.get((name, address))
            if lock is None:
                lock = self._checking[name, address] = threading.Lock()
            return lock

    def _hashing(self, address: str) -> AbstractContextManager[None]:
        return self.throttle.turn(address) if self.throttle is not None else nullcontext()

    def _login(self, name: str, password: str, address: str, lang: str | None) -> LoginResult:
        waiting = self.locked_for(name, address)
        if waiting:
            return LoginResult(LoginOutcome.LOCKED, locked_for_s=waiting)
        if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS or not re.match(NAME_PATTERN, name):
            # no one's password or name (the rules every user was made with), so never a guess
            # worth counting or a hash: answered at once, the same whatever the name, and
            # without a write a flood could multiply
            return LoginResult(LoginOutcome.BAD_CREDENTIALS)
        rows = self.db.query(
            f"SELECT {_USER_COLUMNS}, salt, password_hash FROM web_users WHERE name = ?", (name,)
        )
        try:
            with self._hashing(address):
                if rows:
                    salt, stored = rows[0][5:]
                    digest = hash_password(password, bytes.fromhex(salt))
                    right = hmac.compare_digest(digest, bytes.fromhex(stored))
                else:
                    hash_password(password, _DUMMY_SALT)  # the same cost as a real check
                    right = False
        except ThrottleBusy:
            return LoginResult(LoginOutcome.BUSY)
        now = _now()
        if not right:
            return self._failed(name, address, now)
        user = _user(rows[0][:5], self.grants(name))
        if user.disabled:
            return LoginResult(LoginOutcome.DISABLED, user, checked=True)
        self.db.execute("DELETE FROM web_login_failures WHERE name = ? AND address = ?", (name, address))
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
        return LoginResult(LoginOutcome.OK, user, token, checked=True)

    def _failed(self, name: str, address: str, now: datetime) -> LoginResult:
        """Count a failure of the (name, address) pair in the database; lock it when the count says so.

        Whether ``name`` exists plays no part: the row, the count and the lock are the
        same for a made-up name.  The lock only ever moves later: a slower process that
        counted fewer failures must not shorten the lock another one set.
        """
        stamp = format_time(now)
        counted = self.db.query(
            "INSERT INTO web_login_failures (name, address, failures, last_failure) VALUES (?, ?, 1, ?)"
            " ON CONFLICT (name, address) DO UPDATE SET"
            " failures = CASE WHEN web_login_failures.last_failure < ? THEN 1"
            " ELSE web_login_failures.failures + 1 END,"
            " last_failure = excluded.last_failure"
            " RETURNING failures",
            (name, address, stamp, format_time(now - FAILURE_MEMORY)),
        )
        self._purge_failures(now)
        wait = lock_seconds(int(counted[0][0])) if counted else 0.0
        if not wait:
            return LoginResult(LoginOutcome.BAD_CREDENTIALS, checked=True)
        until = format_time(now + timedelta(seconds=wait))
        self.db.execute(
            "UPDATE web_login_failures SET locked_until = ?"
            " WHERE name = ? AND address = ? AND (locked_until IS NULL OR locked_until < ?)",
            (until, name, address, until),
        )
        return LoginResult(LoginOutcome.LOCKED, locked_for_s=wait, checked=True)

    def _purge_failures(self, now: datetime) -> None:
        """Forget pairs whose last failure is older than :data:`FAILURE_MEMORY`; at most once a minute."""
        if now - self._purged_at < timedelta(minutes=1):
            return
        self._purged_at = now
        self.db.execute(
            "DELETE FROM web_login_failures WHERE last_failure < ?", (format_time(now - FAILURE_MEMORY),)
        )

    def session(self, token: str) -> Session | None:
        """The live session for a cookie's token, touching its idle clock; None if over."""
        if not token or len(token) > 128:
            return None
        now = _now()
        token_hash = hash_token(token)
        rows = self.db.query(
            "SELECT s.csrf, s.last_seen, s.expires_at, s.lang, u.name, u.role, u.created_at, u.disabled, u.sites"
            " FROM web_sessions AS s JOIN web_users AS u ON u.name = s.user_name WHERE s.token_hash = ?",
            (token_hash,),
        )
        if not rows:
            return None
        csrf, last_seen, expires_at, lang, *user_row = rows[0]
        expires = _parse(expires_at)
        if bool(user_row[3]) or expires <= now or now - _parse(last_seen) > self.idle_timeout:
            self.db.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))
            return None
        user = _user(tuple(user_row), self.grants(user_row[0]))
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


def _grant(row: tuple) -> Grant:
    permission, site, gate = row
    return Grant(Permission(permission), site, gate)


def _user(row: tuple, grants: frozenset[Grant] = frozenset()) -> User:
    name, role, created_at, disabled, sites = row
    return User(name, Role(role), created_at, bool(disabled), parse_sites(sites), grants)
