"""The gate's memory of recent pass grants, kept across restarts.

Replay and passback checks remember grants: a dynamic code used at this gate, a serial
that just went in.  Held only in memory, a restart would forget them, and the agent
restarts after a power cut, an update or a crash — so a screenshot of a phone pass
replayed within its ±1 step (about a minute and a half) right after a restart, or a
card passed back through the fence, would be let in.  Each grant is written here as it
is made, and the agent replays the rows still inside any window into the decision state
before it takes its first scan.

The file uses ``synchronous=NORMAL`` in WAL mode: a power cut can lose the last few
grants (the last commits not yet checkpointed), not corrupt the file; the full fsync
the outbox pays for every event would double the cost of a grant for a window measured
in seconds.  Rows older than the longest window are deleted as new ones come in.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from protocol.passes.decision import Direction, GateState
from protocol.passes.dynamic import STEP_S

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS grants (
    serial    INTEGER NOT NULL,
    step      INTEGER,
    at        REAL NOT NULL,
    direction TEXT
);
CREATE INDEX IF NOT EXISTS grants_at ON grants (at);
"""
PRUNE_EVERY: Final = 500
DIRECTION_MEMORY: Final = timedelta(hours=36)
"""How long a pass's last direction counts for anti-passback: a resident out overnight
returns within this; a direction older than that is forgotten rather than blocking them."""


class PassMemory:
    """Grants on disk; ``attach(state)`` loads them into ``state`` and records every new one."""

    def __init__(self, path: Path, *, horizon: timedelta) -> None:
        self.path = path
        self.horizon = horizon
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._writes = 0

    @classmethod
    def for_state(cls, path: Path, state: GateState) -> PassMemory:
        """A memory long enough for ``state``'s windows: replay steps, passback, anti-passback."""
        policy = state.policy
        replay = timedelta(seconds=(2 * policy.skew_steps + 2) * (policy.step_s or STEP_S))
        horizon = max(replay, policy.passback, DIRECTION_MEMORY if policy.anti_passback else timedelta(0))
        return cls(path, horizon=horizon)

    def attach(self, state: GateState, now: datetime | None = None) -> int:
        """Replay the grants still inside the horizon into ``state``; return how many."""
        now = now or datetime.now(UTC)
        cutoff = (now - self.horizon).timestamp()
        with self._lock:
            rows = self._db.execute(
                "SELECT serial, step, at, direction FROM grants WHERE at >= ? ORDER BY at", (cutoff,)
            ).fetchall()
        for serial, step, at, direction in rows:
            state.remember(serial, step, datetime.fromtimestamp(at, UTC), direction)
        state.on_grant = self.record
        return len(rows)

    def record(self, serial: int, step: int | None, when: datetime, direction: Direction | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO grants (serial, step, at, direction) VALUES (?, ?, ?, ?)",
                (serial, step, when.timestamp(), direction),
            )
            self._writes += 1
            if self._writes % PRUNE_EVERY == 0:
                self._db.execute("DELETE FROM grants WHERE at < ?", ((when - self.horizon).timestamp(),))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM grants").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
