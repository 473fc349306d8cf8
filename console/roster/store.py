"""People and rosters in the console's database (component ``roster``), SQLite or PostgreSQL.

A roster is kept as its shifts (person, post, first hour, length) per week, the way a
person reads it, rather than as hours: an edit moves a shift, and the checker turns the
shifts back into hours to judge them.  Every change goes through :meth:`RosterStore.replace_week`
or :meth:`RosterStore.put_people`, each one transaction, so a roster is never half-written.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from console.db import Database, Migration, now_text
from console.roster.check import shifts
from console.roster.model import Assignment, Person, Team

COMPONENT = "roster"


def _migrations() -> list[Migration]:
    return [
        Migration(
            1,
            "people, and rosters as shifts per week",
            (
                """CREATE TABLE roster_people (
                    id             TEXT PRIMARY KEY,
                    name           TEXT NOT NULL,
                    team           TEXT NOT NULL,
                    posts          TEXT NOT NULL,
                    available      TEXT NOT NULL,
                    trained        INTEGER NOT NULL DEFAULT 0,
                    phone          TEXT NOT NULL DEFAULT '',
                    languages      TEXT NOT NULL DEFAULT '[]',
                    max_hours_week INTEGER,
                    max_hours_day  INTEGER,
                    active         INTEGER NOT NULL DEFAULT 1,
                    updated_at     TEXT NOT NULL
                )""",
                """CREATE TABLE roster_weeks (
                    week       TEXT PRIMARY KEY,
                    status     TEXT NOT NULL,
                    made_by    TEXT NOT NULL,
                    made_at    TEXT NOT NULL,
                    summary    TEXT NOT NULL DEFAULT '{}'
                )""",
                """CREATE TABLE roster_shifts (
                    week       TEXT NOT NULL,
                    person     TEXT NOT NULL,
                    post       TEXT NOT NULL,
                    start_hour INTEGER NOT NULL,
                    hours      INTEGER NOT NULL,
                    PRIMARY KEY (week, person, start_hour)
                )""",
                "CREATE INDEX roster_shifts_post ON roster_shifts (week, post, start_hour)",
            ),
        ),
        Migration(
            2,
            "volunteer sign-up: per-site links, pending people and their own page's secret",
            (
                """CREATE TABLE roster_links (
                    token_hash TEXT PRIMARY KEY,
                    site       TEXT NOT NULL,
                    made_by    TEXT NOT NULL,
                    made_at    TEXT NOT NULL,
                    revoked    INTEGER NOT NULL DEFAULT 0
                )""",
                "ALTER TABLE roster_people ADD COLUMN pending INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE roster_people ADD COLUMN secret_hash TEXT",
                "ALTER TABLE roster_people ADD COLUMN joined_by TEXT",
            ),
        ),
        Migration(
            3,
            "personal duty PINs (scrypt hashes in the guard PIN's format) for check-in on a guard screen",
            (
                """CREATE TABLE roster_pins (
                    person     TEXT PRIMARY KEY,
                    pin_hash   TEXT NOT NULL,
                    set_by     TEXT NOT NULL,
                    set_at     TEXT NOT NULL
                )""",
            ),
        ),
    ]


def secret_hash(secret: str) -> str:
    """Links and personal pages are found by the SHA-256 of their secret: the database never holds one."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredShift:
    person: str
    post: str
    start_hour: int
    hours: int


class RosterStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate(COMPONENT, _migrations())

    # -- people -----------------------------------------------------------------------

    def put_people(self, people: Iterable[Person]) -> int:
        """Add or update people by id, all in one transaction; returns how many were written."""
        people = list(people)
        with self.db.transaction():
            for person in people:
                self._write(person)
        return len(people)

    def _write(self, p: Person) -> None:
        """Update the person's own fields (never their sign-up state), or add them."""
        row = (
            p.name,
            p.team.value,
            json.dumps(sorted(p.posts), ensure_ascii=False),
            json.dumps(sorted(p.available)),
            int(p.trained),
            p.phone,
            json.dumps(list(p.languages), ensure_ascii=False),
            p.max_hours_week,
            p.max_hours_day,
            now_text(),
        )
        updated = self.db.execute(
            "UPDATE roster_people SET name = ?, team = ?, posts = ?, available = ?, trained = ?, phone = ?,"
            " languages = ?, max_hours_week = ?, max_hours_day = ?, updated_at = ? WHERE id = ?",
            (*row, p.id),
        )
        if not updated:
            self.db.execute(
                "INSERT INTO roster_people (name, team, posts, available, trained, phone, languages,"
                " max_hours_week, max_hours_day, updated_at, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, p.id),
            )

    def people(self, *, active_only: bool = True) -> list[Person]:
        """Everyone; ``active_only``: without the retired and without sign-ups not yet approved."""
        where = " WHERE active = 1 AND pending = 0" if active_only else ""
        rows = self.db.query(
            "SELECT id, name, team, posts, available, trained, phone, languages, max_hours_week, max_hours_day"
            f" FROM roster_people{where} ORDER BY id"
        )
        return [
            Person(
                id=row[0],
                name=row[1],
                team=Team(row[2]),
                posts=frozenset(json.loads(row[3])),
                available=frozenset(json.loads(row[4])),
                trained=bool(row[5]),
                phone=row[6],
                languages=tuple(json.loads(row[7])),
                max_hours_week=row[8],
                max_hours_day=row[9],
            )
            for row in rows
        ]

    # -- rosters ----------------------------------------------------------------------

    def replace_week(
        self, week: date, assignment: Assignment, *, status: str, made_by: str, summary: dict[str, object]
    ) -> int:
        """Store a week's roster in place of the one before; returns the number of shifts."""
        rows = [
            (week.isoformat(), person, post, first, last - first + 1)
            for (person, post), hours in sorted(assignment.items())
            for first, last in shifts(hours)
        ]
        with self.db.transaction():
            self.db.execute("DELETE FROM roster_shifts WHERE week = ?", (week.isoformat(),))
            self.db.execute("DELETE FROM roster_weeks WHERE week = ?", (week.isoformat(),))
            self.db.execute(
                "INSERT INTO roster_weeks (week, status, made_by, made_at, summary) VALUES (?, ?, ?, ?, ?)",
                (week.isoformat(), status, made_by, now_text(), json.dumps(summary, default=str)),
            )
            for row in rows:
                self.db.execute(
                    "INSERT INTO roster_shifts (week, person, post, start_hour, hours) VALUES (?, ?, ?, ?, ?)",
                    row,
                )
        return len(rows)

    def week_shifts(self, week: date, post: str | None = None) -> list[StoredShift]:
        sql = "SELECT person, post, start_hour, hours FROM roster_shifts WHERE week = ?"
        params: list[object] = [week.isoformat()]
        if post is not None:
            sql += " AND post = ?"
            params.append(post)
        rows = self.db.query(sql + " ORDER BY start_hour, post, person", params)
        return [StoredShift(row[0], row[1], int(row[2]), int(row[3])) for row in rows]

    def week_assignment(self, week: date) -> Assignment:
        hours: dict[tuple[str, str], set[int]] = defaultdict(set)
        for shift in self.week_shifts(week):
            hours[shift.person, shift.post].update(range(shift.start_hour, shift.start_hour + shift.hours))
        return {key: frozenset(value) for key, value in hours.items()}

    def week_summary(self, week: date) -> tuple[str, dict[str, object]] | None:
        rows = self.db.query("SELECT status, summary FROM roster_weeks WHERE week = ?", (week.isoformat(),))
        return (rows[0][0], json.loads(rows[0][1])) if rows else None

    def weeks_with_shifts(self, weeks: Iterable[date]) -> set[date]:
        """Which of ``weeks`` have a stored roster at all."""
        wanted = sorted({w.isoformat() for w in weeks})
        if not wanted:
            return set()
        marks = ", ".join("?" * len(wanted))
        rows = self.db.query(f"SELECT week FROM roster_weeks WHERE week IN ({marks})", wanted)
        return {date.fromisoformat(row[0]) for row in rows}

    # -- personal duty PINs ----------------------------------------------------------------

    def set_pin(self, person: str, pin_hash: str, set_by: str) -> None:
        """Give ``person`` this PIN hash (:func:`console.duty_pins.hash_duty_pin`), replacing any before."""
        with self.db.transaction():
            self.db.execute("DELETE FROM roster_pins WHERE person = ?", (person,))
            self.db.execute(
                "INSERT INTO roster_pins (person, pin_hash, set_by, set_at) VALUES (?, ?, ?, ?)",
                (person, pin_hash, set_by, now_text()),
            )

    def clear_pin(self, person: str) -> bool:
        return self.db.execute("DELETE FROM roster_pins WHERE person = ?", (person,)) > 0

    def pins(self) -> dict[str, str]:
        """``person id -> PIN hash`` of everyone with a personal PIN."""
        return {row[0]: row[1] for row in self.db.query("SELECT person, pin_hash FROM roster_pins")}

    def pin_set_at(self) -> dict[str, str]:
        """``person id -> when their PIN was set`` (the people page shows that a PIN exists, never it)."""
        return {row[0]: row[1] for row in self.db.query("SELECT person, set_at FROM roster_pins")}

    # -- volunteer sign-up --------------------------------------------------------------

    def make_link(self, site: str, made_by: str) -> str:
        """A new sign-up link's secret for ``site`` (shown once; only its hash is kept)."""
        token = secrets.token_urlsafe(16)
        self.db.execute(
            "INSERT INTO roster_links (token_hash, site, made_by, made_at) VALUES (?, ?, ?, ?)",
            (secret_hash(token), site, made_by, now_text()),
        )
        return token

    def link_site(self, token: str) -> str | None:
        """The site a live link signs people up for, or None for a wrong or revoked link."""
        rows = self.db.query(
            "SELECT site FROM roster_links WHERE token_hash = ? AND revoked = 0", (secret_hash(token),)
        )
        return rows[0][0] if rows else None

    def links(self) -> list[tuple[str, str, str, str, bool]]:
        """(hash prefix, site, made by, made at, revoked) of every link, newest first."""
        rows = self.db.query(
            "SELECT token_hash, site, made_by, made_at, revoked FROM roster_links ORDER BY made_at DESC"
        )
        return [(r[0][:12], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def revoke_link(self, hash_prefix: str) -> int:
        return self.db.execute(
            "UPDATE roster_links SET revoked = 1 WHERE token_hash LIKE ? AND revoked = 0",
            (hash_prefix + "%",),
        )

    def count_pending(self, site_token: str) -> int:
        rows = self.db.query(
            "SELECT COUNT(*) FROM roster_people WHERE pending = 1 AND joined_by = ?",
            (secret_hash(site_token),),
        )
        return int(rows[0][0])

    def sign_up(self, person: Person, link: str) -> str:
        """Add ``person`` as pending approval; returns the secret of their own page (shown once)."""
        secret = secrets.token_urlsafe(16)
        with self.db.transaction():
            self._write(person)
            self.db.execute(
                "UPDATE roster_people SET pending = 1, secret_hash = ?, joined_by = ? WHERE id = ?",
                (secret_hash(secret), secret_hash(link), person.id),
            )
        return secret

    def person_by_secret(self, secret: str) -> tuple[Person, bool] | None:
        """The person whose page this is, and whether they wait for approval."""
        rows = self.db.query(
            "SELECT id, pending FROM roster_people WHERE secret_hash = ? AND active = 1",
            (secret_hash(secret),),
        )
        if not rows:
            return None
        found = [p for p in self.people(active_only=False) if p.id == rows[0][0]]
        return (found[0], bool(rows[0][1])) if found else None

    def pending(self) -> list[Person]:
        ids = {
            row[0] for row in self.db.query("SELECT id FROM roster_people WHERE pending = 1 AND active = 1")
        }
        return [p for p in self.people(active_only=False) if p.id in ids]

    def decide(self, person_id: str, approve: bool) -> bool:
        """Approve a pending sign-up, or refuse it (the person is kept, inactive, for the record)."""
        if approve:
            changed = self.db.execute(
                "UPDATE roster_people SET pending = 0 WHERE id = ? AND pending = 1", (person_id,)
            )
        else:
            changed = self.db.execute(
                "UPDATE roster_people SET active = 0 WHERE id = ? AND pending = 1", (person_id,)
            )
        return changed > 0


def broken_rule(people: Iterable[Person], assignment: Assignment, person: str) -> str | None:
    """``"roster.rule.<rule>"`` for the first hard rule ``assignment`` breaks for ``person``, else None."""
    from console.roster.check import violations
    from console.roster.model import Problem

    kept = {k: v for k, v in assignment.items() if v}
    posts = {p for _, p in kept}
    problem = Problem(tuple(sorted(posts)), tuple(people), {p: [0] * 168 for p in posts})
    broken = [v for v in violations(problem, kept) if v.person == person]
    return f"roster.rule.{broken[0].rule.value}" if broken else None


def with_hours(
    assignment: Assignment, person: str, post: str, hours: frozenset[int], *, add: bool
) -> Assignment | None:
    """The assignment with ``hours`` added to (or taken from) one person's post; None to take hours not held."""
    changed = dict(assignment)
    held = changed.get((person, post), frozenset())
    if not add and not hours <= held:
        return None
    changed[person, post] = held | hours if add else held - hours
    return {k: v for k, v in changed.items() if v}


def change_shift(
    store: RosterStore, week: date, person: str, post: str, hours: frozenset[int], *, add: bool, made_by: str
) -> str | None:
    """Add or remove ``hours`` of one person's shift at ``post``, if no rule breaks; the reason key if one does.

    The one path for every hand edit — an operator's on ``/roster``, a volunteer's on their own
    page — so both are judged alike by :func:`console.roster.check.violations`, for that person.
    Returns ``None`` when stored, ``"roster.error.no_such_shift"`` for a removal of hours not
    held, or ``"roster.rule.<rule>"`` naming the first rule the change would break.
    """
    changed = with_hours(store.week_assignment(week), person, post, hours, add=add)
    if changed is None:
        return "roster.error.no_such_shift"
    refused = broken_rule(store.people(active_only=False), changed, person)
    if refused is not None:
        return refused
    summary = store.week_summary(week)
    store.replace_week(week, changed, status="edited", made_by=made_by, summary=summary[1] if summary else {})
    return None
