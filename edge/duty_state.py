"""Who is checked in at this gate: the gate's own SQLite file, fsync'd at every change.

A staff credential toggles: it checks its holder in, or out if they are checked in here.
That toggle must survive an agent restart (a power cut at the post must not turn the next
check-out into a second check-in), so the state lives in a small SQLite file next to the
outbox with ``synchronous=FULL``, as the outbox's own state is kept.

Why a file of its own rather than a scan of the outbox: the outbox forgets delivered
events (it is a queue, not a history), so after a day of delivered events it could no
longer say who came on duty yesterday evening and is still here.

Order against the event: the ``duty.check_in`` / ``duty.check_out`` event is taken first
(durable in the outbox), then this state is changed.  A crash between the two leaves the
state as before the presentation, so the next presentation repeats the same event (a
second ``check_in`` for someone already in): the console sees a repeat, never a lost one.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checked_in (
    person TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    since TEXT NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class CheckedIn:
    person: str
    name: str
    since: datetime


class DutyState:
    """The people checked in at this gate, persisted at ``path`` (``:memory:`` if the disk refuses)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def get(self, person: str) -> CheckedIn | None:
        with self._lock:
            row = self._db.execute(
                "SELECT person, name, since FROM checked_in WHERE person = ?", (person,)
            ).fetchone()
        return None if row is None else CheckedIn(row[0], row[1], datetime.fromisoformat(row[2]))

    def all(self) -> list[CheckedIn]:
        with self._lock:
            rows = self._db.execute(
                "SELECT person, name, since FROM checked_in ORDER BY since, person"
            ).fetchall()
        return [CheckedIn(p, n, datetime.fromisoformat(s)) for p, n, s in rows]

    def check_in(self, person: str, name: str, since: datetime) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO checked_in (person, name, since) VALUES (?, ?, ?)",
                (person, name, since.isoformat()),
            )

    def check_out(self, person: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM checked_in WHERE person = ?", (person,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
