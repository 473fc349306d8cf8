"""Visitor passes issued at the gate by a guard: a random number, good at this gate only.

A gate holds no signing key (private keys never leave the site office), so it cannot
issue a signed pass.  What it can do is remember a random code it handed out: the guard
registers a visitor on the guard screen, the gate draws a 14-digit code (``8``, twelve
random digits, a Luhn check digit so a mistyped code is told apart from an unknown one),
keeps it in its own SQLite file and shows it as a QR code.  Only this gate knows the
code, so it opens only this gate; it expires after ``visitor_pass_hours`` and is good
for one entry and one exit, then it is spent.

The file keeps a SHA-256 of the code, never the code itself, so the visitor list on a
stolen SD card opens nothing.  Name, unit, phone and reason are kept for the guard's
own look-ups and deleted a day after the pass expires; events carry the phone masked
except its last four digits.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import threading
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from edge.decision import Decision
from protocol.errors import GatepostError
from protocol.passes import Flag, Reason
from protocol.passes.decision import ClockLike, UntrustedClockPolicy, clock_error

log = logging.getLogger("gatepost.edge.visitors")

CODE_PREFIX = "8"
"""Visitor codes start with 8: never the signed-pass marker ``4750``, and easy to tell apart."""
CODE_DIGITS = 14
KEEP_AFTER_EXPIRY = timedelta(days=1)
"""Personal data is deleted this long after a pass expires."""
PURGE_EVERY = timedelta(minutes=1)
"""At most this often a decision also deletes what is past keeping: a gate may register no one for weeks."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS visitors (
    code_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    unit TEXT NOT NULL,
    phone TEXT NOT NULL,
    reason TEXT NOT NULL,
    guard TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    entered_at TEXT,
    left_at TEXT
) WITHOUT ROWID;
"""


class VisitorField(StrEnum):
    NAME = "name"
    UNIT = "unit"
    PHONE = "phone"
    REASON = "reason"
    GUARD = "guard"


class FieldProblem(StrEnum):
    """What is wrong with a field, as a key the guard screen translates."""

    REQUIRED = "required"
    NOT_TEXT = "not_text"
    TOO_LONG = "too_long"
    CONTROL_CHARS = "control_chars"
    PHONE_CHARS = "phone_chars"
    PHONE_DIGITS = "phone_digits"
    UNKNOWN_CHOICE = "unknown_choice"
    NOT_A_PLATE = "not_a_plate"
    OUT_OF_RANGE = "out_of_range"
    SAME_PLATE = "same_plate"


class VisitorError(GatepostError, ValueError):
    """A registration refused because of one field; ``field`` is what the screen highlights."""

    def __init__(self, field: str, problem: FieldProblem, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.problem = problem
        self.detail = detail


@dataclass(frozen=True, slots=True)
class VisitorPass:
    """A registered visitor and the code they were given (the code exists only in this value)."""

    code: str
    name: str
    unit: str
    phone: str
    reason: str
    guard: str
    issued_at: datetime
    expires_at: datetime

    @property
    def code_hash(self) -> str:
        return code_hash(self.code)

    def event_data(self) -> dict[str, Any]:
        """The ``visitor.registered`` payload: enough to audit, the phone masked, no code."""
        return {
            "name": self.name,
            "unit": self.unit,
            "phone": mask_phone(self.phone),
            "reason": self.reason,
            "guard": self.guard,
            "code_hash": self.code_hash,
            "expires": _iso(self.expires_at),
        }


def luhn_digit(digits: str) -> str:
    """The Luhn check digit for ``digits``: catches every single-digit typo and most swaps."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def new_code() -> str:
    body = CODE_PREFIX + "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS - 2))
    return body + luhn_digit(body)


def is_visitor_code(text: str) -> bool:
    """Whether ``text`` has a visitor code's shape (prefix, length, check digit)."""
    return (
        len(text) == CODE_DIGITS
        and text.isascii()
        and text.isdigit()
        and text.startswith(CODE_PREFIX)
        and luhn_digit(text[:-1]) == text[-1]
    )


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def mask_phone(phone: str) -> str:
    """Every digit but the last four as ``*``: enough for a guard to confirm, not to call."""
    digits = [c for c in phone if c.isascii() and c.isdigit()]
    return "*" * max(0, len(digits) - 4) + "".join(digits[-4:])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def clean_text(field: str, value: object, max_chars: int) -> str:
    """One line of printable text, trimmed; anything else is a :class:`VisitorError` naming the field."""
    if not isinstance(value, str):
        raise VisitorError(field, FieldProblem.NOT_TEXT, "must be text")
    value = unicodedata.normalize("NFC", value.strip())
    if not value:
        raise VisitorError(field, FieldProblem.REQUIRED, "required")
    if len(value) > max_chars:
        raise VisitorError(field, FieldProblem.TOO_LONG, f"longer than {max_chars} characters")
    if any(unicodedata.category(c).startswith("C") for c in value):
        raise VisitorError(field, FieldProblem.CONTROL_CHARS, "contains control characters")
    return value


def _phone(value: object) -> str:
    text = clean_text(VisitorField.PHONE, value, 24)
    if any(not (c.isdigit() and c.isascii()) and c not in "+- ()" for c in text):
        raise VisitorError(VisitorField.PHONE, FieldProblem.PHONE_CHARS, "only digits, spaces, + - ( )")
    digits = sum(c.isdigit() for c in text)
    if not 5 <= digits <= 15:
        raise VisitorError(VisitorField.PHONE, FieldProblem.PHONE_DIGITS, "5 to 15 digits")
    return text


@dataclass(frozen=True, slots=True)
class VisitorRequest:
    """A registration whose fields were checked (trimmed, printable, bounded)."""

    name: str
    unit: str
    phone: str
    reason: str
    guard: str

    @classmethod
    def check(
        cls, *, name: object, unit: object, phone: object, reason: object, guard: object
    ) -> VisitorRequest:
        """The checked request, or :class:`VisitorError` naming the first bad field."""
        return cls(
            name=clean_text(VisitorField.NAME, name, 64),
            unit=clean_text(VisitorField.UNIT, unit, 32),
            phone=_phone(phone),
            reason=clean_text(VisitorField.REASON, reason, 200),
            guard=clean_text(VisitorField.GUARD, guard, 64),
        )


class VisitorBook:
    """This gate's visitor passes in SQLite at ``path``; thread-safe (readers and the screen share it)."""

    def __init__(self, path: str | Path, *, hours: float = 4.0, now: datetime | None = None) -> None:
        """Open (or create) the file and delete what is past keeping as of ``now`` (the system clock)."""
        self.path = Path(path)
        self.lifetime = timedelta(hours=hours)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a use must survive a power cut, or a pass grows a use
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._purged_at = now if now is not None else datetime.now(UTC)
        with self._lock:
            self._purge(self._purged_at)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _purge(self, now: datetime) -> None:
        """Delete the rows a day past expiry (the caller holds the lock).

        An untrusted clock is a lower bound on the true time, so it deletes only what
        the true time would.
        """
        self._db.execute("DELETE FROM visitors WHERE expires_at < ?", (_iso(now - KEEP_AFTER_EXPIRY),))

    def _purge_locked(self, now: datetime) -> None:
        try:
            with self._lock:
                self._purge(now)
        except sqlite3.Error as exc:  # closed meanwhile, or the disk said no: the next minute tries again
            log.warning("could not delete expired visitor passes: %s", exc)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM visitors").fetchone()[0])

    def register(self, request: VisitorRequest, now: datetime) -> VisitorPass:
        """Draw a fresh code for a checked request and store it (the code is returned, never stored)."""
        issued = now.astimezone(UTC)
        expires = issued + self.lifetime
        with self._lock:
            self._purge(now)
            while True:  # a collision in 10^12 codes is unlikely, but cheap to rule out
                code = new_code()
                try:
                    self._db.execute(
                        "INSERT INTO visitors (code_hash, name, unit, phone, reason, guard, issued_at,"
                        " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            code_hash(code),
                            request.name,
                            request.unit,
                            request.phone,
                            request.reason,
                            request.guard,
                            _iso(issued),
                            _iso(expires),
                        ),
                    )
                except sqlite3.IntegrityError:
                    continue
                break
        return VisitorPass(
            code, request.name, request.unit, request.phone, request.reason, request.guard, issued, expires
        )

    def decide(
        self,
        code: str,
        now: ClockLike,
        direction: str | None = None,
        untrusted_clock: UntrustedClockPolicy = UntrustedClockPolicy.GRANT_AND_FLAG,
    ) -> Decision | None:
        """The decision on ``code`` if it is one of this gate's visitor passes, else ``None``.

        A pass is good for one entry and one exit.  At a reader configured ``in`` or
        ``out`` that is exactly what is checked; at a reader without a direction the
        first grant counts as the entry and the second as the exit.  A grant is durable
        before the answer.  The clock rule is the signed passes' (docs/clock.md), the
        issue time standing for ``valid_from``: an untrusted estimate is used as the time;
        an untrusted lower bound proves an expiry, which denies, while a clock behind the
        issue time (a gate rebooted at a time saved before the pass was issued) cannot
        tell the pass's age, and that follows ``untrusted_clock``, the gate's ``[passes]``
        policy: ``deny`` refuses it as ``not_yet_valid``.  Every decision it makes with an
        untrusted clock carries ``clock_untrusted``.
        """
        # On any credential, since a gate may see no visitor for weeks; a minute either way
        # (not only forward) so that a clock set back from a wrong future still purges.
        # On a thread of its own: the DELETE's fsync must not delay the door's answer.
        if abs(now.wall - self._purged_at) >= PURGE_EVERY:
            self._purged_at = now.wall
            threading.Thread(
                target=self._purge_locked, args=(now.wall,), name="visitor-purge", daemon=True
            ).start()
        if not is_visitor_code(code):
            return None
        flags = frozenset() if now.trusted else frozenset({Flag.CLOCK_UNTRUSTED})
        lenient = clock_error(now) is None and untrusted_clock is UntrustedClockPolicy.GRANT_AND_FLAG
        digest = code_hash(code)
        with self._lock:
            row = self._db.execute(
                "SELECT name, unit, issued_at, expires_at, entered_at, left_at FROM visitors"
                " WHERE code_hash = ?",
                (digest,),
            ).fetchone()
            if row is None:
                return None
            name, unit, issued_text, expires_text, entered, left = row

            def deny(reason: Reason, detail: str) -> Decision:
                return Decision(False, reason, flags, None, detail, name, unit)

            if now.wall >= datetime.fromisoformat(expires_text):
                return deny(Reason.EXPIRED, f"visitor pass until {expires_text}")
            if now.wall < datetime.fromisoformat(issued_text) and not lenient:
                return deny(Reason.NOT_YET_VALID, f"visitor pass from {issued_text}")
            way = direction or ("out" if entered else "in")
            if way == "in" and entered:
                return deny(Reason.REPLAYED, "visitor pass already used to enter")
            if way == "out" and left:
                return deny(Reason.REPLAYED, "visitor pass already used to leave")
            column = "entered_at" if way == "in" else "left_at"
            self._db.execute(
                f"UPDATE visitors SET {column} = ? WHERE code_hash = ?", (_iso(now.wall), digest)
            )
        return Decision(True, Reason.GRANTED, flags, None, "", name, unit)

    def uses(self, code: str) -> tuple[bool, bool] | None:
        """(entered, left) for ``code``, or ``None`` when this gate never issued it."""
        with self._lock:
            row = self._db.execute(
                "SELECT entered_at, left_at FROM visitors WHERE code_hash = ?", (code_hash(code),)
            ).fetchone()
        return None if row is None else (row[0] is not None, row[1] is not None)
