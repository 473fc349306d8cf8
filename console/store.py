"""The console's event store: every event id once, committed before anyone is told so.

The store is the reason a gate may delete an event: the ingestor acknowledges a batch
only after :meth:`EventStore.commit` returned, and ``synchronous=FULL`` in WAL mode
makes that return mean "on disk".  Duplicates are normal (a gate resends whatever was
not acknowledged), so the event id is unique and a resent event is counted, not stored.

All SQL lives in this module so that a second backend (PostgreSQL, a later issue) is a
second implementation of the same small interface rather than a hunt through callers.
The schema evolves by numbered migrations recorded in ``schema_migrations``; each is
applied once, in order, inside its own transaction, when a writable store opens.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from protocol import Event, GatepostError, GateStatus

_ZERO = timedelta(0)
_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def format_time(value: datetime) -> str:
    """UTC, always with microseconds, so that text order is time order in SQL."""
    if value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _now() -> str:
    return format_time(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events",
        (
            """CREATE TABLE events (
                row_id        INTEGER PRIMARY KEY,
                id            TEXT NOT NULL UNIQUE,
                site          TEXT NOT NULL,
                gate          TEXT NOT NULL,
                boot          TEXT NOT NULL,
                seq           INTEGER NOT NULL,
                time          TEXT NOT NULL,
                clock_trusted INTEGER NOT NULL,
                type          TEXT NOT NULL,
                data          TEXT NOT NULL,
                received_at   TEXT NOT NULL
            )""",
            "CREATE INDEX events_gate_seq ON events (site, gate, seq)",
            "CREATE INDEX events_time ON events (time)",
        ),
    ),
    Migration(
        2,
        "gate status and rejections",
        (
            """CREATE TABLE gate_status (
                site        TEXT NOT NULL,
                gate        TEXT NOT NULL,
                state       TEXT NOT NULL,
                boot        TEXT NOT NULL,
                time        TEXT,
                received_at TEXT NOT NULL,
                payload     TEXT NOT NULL,
                PRIMARY KEY (site, gate)
            )""",
            """CREATE TABLE rejections (
                row_id INTEGER PRIMARY KEY,
                time   TEXT NOT NULL,
                topic  TEXT NOT NULL,
                reason TEXT NOT NULL,
                detail TEXT NOT NULL
            )""",
            "CREATE INDEX rejections_reason ON rejections (reason)",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version

_INSERT_EVENTS = """
INSERT INTO events (id, site, gate, boot, seq, time, clock_trusted, type, data, received_at)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
       value ->> 5, value ->> 6, value ->> 7, value ->> 8, ?
FROM json_each(?) WHERE true
ON CONFLICT (id) DO NOTHING
"""
"""The whole batch in one statement, passed as one JSON array of rows.

Why not ``executemany``: the sqlite3 module releases the GIL around every row it
steps, and the ingest writer shares the GIL with paho's busy network thread, so each
row could wait out a full thread switch interval (5 ms) to get it back — measured here,
a 120-row batch took 24 ms that way against 0.7 ms alone.  One statement hands the GIL
over a few times per batch instead of once per row.
"""
_UPSERT_STATUS = """
INSERT INTO gate_status (site, gate, state, boot, time, received_at, payload)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (site, gate) DO UPDATE SET
    state = excluded.state, boot = excluded.boot, time = excluded.time,
    received_at = excluded.received_at, payload = excluded.payload
"""
_INSERT_REJECTION = "INSERT INTO rejections (time, topic, reason, detail) VALUES (?, ?, ?, ?)"
_GATE_STATS = """
SELECT e.site, e.gate, COUNT(*), COUNT(DISTINCT e.seq), MIN(e.seq), MAX(e.seq), MAX(e.time),
       s.state, s.received_at
FROM events AS e LEFT JOIN gate_status AS s ON s.site = e.site AND s.gate = e.gate
GROUP BY e.site, e.gate
ORDER BY e.site, e.gate
"""
_STATUS_ONLY = """
SELECT site, gate, state, received_at FROM gate_status AS s
WHERE NOT EXISTS (SELECT 1 FROM events AS e WHERE e.site = s.site AND e.gate = s.gate)
ORDER BY site, gate
"""
_EVENT_COLUMNS = "row_id, id, site, gate, boot, seq, time, clock_trusted, type, data, received_at"

MAX_TOPIC_CHARS = 256
MAX_DETAIL_CHARS = 500


class StoreError(GatepostError, OSError):
    """The store cannot be opened or used: missing, unreadable, or from newer software."""


@dataclass(frozen=True, slots=True)
class InsertResult:
    new: int
    duplicate: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message the console refused.  ``detail`` is the decoder's words, never the payload."""

    topic: str
    reason: str
    detail: str
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class StoredEvent:
    row_id: int
    id: str
    site: str
    gate: str
    boot: str
    seq: int
    time: str
    clock_trusted: bool
    type: str
    data: dict[str, Any]
    received_at: str


@dataclass(frozen=True, slots=True)
class GateStats:
    """What the store holds of one gate.

    ``missing`` is ``max_seq - min_seq + 1 - distinct_seqs``: sequence numbers a gate took
    that never arrived.  A gate's first event has seq 1, so ``min_seq > 1`` also means
    loss unless the gate's history began before this store did.  ``seq_conflicts``
    counts events that share a seq with another id, which only a broken gate produces.
    """

    site: str
    gate: str
    count: int
    distinct_seqs: int
    min_seq: int
    max_seq: int
    missing: int
    seq_conflicts: int
    last_event_time: str | None
    state: str | None = None
    state_received_at: str | None = None


@dataclass(frozen=True, slots=True)
class StoreStats:
    gates: list[GateStats]
    total_events: int
    total_missing: int
    rejections: dict[str, int]
    total_rejections: int
    schema_version: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _event_row(event: Event) -> tuple[object, ...]:
    return (
        event.id,
        event.site,
        event.gate,
        event.boot,
        event.seq,
        format_time(event.time),
        int(event.clock_trusted),
        event.type,
        _to_json(event.data),
    )


def _status_row(status: GateStatus, received_at: str) -> tuple[object, ...]:
    return (
        status.site,
        status.gate,
        status.state.value,
        status.boot,
        format_time(status.time) if status.time is not None else None,
        received_at,
        status.model_dump_json(),
    )


def _rejection_row(rejection: Rejection) -> tuple[object, ...]:
    return (
        format_time(rejection.time),
        rejection.topic[:MAX_TOPIC_CHARS],
        rejection.reason,
        rejection.detail[:MAX_DETAIL_CHARS],
    )


def schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, *, upto: int = LATEST_VERSION) -> list[int]:
    """Apply every migration above the current version up to ``upto``; return those applied.

    Each runs in its own ``BEGIN IMMEDIATE`` transaction and re-reads the version inside
    it, so two processes opening the same new file cannot both apply one migration.
    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    applied: list[int] = []
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    for migration in MIGRATIONS:
        if migration.version > upto:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) >= migration.version:
                conn.execute("ROLLBACK")
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, _now()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(migration.version)
    return applied


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """An SQLite connection tuned for the store: WAL, full sync, explicit transactions."""
    if readonly:
        if not path.exists():
            raise StoreError(f"{path}: no such event store")
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False, timeout=10
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class EventStore:
    """The console's SQLite store.  Thread-safe: one lock around one connection.

    ``readonly`` opens an existing store without migrating it, for ``tail`` and ``stats``
    running beside a live console (WAL lets them read while it writes).
    """

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self.version = 0
        try:
            self._conn = connect(self.path, readonly=readonly)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open: {exc}") from exc
        try:
            self._check_version()
        except BaseException:
            self._conn.close()
            raise

    def _check_version(self) -> None:
        try:
            if not self.readonly:
                migrate(self._conn)
            version = schema_version(self._conn)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable event store: {exc}") from exc
        if version > LATEST_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this software ({LATEST_VERSION})"
            )
        if version < LATEST_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version}, expected {LATEST_VERSION}; "
                "start the console once to upgrade it"
            )
        self.version = version

    # -- writing ---------------------------------------------------------------------

    def commit(
        self,
        events: Sequence[Event] = (),
        statuses: Iterable[GateStatus] = (),
        rejections: Iterable[Rejection] = (),
    ) -> InsertResult:
        """Write a whole batch in one transaction (one fsync) and return what was new.

        Events whose id is already stored, or repeated within ``events``, are counted as
        duplicates and otherwise ignored.  When this returns, the batch is durable; if it
        raises, none of it was written.
        """
        received_at = _now()
        event_rows = [_event_row(event) for event in events]
        event_json = json.dumps(event_rows, separators=(",", ":"), ensure_ascii=False) if event_rows else ""
        status_rows = [_status_row(status, received_at) for status in statuses]
        rejection_rows = [_rejection_row(rejection) for rejection in rejections]
        with self._lock:
            conn = self._conn
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                if event_rows:
                    conn.execute(_INSERT_EVENTS, (received_at, event_json))
                new = conn.total_changes - before
                if status_rows:
                    conn.executemany(_UPSERT_STATUS, status_rows)
                if rejection_rows:
                    conn.executemany(_INSERT_REJECTION, rejection_rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return InsertResult(new=new, duplicate=len(event_rows) - new)

    def insert_events(self, events: Sequence[Event]) -> InsertResult:
        return self.commit(events)

    def set_gate_status(self, status: GateStatus) -> None:
        self.commit(statuses=[status])

    def record_rejection(self, topic: str, reason: str, detail: str, *, time: datetime | None = None) -> None:
        self.commit(rejections=[Rejection(topic, reason, detail, time or datetime.now(UTC))])

    # -- reading ---------------------------------------------------------------------

    def stats(self) -> StoreStats:
        with self._lock:
            rows = self._conn.execute(_GATE_STATS).fetchall()
            status_only = self._conn.execute(_STATUS_ONLY).fetchall()
            reasons = self._conn.execute(
                "SELECT reason, COUNT(*) FROM rejections GROUP BY reason ORDER BY reason"
            ).fetchall()
        gates = [
            GateStats(
                site=site,
                gate=gate,
                count=count,
                distinct_seqs=distinct,
                min_seq=low,
                max_seq=high,
                missing=high - low + 1 - distinct,
                seq_conflicts=count - distinct,
                last_event_time=last,
                state=state,
                state_received_at=state_at,
            )
            for site, gate, count, distinct, low, high, last, state, state_at in rows
        ]
        gates += [
            GateStats(site, gate, 0, 0, 0, 0, 0, 0, None, state, state_at)
            for site, gate, state, state_at in status_only
        ]
        gates.sort(key=lambda g: (g.site, g.gate))
        by_reason = {reason: count for reason, count in reasons}
        return StoreStats(
            gates=gates,
            total_events=sum(g.count for g in gates),
            total_missing=sum(g.missing for g in gates),
            rejections=by_reason,
            total_rejections=sum(by_reason.values()),
            schema_version=self.version,
        )

    def events_after(self, row_id: int, limit: int = 100) -> list[StoredEvent]:
        """Events stored after ``row_id``, oldest first: what ``tail --follow`` polls."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE row_id > ? ORDER BY row_id LIMIT ?",
                (row_id, limit),
            ).fetchall()
        return [_stored(row) for row in rows]

    def last_events(self, limit: int) -> list[StoredEvent]:
        """The newest ``limit`` events, oldest first: where ``tail`` starts."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY row_id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_stored(row) for row in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _stored(row: tuple[Any, ...]) -> StoredEvent:
    row_id, id_, site, gate, boot, seq, time, trusted, type_, data, received_at = row
    return StoredEvent(
        row_id, id_, site, gate, boot, seq, time, bool(trusted), type_, json.loads(data), received_at
    )
