"""People and rosters in the console's database (component ``roster``), SQLite or PostgreSQL.

A roster is kept as its shifts (person, post, first hour, length) per week, the way a
person reads it, rather than as hours: an edit moves a shift, and the checker turns the
shifts back into hours to judge them.  Every change goes through :meth:`RosterStore.replace_week`
or :meth:`RosterStore.put_people`, each one transaction, so a roster is never half-written.
"""

from __future__ import annotations

import json
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
        )
    ]


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
        rows = [
            (
                p.id,
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
            for p in people
        ]
        with self.db.transaction():
            for row in rows:
                self.db.execute("DELETE FROM roster_people WHERE id = ?", (row[0],))
                self.db.execute(
                    "INSERT INTO roster_people (id, name, team, posts, available, trained, phone, languages,"
                    " max_hours_week, max_hours_day, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
        return len(rows)

    def people(self, *, active_only: bool = True) -> list[Person]:
        where = " WHERE active = 1" if active_only else ""
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
