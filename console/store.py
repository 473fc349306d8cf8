"""The console's event store: every event id once, committed before anyone is told so.

The store is the reason a gate may delete an event: the ingestor acknowledges a batch
only after :meth:`EventStore.commit` returned, and committed means on disk (SQLite:
``synchronous=FULL`` in WAL mode; PostgreSQL: a committed transaction).  Duplicates are
normal (a gate resends whatever was not acknowledged), so the event id is unique and a
resent event is counted, not stored.

All event SQL lives in this module, on top of :class:`console.db.Database`, so SQLite
(one file, a compound) and PostgreSQL (a district's thousand gates) are one code path
with two dialects where they must differ: the single-statement batch insert and the JSON
functions of the backfill.  The schema evolves by numbered migrations of the ``events``
component in ``schema_migrations``, applied when a writable store opens.

What the web console asks for is answered from small side tables kept in the same
transaction as the events, so a query never scans a year of history:

- ``flow_hourly`` — entries, exits and denials per gate per hour.  It survives
  retention, so flow charts reach further back than the raw events.
- ``gate_last`` — each gate's newest event (its time and type outlive retention), for
  the gates overview.
- extracted columns ``holder``, ``credential``, ``code``, ``reason``, ``granted``,
  ``direction`` — copies of the access fields of ``data``, indexed for search.  A door
  event's ``cause`` (grant, exit, remote, timeout …) fills ``reason``, since the event
  list shows it in the reason column and filters on it.  Plain
  columns rather than expression indexes, because JSON expressions differ between the
  dialects (and PostgreSQL would need ``data`` as jsonb, which rewrites what the gate
  sent); the copies are truncated to :data:`MAX_FIELD_CHARS` so a hostile value cannot
  overflow an index entry and wedge ingestion.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntFlag, StrEnum
from pathlib import Path
from typing import Any

from console.db import (
    Database,
    DatabaseError,
    Migration,
    format_time,
    is_postgres_url,
    now_text,
    sqlite_path,
)
from console.vehicle_crops import migrate as migrate_crops
from console.vehicle_crops import store_crops, take_crops
from protocol import Event, GateStatus

__all__ = [
    "EVENT_COLUMNS",
    "LATEST_VERSION",
    "TYPE_AS_INDEXED",
    "EventFlag",
    "EventStore",
    "FlowRow",
    "GateGaps",
    "GateOverviewRow",
    "GateStats",
    "InsertResult",
    "LinkKind",
    "LinkState",
    "Rejection",
    "StoreError",
    "StoreStats",
    "StoredEvent",
    "format_time",
    "hour_of",
    "migrations",
    "stored_event",
]

COMPONENT = "events"
_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

MAX_TOPIC_CHARS = 256
MAX_DETAIL_CHARS = 500
MAX_FIELD_CHARS = 200
"""Longest copy of a data field kept in an indexed column (``holder``, ``code``, …)."""

ACCESS_TYPES = ("access.scan", "door.access_granted", "door.access_denied")
"""Event types that are an access decision and so count in ``flow_hourly``."""
SITE_ROW = "*"
"""``flow_hourly.gate`` of a site's own rows, the sum of its gates (no gate name has a ``*``)."""

_IS_ACCESS = f"type IN {ACCESS_TYPES!r}"
_EVENTS_V1 = (
    """CREATE TABLE events (
        row_id        {pk},
        id            TEXT NOT NULL UNIQUE,
        site          TEXT NOT NULL,
        gate          TEXT NOT NULL,
        boot          TEXT NOT NULL,
        seq           {bigint} NOT NULL,
        time          TEXT NOT NULL,
        clock_trusted INTEGER NOT NULL,
        type          TEXT NOT NULL,
        data          TEXT NOT NULL,
        received_at   TEXT NOT NULL
    )""",
    "CREATE INDEX events_gate_seq ON events (site, gate, seq)",
    "CREATE INDEX events_time ON events (time)",
)
_STATUS_V2 = (
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
        row_id {pk},
        time   TEXT NOT NULL,
        topic  TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX rejections_reason ON rejections (reason)",
)
_ROLLUPS_V3 = (
    *(
        f"ALTER TABLE events ADD COLUMN {column} {kind}"
        for column, kind in (
            ("holder", "TEXT"),
            ("credential", "TEXT"),
            ("code", "TEXT"),
            ("reason", "TEXT"),
            ("granted", "INTEGER"),
            ("direction", "TEXT"),
        )
    ),
    "{backfill_fields}",
    "CREATE INDEX events_gate_time ON events (gate, time)",
    "CREATE INDEX events_type_time ON events (type, time)",
    "CREATE INDEX events_holder_time ON events (holder, time) WHERE holder IS NOT NULL",
    "CREATE INDEX events_code_time ON events (code, time) WHERE code IS NOT NULL",
    "CREATE INDEX events_reason_time ON events (reason, time) WHERE reason IS NOT NULL",
    "CREATE INDEX rejections_time ON rejections (time)",
    """CREATE TABLE flow_hourly (
        site    TEXT NOT NULL,
        gate    TEXT NOT NULL,
        hour    TEXT NOT NULL,
        entries INTEGER NOT NULL,
        exits   INTEGER NOT NULL,
        denied  INTEGER NOT NULL,
        events  INTEGER NOT NULL,
        PRIMARY KEY (site, gate, hour)
    )""",
    "CREATE INDEX flow_hourly_gate_hour ON flow_hourly (gate, hour)",  # gate '*': the site rows
    f"""INSERT INTO flow_hourly (site, gate, hour, entries, exits, denied, events)
        SELECT site, gate, substr(time, 1, 13) || ':00:00Z',
               SUM(CASE WHEN {_IS_ACCESS} AND granted = 1 AND (direction IS NULL OR direction <> 'out')
                        THEN 1 ELSE 0 END),
               SUM(CASE WHEN {_IS_ACCESS} AND granted = 1 AND direction = 'out' THEN 1 ELSE 0 END),
               SUM(CASE WHEN {_IS_ACCESS} AND granted = 0 THEN 1 ELSE 0 END),
               COUNT(*)
        FROM events
        GROUP BY site, gate, substr(time, 1, 13)""",
    """INSERT INTO flow_hourly (site, gate, hour, entries, exits, denied, events)
        SELECT site, '*', hour, SUM(entries), SUM(exits), SUM(denied), SUM(events)
        FROM flow_hourly GROUP BY site, hour""",
    """CREATE TABLE gate_last (
        site   TEXT NOT NULL,
        gate   TEXT NOT NULL,
        row_id {bigint} NOT NULL,
        time   TEXT NOT NULL,
        PRIMARY KEY (site, gate)
    )""",
    """INSERT INTO gate_last (site, gate, row_id, time)
        SELECT e.site, e.gate, MAX(e.row_id), e.time
        FROM events AS e
        JOIN (SELECT site, gate, MAX(time) AS time FROM events GROUP BY site, gate) AS m
          ON e.site = m.site AND e.gate = m.gate AND e.time = m.time
        GROUP BY e.site, e.gate, e.time""",
)

_BACKFILL = {
    "sqlite": """UPDATE events SET
        holder = CASE WHEN json_type(data, '$.holder') = 'text' THEN substr(data ->> '$.holder', 1, 200) END,
        credential = CASE WHEN json_type(data, '$.credential') = 'text'
                          THEN substr(data ->> '$.credential', 1, 200) END,
        code = CASE WHEN json_type(data, '$.code') = 'text' THEN substr(data ->> '$.code', 1, 200) END,
        reason = CASE WHEN json_type(data, '$.reason') = 'text' THEN substr(data ->> '$.reason', 1, 200) END,
        direction = CASE WHEN json_type(data, '$.direction') = 'text'
                         THEN substr(data ->> '$.direction', 1, 200) END,
        granted = CASE WHEN json_type(data, '$.granted') = 'true' THEN 1
                       WHEN json_type(data, '$.granted') = 'false' THEN 0
                       WHEN type = 'door.access_granted' THEN 1
                       WHEN type = 'door.access_denied' THEN 0 END""",
    "postgresql": """UPDATE events SET
        holder = CASE WHEN jsonb_typeof(data::jsonb -> 'holder') = 'string'
                      THEN left(data::jsonb ->> 'holder', 200) END,
        credential = CASE WHEN jsonb_typeof(data::jsonb -> 'credential') = 'string'
                          THEN left(data::jsonb ->> 'credential', 200) END,
        code = CASE WHEN jsonb_typeof(data::jsonb -> 'code') = 'string'
                    THEN left(data::jsonb ->> 'code', 200) END,
        reason = CASE WHEN jsonb_typeof(data::jsonb -> 'reason') = 'string'
                      THEN left(data::jsonb ->> 'reason', 200) END,
        direction = CASE WHEN jsonb_typeof(data::jsonb -> 'direction') = 'string'
                         THEN left(data::jsonb ->> 'direction', 200) END,
        granted = CASE WHEN jsonb_typeof(data::jsonb -> 'granted') = 'boolean'
                       THEN (data::jsonb ->> 'granted')::boolean::int
                       WHEN type = 'door.access_granted' THEN 1
                       WHEN type = 'door.access_denied' THEN 0 END""",
}

_LAST_TYPE_V5 = (
    "ALTER TABLE gate_last ADD COLUMN type TEXT",
    "UPDATE gate_last SET type = (SELECT e.type FROM events AS e WHERE e.row_id = gate_last.row_id)",
)
"""So the overview names a gate's newest event after retention pruned it (a gate quiet for
longer than events are kept).  One whose event was pruned before this step keeps its time only."""

_CAUSE_BACKFILL = {
    "sqlite": """UPDATE events SET reason = substr(data ->> '$.cause', 1, 200)
        WHERE reason IS NULL AND substr(type, 1, 5) = 'door.' AND json_type(data, '$.cause') = 'text'""",
    "postgresql": """UPDATE events SET reason = left(data::jsonb ->> 'cause', 200)
        WHERE reason IS NULL AND substr(type, 1, 5) = 'door.' AND jsonb_typeof(data::jsonb -> 'cause') = 'string'""",
}


_TEXT_COLUMNS = {
    "events": (
        "id", "site", "gate", "boot", "time", "type", "data", "received_at",
        "holder", "credential", "code", "reason", "direction",
    ),
    "gate_status": ("site", "gate", "state", "boot", "time", "received_at", "payload"),
    "rejections": ("time", "topic", "reason", "detail"),
    "flow_hourly": ("site", "gate", "hour"),
    "gate_last": ("site", "gate", "time", "type"),
}  # fmt: skip
_BYTE_ORDER_V6 = {
    "sqlite": (),  # SQLite compares text byte by byte (BINARY) already
    "postgresql": tuple(
        f"ALTER TABLE {table} " + ", ".join(f'ALTER COLUMN {c} TYPE TEXT COLLATE "C"' for c in columns)
        for table, columns in _TEXT_COLUMNS.items()
    ),
}
"""Every text column of the store compared in byte order, as SQLite compares it.

Ids, site and gate names, ISO times and event types are machine text: nothing here
is sorted for a reader's alphabet, and byte order is what SQLite gives, so both
backends list gates in the same order.  On PostgreSQL it is also cheaper: each index
insert compares keys with ``memcmp`` instead of the C library's ``strcoll`` (even
under ``C.UTF-8``, PostgreSQL 15 takes the ``strcoll`` path).  Measured with
bench/console.py's ingest rows on PostgreSQL 15, the server's CPU per stored event
fell from 27 µs to 21 µs.  The change is binary-compatible, so PostgreSQL rewrites no
table, only rebuilds the indexes on these columns once, when the console starts.
"""


class EventFlag(IntFlag):
    """Why a stored event is not taken as plain fact (``events.flags``; 0: nothing suspect).

    Every flagged event is still stored once and acknowledged, so a gate can delete it and
    nothing a genuine gate took is ever dropped; the flag says how far to believe it
    (console/integrity.py decides, docs/console.md explains):

    - ``FUTURE``: dated beyond the allowed clock skew after the console received it.
      Quarantined: not in the flow, not in ``gate_last``, hidden from the event list
      unless asked for, and pruned by the time it was *received*, so a date in the year
      8999 neither tops the list nor outlives retention.
    - ``BACKDATED``: dated well before an event the gate numbered earlier — a gate numbers
      events in the order it takes them, so a new number with an old date is impossible
      for a gate with a trusted clock.  Not in the flow (it would inflate a past hour).
    - ``FLOOD``: beyond the gate's rate budget.  Counted in the flow like any event (it may
      be genuine), and also in ``flow_flagged``, so the flow can be recomputed without it.
    """

    FUTURE = 1
    BACKDATED = 2
    FLOOD = 4


NOT_FACT = EventFlag.FUTURE | EventFlag.BACKDATED
"""Flags that keep an event out of ``flow_hourly`` and ``gate_last``."""

_INTEGRITY_TEXT = {
    "flow_flagged": ("site", "gate", "hour"),
    "seq_gaps": ("site", "gate", "seen_at"),
    "gate_seq": ("site", "gate", "ranges", "oldest_gap_at", "changed_at"),
    "console_link": ("name", "state", "since", "confirmed_at"),
    "watch_cursor": ("name",),
}


def _integrity_v7(dialect: str) -> tuple[str, ...]:
    """Flags on events, held-and-unconfirmed facts, and the tables the gap watch keeps.

    Adding ``flags`` with a constant default rewrites no table on either backend
    (SQLite stores the default in the schema; PostgreSQL 11+ keeps it in the catalog).
    """
    text = 'TEXT COLLATE "C"' if dialect == "postgresql" else "TEXT"
    if dialect == "sqlite":
        backlog = (
            "UPDATE gate_status SET backlog = CASE WHEN json_type(payload, '$.backlog') = 'integer'"
            " THEN payload ->> '$.backlog' END,"
            " backlog_at = CASE WHEN json_type(payload, '$.backlog') = 'integer'"
            " THEN COALESCE(time, received_at) END"
        )
    else:
        backlog = (
            "UPDATE gate_status SET backlog = CASE WHEN jsonb_typeof(payload::jsonb -> 'backlog') = 'number'"
            " THEN (payload::jsonb ->> 'backlog')::bigint END,"
            " backlog_at = CASE WHEN jsonb_typeof(payload::jsonb -> 'backlog') = 'number'"
            " THEN COALESCE(time, received_at) END"
        )
    statements = (
        "ALTER TABLE events ADD COLUMN flags INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX events_flagged ON events (received_at) WHERE flags <> 0",
        "ALTER TABLE gate_status ADD COLUMN backlog {bigint}",
        f"ALTER TABLE gate_status ADD COLUMN backlog_at {text}",
        backlog,
        f"ALTER TABLE gate_last ADD COLUMN received_at {text}",
        """CREATE TABLE flow_flagged (
            site    TEXT NOT NULL,
            gate    TEXT NOT NULL,
            hour    TEXT NOT NULL,
            entries INTEGER NOT NULL,
            exits   INTEGER NOT NULL,
            denied  INTEGER NOT NULL,
            events  INTEGER NOT NULL,
            PRIMARY KEY (site, gate, hour)
        )""",
        """CREATE TABLE seq_gaps (
            site      TEXT NOT NULL,
            gate      TEXT NOT NULL,
            first_seq {bigint} NOT NULL,
            last_seq  {bigint} NOT NULL,
            seen_at   TEXT NOT NULL,
            PRIMARY KEY (site, gate, first_seq)
        )""",
        """CREATE TABLE gate_seq (
            site          TEXT NOT NULL,
            gate          TEXT NOT NULL,
            scanned_to    {bigint} NOT NULL,
            gaps          {bigint} NOT NULL,
            missing       {bigint} NOT NULL,
            ranges        TEXT NOT NULL,
            oldest_gap_at TEXT,
            changed_at    TEXT NOT NULL,
            PRIMARY KEY (site, gate)
        )""",
        """CREATE TABLE console_link (
            name         TEXT PRIMARY KEY,
            state        TEXT NOT NULL,
            since        TEXT NOT NULL,
            confirmed_at TEXT NOT NULL
        )""",
        """CREATE TABLE watch_cursor (
            name  TEXT PRIMARY KEY,
            value {bigint} NOT NULL
        )""",
    )
    if dialect == "postgresql":
        statements += tuple(
            f"ALTER TABLE {table} " + ", ".join(f'ALTER COLUMN {c} TYPE TEXT COLLATE "C"' for c in columns)
            for table, columns in _INTEGRITY_TEXT.items()
        )
    return statements


TYPE_AS_INDEXED = {"sqlite": "type", "postgresql": 'type COLLATE "C"'}
"""``type`` in each dialect as the ``events_type_time`` index compares it (see :func:`migrations`):
PostgreSQL cannot use an index for a comparison in another collation, the database's default."""


def migrations(dialect: str) -> tuple[Migration, ...]:
    """The events component's migrations in ``dialect``: the same steps, JSON written per backend."""
    v3 = tuple(_BACKFILL[dialect] if s == "{backfill_fields}" else s for s in _ROLLUPS_V3)
    if dialect == "postgresql":
        # SQLite's row_id (INTEGER PRIMARY KEY) is implied in every index; PostgreSQL needs
        # it spelled out so "newest first" pages come straight from the index.
        v3 = tuple(
            s.replace(", time)", ", time, row_id)") if s.startswith("CREATE INDEX events_") else s for s in v3
        )
        # A type prefix ("door.*") is a range; byte order keeps it a range whatever the
        # database's collation (en_US would sort punctuation its own way).
        v3 = tuple(s.replace("(type, time", '(type COLLATE "C", time') for s in v3)
    return (
        Migration(1, "events", _EVENTS_V1),
        Migration(2, "gate status and rejections", _STATUS_V2),
        Migration(3, "search columns, flow_hourly, gate_last", v3),
        Migration(4, "door causes searchable as reasons", (_CAUSE_BACKFILL[dialect],)),
        Migration(5, "gate_last keeps its event's type", _LAST_TYPE_V5),
        Migration(6, "text compared in byte order", _BYTE_ORDER_V6[dialect]),
        Migration(7, "event flags, held backlog, sequence gaps, console link", _integrity_v7(dialect)),
    )


MIGRATIONS = migrations("sqlite")
LATEST_VERSION = MIGRATIONS[-1].version

_EVENT_FIELDS = (
    "id, site, gate, boot, seq, time, clock_trusted, type, data, "
    "holder, credential, code, reason, granted, direction, flags, received_at"
)
_RETURNING = "RETURNING row_id, site, gate, time, type, granted, direction, flags"
_INSERT_EVENTS = {
    "sqlite": f"""
INSERT INTO events ({_EVENT_FIELDS})
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
       value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12, value ->> 13,
       value ->> 14, value ->> 15, ?
FROM json_each(?) WHERE true
ON CONFLICT (id) DO NOTHING
{_RETURNING}
""",
    "postgresql": f"""
INSERT INTO events ({_EVENT_FIELDS})
SELECT r ->> 0, r ->> 1, r ->> 2, r ->> 3, (r ->> 4)::bigint, r ->> 5, (r ->> 6)::int,
       r ->> 7, r ->> 8, r ->> 9, r ->> 10, r ->> 11, r ->> 12, (r ->> 13)::int, r ->> 14, (r ->> 15)::int, ?
FROM jsonb_array_elements(?::jsonb) WITH ORDINALITY AS t(r, n)
ORDER BY n
ON CONFLICT (id) DO NOTHING
{_RETURNING}
""",
}
"""The whole batch in one statement, passed as one JSON array of rows.

Why not ``executemany``: the sqlite3 module releases the GIL around every row it
steps, and the ingest writer shares the GIL with paho's busy network thread, so each
row could wait out a full thread switch interval (5 ms) to get it back — measured here,
a 120-row batch took 24 ms that way against 0.7 ms alone.  One statement hands the GIL
over a few times per batch instead of once per row; on PostgreSQL it is also one round
trip instead of one per row.  ``RETURNING`` names exactly the rows that were new, which
is what the rollups must count (a duplicate must not count twice in the flow).
"""
_UPSERT_STATUS = """
INSERT INTO gate_status (site, gate, state, boot, time, received_at, payload, backlog, backlog_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (site, gate) DO UPDATE SET
    state = excluded.state, boot = excluded.boot, time = excluded.time,
    received_at = excluded.received_at, payload = excluded.payload,
    backlog = COALESCE(excluded.backlog, gate_status.backlog),
    backlog_at = CASE WHEN excluded.backlog IS NULL THEN gate_status.backlog_at ELSE excluded.backlog_at END
"""
"""A will (``offline``) carries no backlog: the last one a gate reported stays, with when it said so."""
_UPSERT_FLOW = """
INSERT INTO flow_hourly (site, gate, hour, entries, exits, denied, events) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (site, gate, hour) DO UPDATE SET
    entries = flow_hourly.entries + excluded.entries,
    exits = flow_hourly.exits + excluded.exits,
    denied = flow_hourly.denied + excluded.denied,
    events = flow_hourly.events + excluded.events
"""
_UPSERT_LAST = """
INSERT INTO gate_last (site, gate, row_id, time, type, received_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (site, gate) DO UPDATE SET row_id = excluded.row_id, time = excluded.time, type = excluded.type,
    received_at = excluded.received_at
WHERE excluded.time > gate_last.time OR (excluded.time = gate_last.time AND excluded.row_id > gate_last.row_id)
"""
"""``received_at`` moves with the newest event: when the console last heard the gate itself (see
:attr:`GateStats.status_contradicted`)."""
_UPSERT_FLAGGED = _UPSERT_FLOW.replace("flow_hourly", "flow_flagged")


def _rows_from_json(dialect: str, casts: Sequence[str]) -> str:
    """``SELECT`` of one JSON array of rows passed as one parameter, column ``i`` cast to ``casts[i]``
    (``""``: text), in the array's order."""
    if dialect == "sqlite":
        columns = ", ".join(f"value ->> {i}" for i in range(len(casts)))
        return f"SELECT {columns} FROM json_each(?) WHERE true"
    columns = ", ".join(f"(r ->> {i}){'::' + cast if cast else ''}" for i, cast in enumerate(casts))
    return f"SELECT {columns} FROM jsonb_array_elements(?::jsonb) WITH ORDINALITY AS t(r, n) ORDER BY n"


def _batched_upsert(dialect: str, upsert: str, casts: Sequence[str]) -> str:
    """``upsert`` (one row's ``INSERT … VALUES (?, …) ON CONFLICT …``) for a whole JSON array of rows.

    Why: the rollups of a batch spread over many gates are one row per gate (and per site)
    and hour; upserted row by row (``executemany``) that was two statements per gate per
    batch, the largest cost in a profile of 200 gates' events (client and PostgreSQL CPU per
    event 496 µs in batches of 50, 212 µs as one statement; docs/fleet.md).  One statement
    costs one round trip and one plan whatever the number of gates.  The rows are unique per key (``_rollups`` sums them), so no row is
    touched twice by one statement, and they stay in key order: two workers lock the same
    rows in the same order and wait for each other rather than deadlock.
    """
    head, conflict = upsert.split(" VALUES ", 1)
    conflict = conflict.split("\n", 1)[1]
    return f"{head.strip()}\n{_rows_from_json(dialect, casts)}\n{conflict}"


_FLOW_CASTS = ("", "", "", "int", "int", "int", "int")
_BATCHED_UPSERTS = {
    dialect: (
        _batched_upsert(dialect, _UPSERT_FLOW, _FLOW_CASTS),
        _batched_upsert(dialect, _UPSERT_LAST, ("", "", "bigint", "", "", "")),
        _batched_upsert(dialect, _UPSERT_FLAGGED, _FLOW_CASTS),
    )
    for dialect in ("sqlite", "postgresql")
}
"""(flow_hourly, gate_last, flow_flagged) upserts of a batch's rollups, one statement each."""
_UPSERT_LINK = """
INSERT INTO console_link (name, state, since, confirmed_at) VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET state = excluded.state, since = excluded.since,
    confirmed_at = excluded.confirmed_at
"""
_INSERT_REJECTION = "INSERT INTO rejections (time, topic, reason, detail) VALUES (?, ?, ?, ?)"
_GATE_STATS = """
SELECT site, gate, COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq),
       MAX(CASE WHEN (flags & 1) = 0 THEN time END), SUM(CASE WHEN flags <> 0 THEN 1 ELSE 0 END)
FROM events
GROUP BY site, gate
ORDER BY site, gate
"""
_GATE_FACTS = """
WITH gates AS (SELECT site, gate FROM gate_status UNION SELECT site, gate FROM gate_seq
               UNION SELECT site, gate FROM gate_last)
SELECT g.site, g.gate, s.state, s.received_at, s.backlog, s.backlog_at,
       q.gaps, q.missing, q.ranges, q.oldest_gap_at, l.received_at
FROM gates AS g
LEFT JOIN gate_status AS s ON s.site = g.site AND s.gate = g.gate
LEFT JOIN gate_seq AS q ON q.site = g.site AND q.gate = g.gate
LEFT JOIN gate_last AS l ON l.site = g.site AND l.gate = g.gate
"""
LINK_HEARTBEAT_S = 10.0
"""How often a connected ingestor says so in ``console_link`` (console/ingest.py)."""
LINK_STALE_S = 3 * LINK_HEARTBEAT_S
"""A link whose last word is older than this is not confirmed: the console died without saying so."""
CONTRADICT_GRACE_S = 30.0
"""An ``offline`` status is contradicted when the gate's own events keep arriving this long after it.

A will is published only after the gate has been silent for 1.5 keep-alives, so its events
come before its will; the grace covers another ingest worker committing a batch late."""
EVENT_COLUMNS = "row_id, id, site, gate, boot, seq, time, clock_trusted, type, data, received_at, flags"
"""The ``events`` columns a :class:`StoredEvent` is read from, in :func:`stored_event`'s order."""
_OVERVIEW = """
WITH gates AS (SELECT site, gate FROM gate_status UNION SELECT site, gate FROM gate_last),
today AS (SELECT site, gate, SUM(events) AS n FROM flow_hourly WHERE hour >= ? AND gate <> '*'
          GROUP BY site, gate)
SELECT g.site, g.gate, s.state, s.time, s.received_at, s.payload,
       l.time, l.type, e.data, COALESCE(today.n, 0)
FROM gates AS g
LEFT JOIN gate_status AS s ON s.site = g.site AND s.gate = g.gate
LEFT JOIN gate_last AS l ON l.site = g.site AND l.gate = g.gate
LEFT JOIN events AS e ON e.row_id = l.row_id
LEFT JOIN today ON today.site = g.site AND today.gate = g.gate
ORDER BY g.site, g.gate
"""


class StoreError(DatabaseError):
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
    flags: int = 0
    """:class:`EventFlag` bits: 0 for an event taken as plain fact."""


class LinkKind(StrEnum):
    CONNECTED = "connected"
    LOST = "lost"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class LinkState:
    """What an ingestor last said about its own broker connection (``console_link``).

    ``since`` is when the connection came up (``connected``), went down (``lost``) or the
    console stopped; ``confirmed_at`` is the last time a connected ingestor said it still
    was (every :data:`LINK_HEARTBEAT_S`).
    """

    name: str
    state: LinkKind
    since: str
    confirmed_at: str

    @property
    def connected(self) -> bool:
        return self.state is LinkKind.CONNECTED


@dataclass(frozen=True, slots=True)
class GateGaps:
    """The gap watch's record of one gate (console/gaps.py): what it has read, what is still open."""

    site: str
    gate: str
    scanned_to: int
    gaps: list[tuple[int, int, str]]
    """Open ranges ``(first, last, seen_at)``: sequence numbers never stored, and since when."""


MAX_LISTED_GAPS = 20
"""Open gaps a gate's summary names (``gate_seq.ranges``); the count covers the rest."""


@dataclass(frozen=True, slots=True)
class GateStats:
    """What the store holds of one gate, and what the console can say about what it does not hold.

    ``missing`` is ``max_seq - min_seq + 1 - distinct_seqs``: sequence numbers a gate took
    that never arrived.  A gate's first event has seq 1, so ``min_seq > 1`` also means
    loss unless the gate's history began before this store did (or retention pruned
    it).  ``seq_conflicts`` counts events that share a seq with another id, which only a
    broken gate produces.

    ``open_gaps`` are the holes the gap watch sees (console/gaps.py), each since when;
    ``held`` is the backlog the gate last reported (events in its outbox the console had
    not acknowledged) and ``held_reported_at`` when — events taken after that are not in
    any figure here.  ``state_confirmed`` is false when the console cannot vouch for
    ``state`` now: its broker connection is down (or it stopped, or died), or the gate's
    status was not sent again on the console's current connection; ``unconfirmed_since``
    is when it last could.  ``status_contradicted`` marks an ``offline`` status after
    which the gate's events kept arriving: ``state`` then reads ``online`` and
    ``reported_state`` keeps what the status said.
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
    flagged: int = 0
    open_gaps: list[tuple[int, int]] = field(default_factory=list)
    open_gap_count: int = 0
    gap_missing: int = 0
    oldest_gap_at: str | None = None
    held: int | None = None
    held_reported_at: str | None = None
    state_confirmed: bool = False
    unconfirmed_since: str | None = None
    reported_state: str | None = None
    status_contradicted: bool = False
    last_heard_at: str | None = None


@dataclass(frozen=True, slots=True)
class StoreStats:
    gates: list[GateStats]
    total_events: int
    total_missing: int
    rejections: dict[str, int]
    total_rejections: int
    schema_version: int
    total_open_gaps: int = 0
    total_held: int = 0
    link: LinkState | None = None
    confirmed: bool = False
    """True while an ingestor is connected to the broker and said so within :data:`LINK_STALE_S`."""
    unconfirmed_since: str | None = None
    as_of: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FlowRow:
    """Access decisions in one hour (``hour`` like ``2026-11-29T08:00:00Z``, UTC, by the gate's clock).

    An entry is a granted ``access.scan`` / ``door.access_granted`` whose ``direction``
    is not ``"out"``; an exit is a granted one with ``direction == "out"``; ``denied``
    counts refusals.  Summed over gates, ``gate`` (and, over sites, ``site``) is ``"*"``.
    """

    site: str
    gate: str
    hour: str
    entries: int
    exits: int
    denied: int


@dataclass(frozen=True, slots=True)
class GateOverviewRow:
    """One gate as the overview shows it: its latest status, its newest event, today's count."""

    site: str
    gate: str
    state: str | None
    state_time: str | None
    state_received_at: str | None
    status: dict[str, Any] | None
    last_event_time: str | None
    last_event_type: str | None
    last_event_summary: str | None
    events_today: int


def hour_of(time_text: str) -> str:
    """The hour bucket of a stored time: ``2026-11-29T08:31:07.123456Z`` → ``2026-11-29T08:00:00Z``."""
    return time_text[:13] + ":00:00Z"


def _field(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if not isinstance(value, str):
        return None
    # PostgreSQL text cannot hold NUL; a scanner can send one.  Keep the column honest-ish.
    return value[:MAX_FIELD_CHARS].replace("\x00", "\ufffd")


def _granted(event: Event) -> int | None:
    value = event.data.get("granted")
    if isinstance(value, bool):
        return int(value)
    if event.type == "door.access_granted":
        return 1
    if event.type == "door.access_denied":
        return 0
    return None


def _event_row(event: Event, flags: int = 0) -> tuple[object, ...]:
    data = event.data
    return (
        event.id,
        event.site,
        event.gate,
        event.boot,
        event.seq,
        format_time(event.time),
        int(event.clock_trusted),
        event.type,
        _to_json(data),
        _field(data, "holder"),
        _field(data, "credential"),
        _field(data, "code"),
        _field(data, "reason") or _field(data, "cause"),
        _granted(event),
        _field(data, "direction"),
        int(flags),
    )


def _gate_key(row: tuple[Any, ...]) -> tuple[str, str]:
    return row[0], row[1]


def _status_row(status: GateStatus, received_at: str) -> tuple[object, ...]:
    return (
        status.site,
        status.gate,
        status.state.value,
        status.boot,
        format_time(status.time) if status.time is not None else None,
        received_at,
        status.model_dump_json(),
        status.backlog,
        (format_time(status.time) if status.time is not None else received_at)
        if status.backlog is not None
        else None,
    )


def _clean(text: str, limit: int) -> str:
    return text[:limit].replace("\x00", "\ufffd")


def _rejection_row(rejection: Rejection) -> tuple[object, ...]:
    return (
        format_time(rejection.time),
        _clean(rejection.topic, MAX_TOPIC_CHARS),
        rejection.reason,
        _clean(rejection.detail, MAX_DETAIL_CHARS),
    )


def summarize(type_: str, data: dict[str, Any]) -> str:
    """A short line about an event for the overview: the decision and who, or the first fields."""
    parts: list[str] = []
    if "granted" in data:
        parts.append("GRANTED" if data.get("granted") is True else "DENIED")
    for key in ("holder", "unit", "reason", "code", "credential", "reader"):
        value = data.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            parts.append(f"{key}={str(value)[:40]}")
    if not parts:
        parts = [f"{k}={str(v)[:40]}" for k, v in list(data.items())[:3]]
    return " ".join(parts)[:200]


class EventStore:
    """The console's store on SQLite (a path or ``sqlite:///…``) or PostgreSQL (``postgresql://…``).

    Thread-safe: :class:`~console.db.Database` gives each thread its own connection.
    ``readonly`` opens an existing store without migrating it, for ``tail`` and
    ``stats`` running beside a live console.  Pass a :class:`Database` to share one
    handle with the web console's tables; the store then does not close it.
    """

    def __init__(self, target: Path | str | Database, *, readonly: bool = False) -> None:
        self.readonly = readonly
        self.version = 0
        self._owns_db = not isinstance(target, Database)
        try:
            if readonly and not isinstance(target, Database) and not is_postgres_url(target):
                path = sqlite_path(target)
                if not path.exists():
                    raise StoreError(f"{path}: no such event store")
            self.db = target if isinstance(target, Database) else Database(target, readonly=readonly)
        except StoreError:
            raise
        except DatabaseError as exc:
            raise StoreError(str(exc)) from exc
        self.dialect = self.db.dialect
        self.path: Path | None = self.db.path
        self.url = self.db.display
        try:
            self._check_version()
        except BaseException:
            self.close()
            raise
        self._insert_events = _INSERT_EVENTS[self.dialect]
        self._upserts = _BATCHED_UPSERTS[self.dialect]

    def _check_version(self) -> None:
        try:
            if not self.readonly:
                self.db.migrate(COMPONENT, migrations(self.dialect))
                migrate_crops(self.db)
            version = self.db.schema_version(COMPONENT)
        except DatabaseError as exc:
            raise StoreError(f"{self.url}: not a usable event store: {exc}") from exc
        if version > LATEST_VERSION:
            raise StoreError(
                f"{self.url}: schema version {version} is newer than this software ({LATEST_VERSION})"
            )
        if version < LATEST_VERSION:
            raise StoreError(
                f"{self.url}: schema version {version}, expected {LATEST_VERSION}; "
                "start the console once to upgrade it"
            )
        self.version = version

    # -- writing ---------------------------------------------------------------------

    def commit(
        self,
        events: Sequence[Event] = (),
        statuses: Iterable[GateStatus] = (),
        rejections: Iterable[Rejection] = (),
        *,
        flags: Sequence[int] | None = None,
        link: LinkState | None = None,
    ) -> InsertResult:
        """Write a whole batch in one transaction (one fsync) and return what was new.

        Events whose id is already stored, or repeated within ``events``, are counted as
        duplicates and otherwise ignored; only new ones count in ``flow_hourly`` and
        ``gate_last``.  ``flags`` gives each event its :class:`EventFlag` bits (the
        ingest guard's verdict, console/integrity.py); ``link`` records the ingestor's
        broker connection in the same transaction.  When this returns, the batch is
        durable; if it raises (:class:`~console.db.DatabaseError`), none of it was written.
        """
        received_at = now_text()
        events, crop_rows = take_crops(events)  # plate crops go beside the event (console/vehicle_crops.py)
        if flags is None:
            event_rows = [_event_row(event) for event in events]
        else:
            event_rows = [_event_row(event, flag) for event, flag in zip(events, flags, strict=True)]
        # One order for every writer: two ingest workers given the same events (a gate's resend
        # into a shared subscription) in different orders each waited on PostgreSQL for an id
        # the other had inserted first — "deadlock detected".  By gate and number, each gate's
        # events also keep their order in ``row_id``.
        if len(events) > 1:
            order = sorted(
                range(len(events)),
                key=lambda i: (events[i].site, events[i].gate, events[i].seq, events[i].id),
            )
            event_rows = [event_rows[i] for i in order]
        # Statuses by gate too; stable, so a gate's later status in the batch still wins.
        status_rows = sorted((_status_row(status, received_at) for status in statuses), key=_gate_key)
        rejection_rows = [_rejection_row(rejection) for rejection in rejections]
        db = self.db
        new = 0
        with db.transaction():
            if event_rows:
                inserted = db.query(self._insert_events, (received_at, _to_json(event_rows)))
                new = len(inserted)
                for sql, rows in zip(self._upserts, _rollups(inserted, received_at), strict=True):
                    if rows:
                        db.execute(sql, (_to_json(rows),))
                store_crops(db, crop_rows)
            if status_rows:
                db.executemany(_UPSERT_STATUS, status_rows)
            if rejection_rows:
                db.executemany(_INSERT_REJECTION, rejection_rows)
            if link is not None:
                db.execute(_UPSERT_LINK, (link.name, link.state.value, link.since, link.confirmed_at))
        return InsertResult(new=new, duplicate=len(event_rows) - new)

    def insert_events(self, events: Sequence[Event]) -> InsertResult:
        return self.commit(events)

    def set_gate_status(self, status: GateStatus) -> None:
        self.commit(statuses=[status])

    def record_rejection(self, topic: str, reason: str, detail: str, *, time: datetime | None = None) -> None:
        self.commit(rejections=[Rejection(topic, reason, detail, time or datetime.now(UTC))])

    # -- retention (policy and schedule: console/retention.py) ------------------------

    def count_before(self, table: str, before: datetime) -> int:
        """Rows of ``events`` or ``rejections`` older than ``before``: what a prune would delete.

        For ``events`` that includes quarantined ones (:attr:`EventFlag.FUTURE`) *received*
        before ``before``: their own date says nothing about when they may go.
        """
        cutoff = format_time(before)
        count = int(self.db.query(f"SELECT COUNT(*) FROM {_prunable(table)} WHERE time < ?", (cutoff,))[0][0])
        if table == "events":
            count += int(
                self.db.query(f"SELECT COUNT(*) FROM events WHERE {_QUARANTINED_BEFORE}", (cutoff, cutoff))[
                    0
                ][0]
            )
        return count

    def delete_before(self, table: str, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` of the oldest rows older than ``before``, in one short transaction.

        Bounded so the ingest writer never waits long for the write lock; the caller
        loops until this returns less than ``limit``.  ``flow_hourly`` is not touched:
        the hourly counts outlive the raw events.  Quarantined events go by the time
        they were received, once the dated ones are done.
        """
        name = _prunable(table)
        cutoff = format_time(before)
        with self.db.transaction():
            deleted = self.db.execute(
                f"DELETE FROM {name} WHERE row_id IN "
                f"(SELECT row_id FROM {name} WHERE time < ? ORDER BY time LIMIT ?)",
                (cutoff, limit),
            )
            if name == "events":  # a plate crop goes with the events of its time (console/vehicle_crops.py)
                self.db.execute(
                    "DELETE FROM event_crops WHERE row_id IN "
                    "(SELECT row_id FROM event_crops WHERE time < ? ORDER BY time LIMIT ?)",
                    (cutoff, limit),
                )
            if name == "events" and deleted < limit:
                deleted += self.db.execute(
                    "DELETE FROM events WHERE row_id IN "
                    f"(SELECT row_id FROM events WHERE {_QUARANTINED_BEFORE} LIMIT ?)",
                    (cutoff, cutoff, limit - deleted),
                )
            return deleted

    def optimize(self) -> None:
        """Refresh the planner's statistics (after a prune or a bulk load), cheaply."""
        self.db.execute("PRAGMA optimize" if self.dialect == "sqlite" else "ANALYZE events")

    # -- reading ---------------------------------------------------------------------

    def stats(
        self, *, now: datetime | None = None, contradict_grace_s: float = CONTRADICT_GRACE_S
    ) -> StoreStats:
        """Per gate: what is stored, what is missing, what the gate still holds, and how sure the console is.

        ``now`` (default: the clock) decides whether the ingestor's last word about its
        broker connection is recent enough to vouch for the gates' states.
        """
        now = now or datetime.now(UTC)
        rows = self.db.query(_GATE_STATS)
        facts = {(row[0], row[1]): row[2:] for row in self.db.query(_GATE_FACTS)}
        reasons = self.db.query("SELECT reason, COUNT(*) FROM rejections GROUP BY reason ORDER BY reason")
        link = self.link_state()
        confirmed, since = link_confirmed(link, now)
        counted = {
            (site, gate): (int(count), int(distinct), int(low), int(high), last, int(flagged or 0))
            for site, gate, count, distinct, low, high, last, flagged in rows
        }
        gates = []
        for key in sorted(set(counted) | set(facts)):
            count, distinct, low, high, last, flagged = counted.get(key, (0, 0, 0, 0, None, 0))
            state, state_at, backlog, backlog_at, n_gaps, gap_missing, ranges, oldest, heard = facts.get(
                key, (None,) * 9
            )
            reported = state
            contradicted = (
                state == "offline"
                and heard is not None
                and state_at is not None
                and _seconds_between(state_at, heard) > contradict_grace_s
            )
            if contradicted:
                state = "online"
            gate_confirmed, unconfirmed = state_confirmed(
                link, confirmed, since, heard if contradicted else state_at
            )
            gates.append(
                GateStats(
                    site=key[0],
                    gate=key[1],
                    count=count,
                    distinct_seqs=distinct,
                    min_seq=low,
                    max_seq=high,
                    missing=high - low + 1 - distinct if count else 0,
                    seq_conflicts=count - distinct,
                    last_event_time=last,
                    state=state,
                    state_received_at=state_at,
                    flagged=flagged,
                    open_gaps=[(int(a), int(b)) for a, b, *_ in json.loads(ranges)] if ranges else [],
                    open_gap_count=int(n_gaps or 0),
                    gap_missing=int(gap_missing or 0),
                    oldest_gap_at=oldest,
                    held=None if backlog is None else int(backlog),
                    held_reported_at=backlog_at,
                    state_confirmed=gate_confirmed,
                    unconfirmed_since=unconfirmed,
                    reported_state=reported,
                    status_contradicted=contradicted,
                    last_heard_at=heard,
                )
            )
        by_reason = {reason: int(count) for reason, count in reasons}
        return StoreStats(
            gates=gates,
            total_events=sum(g.count for g in gates),
            total_missing=sum(g.missing for g in gates),
            rejections=by_reason,
            total_rejections=sum(by_reason.values()),
            schema_version=self.version,
            total_open_gaps=sum(g.open_gap_count for g in gates),
            total_held=sum(g.held or 0 for g in gates),
            link=link,
            confirmed=confirmed,
            unconfirmed_since=since,
            as_of=format_time(now),
        )

    def link_state(self) -> LinkState | None:
        """The status-reading ingestor's last word about its broker connection (None: no ingestor ever ran)."""
        rows = self.db.query(
            "SELECT name, state, since, confirmed_at FROM console_link ORDER BY confirmed_at DESC LIMIT 1"
        )
        if not rows:
            return None
        name, state, since, confirmed_at = rows[0]
        try:
            kind = LinkKind(state)
        except ValueError:
            kind = LinkKind.LOST
        return LinkState(name, kind, since, confirmed_at)

    # -- the gap watch's tables (console/gaps.py) --------------------------------------

    def seqs_after(self, row_id: int, limit: int) -> list[tuple[int, str, str, int]]:
        """``(row_id, site, gate, seq)`` of the events stored after ``row_id``, in ``row_id`` order."""
        return [
            (int(r), s, g, int(q))
            for r, s, g, q in self.db.query(
                "SELECT row_id, site, gate, seq FROM events WHERE row_id > ? ORDER BY row_id LIMIT ?",
                (row_id, limit),
            )
        ]

    def seqs_between(self, site: str, gate: str, first: int, last: int, limit: int = 100_000) -> list[int]:
        """The distinct sequence numbers of a gate stored in [``first``, ``last``], ascending (index range)."""
        rows = self.db.query(
            "SELECT DISTINCT seq FROM events WHERE site = ? AND gate = ? AND seq >= ? AND seq <= ?"
            " ORDER BY seq LIMIT ?",
            (site, gate, first, last, limit),
        )
        return [int(row[0]) for row in rows]

    def highest_seq(self, site: str, gate: str) -> tuple[int, str] | None:
        """A gate's highest stored sequence number and that event's time, by one index probe."""
        rows = self.db.query(
            "SELECT seq, time FROM events WHERE site = ? AND gate = ? ORDER BY seq DESC LIMIT 1", (site, gate)
        )
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def ids_of_keys(self, keys: Sequence[tuple[str, str, int]]) -> dict[tuple[str, str, int], set[str]]:
        """The ids stored under each ``(site, gate, seq)`` of ``keys``: one indexed query per
        300 keys, however many gates they span.

        One query per gate made a drain slow exactly when it must be fast: after a console
        outage the broker's redeliveries and the gates' resends put hundreds of gates' old
        numbers in every batch, and each asked the database on its own.
        """
        found: dict[tuple[str, str, int], set[str]] = defaultdict(set)
        for start in range(0, len(keys), 300):
            chunk = keys[start : start + 300]
            rows = ", ".join("(?, ?, ?)" for _ in chunk)
            for site, gate, seq, id_ in self.db.query(
                f"SELECT site, gate, seq, id FROM events WHERE (site, gate, seq) IN (VALUES {rows})",
                tuple(value for key in chunk for value in key),
            ):
                found[site, gate, int(seq)].add(id_)
        return found

    def gap_records(self) -> dict[tuple[str, str], GateGaps]:
        """Every gate the gap watch has read: how far, and the gaps it left open."""
        open_gaps: dict[tuple[str, str], list[tuple[int, int, str]]] = defaultdict(list)
        for site, gate, first, last, seen_at in self.db.query(
            "SELECT site, gate, first_seq, last_seq, seen_at FROM seq_gaps ORDER BY site, gate, first_seq"
        ):
            open_gaps[site, gate].append((int(first), int(last), seen_at))
        return {
            (site, gate): GateGaps(site, gate, int(scanned), open_gaps.get((site, gate), []))
            for site, gate, scanned in self.db.query("SELECT site, gate, scanned_to FROM gate_seq")
        }

    def save_gaps(
        self, records: Iterable[GateGaps], *, cursor: int | None = None, cursor_name: str = "gaps"
    ) -> None:
        """Replace the named gates' open gaps and summaries (and move the read position) in one transaction."""
        changed_at = now_text()
        with self.db.transaction():
            for record in records:
                key = (record.site, record.gate)
                self.db.execute("DELETE FROM seq_gaps WHERE site = ? AND gate = ?", key)
                if record.gaps:
                    self.db.executemany(
                        "INSERT INTO seq_gaps (site, gate, first_seq, last_seq, seen_at) VALUES (?, ?, ?, ?, ?)",
                        [(*key, first, last, seen) for first, last, seen in record.gaps],
                    )
                listed = [[first, last, seen] for first, last, seen in record.gaps[:MAX_LISTED_GAPS]]
                self.db.execute(
                    """INSERT INTO gate_seq (site, gate, scanned_to, gaps, missing, ranges, oldest_gap_at, changed_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (site, gate) DO UPDATE SET scanned_to = excluded.scanned_to, gaps = excluded.gaps,
                        missing = excluded.missing, ranges = excluded.ranges,
                        oldest_gap_at = excluded.oldest_gap_at, changed_at = excluded.changed_at""",
                    (
                        *key,
                        record.scanned_to,
                        len(record.gaps),
                        sum(last - first + 1 for first, last, _ in record.gaps),
                        _to_json(listed),
                        min((seen for _, _, seen in record.gaps), default=None),
                        changed_at,
                    ),
                )
            if cursor is not None:
                self.db.execute(
                    "INSERT INTO watch_cursor (name, value) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (cursor_name, cursor),
                )

    def watch_cursor(self, name: str = "gaps") -> int:
        rows = self.db.query("SELECT value FROM watch_cursor WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def gap_summaries(
        self, changed_since: str = ""
    ) -> list[tuple[str, str, int, int, list[tuple[int, int]], str | None, str]]:
        """``(site, gate, gaps, missing, listed ranges, oldest gap seen at, changed_at)`` of gates whose
        summary changed at or after ``changed_since``: what the gates page polls (a few rows)."""
        rows = self.db.query(
            "SELECT site, gate, gaps, missing, ranges, oldest_gap_at, changed_at FROM gate_seq"
            " WHERE changed_at >= ? ORDER BY changed_at",
            (changed_since,),
        )
        return [
            (
                site,
                gate,
                int(n),
                int(missing),
                [(int(a), int(b)) for a, b, *_ in json.loads(ranges)],
                oldest,
                at,
            )
            for site, gate, n, missing, ranges, oldest, at in rows
        ]

    def events_after(self, row_id: int, limit: int = 100) -> list[StoredEvent]:
        """Events stored after ``row_id``, oldest first: what ``tail --follow`` polls."""
        rows = self.db.query(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE row_id > ? ORDER BY row_id LIMIT ?", (row_id, limit)
        )
        return [stored_event(row) for row in rows]

    def events_in(self, row_ids: Collection[int]) -> list[StoredEvent]:
        """The events of those ``row_ids`` that are stored, oldest first: the ids a reader following
        :meth:`events_after` skipped, looked for again (see ``console/web/hub.py``)."""
        if not row_ids:
            return []
        marks = ", ".join("?" * len(row_ids))
        rows = self.db.query(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE row_id IN ({marks}) ORDER BY row_id", tuple(row_ids)
        )
        return [stored_event(row) for row in rows]

    def last_events(self, limit: int) -> list[StoredEvent]:
        """The newest ``limit`` events, oldest first: where ``tail`` starts."""
        rows = self.db.query(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY row_id DESC LIMIT ?", (limit,))
        return [stored_event(row) for row in reversed(rows)]

    def get(self, row_id: int) -> StoredEvent | None:
        """One event by ``row_id``: the web console's detail page."""
        rows = self.db.query(f"SELECT {EVENT_COLUMNS} FROM events WHERE row_id = ?", (row_id,))
        return stored_event(rows[0]) if rows else None

    def search(
        self,
        *,
        site: str | None = None,
        gate: str | None = None,
        type: str | None = None,
        reason: str | None = None,
        holder: str | None = None,
        code: str | None = None,
        granted: bool | None = None,
        text: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        before_row_id: int | None = None,
        limit: int = 100,
        flagged: bool | None = None,
    ) -> list[StoredEvent]:
        """Events matching every given filter, newest first (by event time, then ``row_id``).

        ``flagged``: None (the default) hides quarantined events (:attr:`EventFlag.FUTURE`,
        dated in the future: they would sit on top of every page); True lists only flagged
        events, quarantined ones included; False only unflagged ones.

        Pages by keyset: pass the last ``row_id`` of a page as ``before_row_id`` to get
        the next, so page 1000 costs what page 1 costs.  ``gate`` may be ``"site/gate"``;
        ``type`` ending in ``*`` is a prefix (``"door.*"``); ``holder``, ``code`` and
        ``reason`` are exact (indexed); ``text`` is a case-sensitive substring of the
        event's JSON data — a scan, so combine it with a time range or another filter
        on a large store.  ``start`` is inclusive, ``end`` exclusive.
        """
        where: list[str] = []
        params: list[Any] = []
        if gate is not None and "/" in gate and site is None:
            site, gate = gate.split("/", 1)
        for column, value in (
            ("site", site),
            ("gate", gate),
            ("reason", reason),
            ("holder", holder),
            ("code", code),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if type is not None:
            column = TYPE_AS_INDEXED[self.dialect]
            if type.endswith("*"):
                where.append(f"{column} >= ? AND {column} < ?")
                prefix = type[:-1]
                params += [prefix, prefix + "\x7f"]
            else:
                where.append(f"{column} = ?")
                params.append(type)
        if granted is not None:
            where.append("granted = ?")
            params.append(int(granted))
        if text:
            where.append("instr(data, ?) > 0" if self.dialect == "sqlite" else "strpos(data, ?) > 0")
            params.append(text)
        if flagged is None:
            where.append("(flags & 1) = 0")
        elif flagged:
            where.append("flags <> 0")
        else:
            where.append("flags = 0")
        if start is not None:
            where.append("time >= ?")
            params.append(format_time(start))
        if end is not None:
            where.append("time < ?")
            params.append(format_time(end))
        if before_row_id is not None:
            cursor = self.db.query("SELECT time FROM events WHERE row_id = ?", (before_row_id,))
            if cursor:
                where.append("time <= ? AND (time < ? OR row_id < ?)")
                params += [cursor[0][0], cursor[0][0], before_row_id]
            else:  # the cursor event was pruned meanwhile: continue below its row_id
                where.append("row_id < ?")
                params.append(before_row_id)
        sql = f"SELECT {EVENT_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time DESC, row_id DESC LIMIT ?"
        params.append(max(0, min(limit, 10_000)))
        return [stored_event(row) for row in self.db.query(sql, params)]

    def flow(
        self,
        site: str | None,
        gate: str | None,
        start: datetime,
        end: datetime,
        *,
        per_gate: bool = True,
        exclude_flagged: bool = False,
    ) -> list[FlowRow]:
        """Entries, exits and denials per hour whose start lies in [``start``'s hour, ``end``).

        From ``flow_hourly``, so the counts outlive retention.  ``per_gate=False`` sums
        over gates (and over sites when ``site`` is None): the chart of a whole compound,
        read from the per-site rows (``gate = '*'``), so a month for a district of ten
        sites is 7,200 rows whatever the number of gates.

        Quarantined and back-dated events are never in these figures.  Events flagged
        ``FLOOD`` are (a gate really can be that busy); ``exclude_flagged=True`` works the
        same figures out without them, from ``flow_flagged`` — for one gate with ``gate``.
        """
        rows = self._flow_from("flow_hourly", site, gate, start, end, per_gate=per_gate)
        if not exclude_flagged:
            return rows
        flagged = {
            (r.site, r.gate, r.hour): r
            for r in self._flow_from("flow_flagged", site, gate, start, end, per_gate=per_gate)
        }
        result = []
        for row in rows:
            minus = flagged.get((row.site, row.gate, row.hour))
            if minus is not None:
                row = FlowRow(
                    row.site,
                    row.gate,
                    row.hour,
                    row.entries - minus.entries,
                    row.exits - minus.exits,
                    row.denied - minus.denied,
                )
            if row.entries or row.exits or row.denied:
                result.append(row)
        return result

    def _flow_from(
        self,
        table: str,
        site: str | None,
        gate: str | None,
        start: datetime,
        end: datetime,
        *,
        per_gate: bool,
    ) -> list[FlowRow]:
        # hours with events but no access decision exist too (``events`` counts them)
        where = ["hour >= ?", "hour < ?", "entries + exits + denied > 0"]
        params: list[Any] = [hour_of(format_time(start)), format_time(end)]
        if site is not None:
            where.append("site = ?")
            params.append(site)
        if per_gate or gate is not None:
            where.append("gate = ?" if gate is not None else f"gate <> '{SITE_ROW}'")
            if gate is not None:
                params.append(gate)
        else:
            where.append(f"gate = '{SITE_ROW}'")  # the per-site rows: 24 a day, not 24 per gate
        condition = " AND ".join(where)
        if per_gate or gate is not None:
            sql = (
                f"SELECT site, gate, hour, entries, exits, denied FROM {table} WHERE {condition} "
                "ORDER BY hour, site, gate"
            )
            if not per_gate:
                sql = (
                    f"SELECT '*', '*', hour, SUM(entries), SUM(exits), SUM(denied) FROM {table} "
                    f"WHERE {condition} GROUP BY hour ORDER BY hour"
                )
        elif site is not None:
            sql = (
                f"SELECT site, '*', hour, entries, exits, denied FROM {table} WHERE {condition} ORDER BY hour"
            )
        else:
            sql = (
                f"SELECT '*', '*', hour, SUM(entries), SUM(exits), SUM(denied) FROM {table} "
                f"WHERE {condition} GROUP BY hour ORDER BY hour"
            )
        return [
            FlowRow(s, g, h, int(en), int(ex), int(de)) for s, g, h, en, ex, de in self.db.query(sql, params)
        ]

    def gates(self) -> list[tuple[str, str]]:
        """Every (site, gate) with a status or an event, sorted: from the one-row-per-gate tables.

        A ``DISTINCT`` over the events took 55 ms at 200,000 events, on every view of
        the event list and the flow page, and grows with the events.
        """
        rows = self.db.query("SELECT site, gate FROM gate_status UNION SELECT site, gate FROM gate_last")
        return sorted((site, gate) for site, gate in rows)

    def gate_overview(self, *, day_start: datetime | None = None) -> list[GateOverviewRow]:
        """Every gate with a status or an event: state, newest event, events since ``day_start``.

        ``day_start`` defaults to the start of the current UTC day; pass the site's local
        midnight to count "today" as the guards mean it.  The count comes from
        ``flow_hourly.events``, so ``day_start`` is rounded down to its hour (by the
        gates' clocks), and it is the same whatever retention has pruned.
        """
        if day_start is None:
            day_start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        rows = self.db.query(_OVERVIEW, (hour_of(format_time(day_start)),))
        result = []
        for site, gate, state, state_time, state_at, payload, e_time, e_type, e_data, today in rows:
            result.append(
                GateOverviewRow(
                    site=site,
                    gate=gate,
                    state=state,
                    state_time=state_time,
                    state_received_at=state_at,
                    status=json.loads(payload) if payload else None,
                    last_event_time=e_time,
                    last_event_type=e_type,
                    last_event_summary=summarize(e_type, json.loads(e_data)) if e_data else None,
                    events_today=int(today),
                )
            )
        return result

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_db:
            self.db.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def link_confirmed(link: LinkState | None, now: datetime) -> tuple[bool, str | None]:
    """Whether the ingestor vouches for the gates' states now, and if not, since when it could not.

    No link row (no ingestor ever ran on this store): not confirmed, since unknown.  A link
    that says connected but has not said so for :data:`LINK_STALE_S`: the console died or
    hung at its last word.  A link that says disconnected: lost (or stopped) at ``since``.
    """
    if link is None:
        return False, None
    if not link.connected:
        return False, link.since
    if now - _parse_time(link.confirmed_at) > timedelta(seconds=LINK_STALE_S):
        return False, link.confirmed_at
    return True, None


def state_confirmed(
    link: LinkState | None, confirmed: bool, since: str | None, received_at: str | None
) -> tuple[bool, str | None]:
    """Whether one gate's state is vouched for, and if not, since when.

    A state is confirmed only if received on the console's current connection: the broker
    sends every retained status again at each subscribe, so one that did not come again
    is one the broker no longer holds.
    """
    if received_at is None:
        return False, None
    if link is None:
        return False, received_at  # nothing ever vouched for it beyond its arrival
    if confirmed:
        return (True, None) if received_at >= link.since else (False, link.since)
    return False, since


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _seconds_between(earlier: str, later: str) -> float:
    return (_parse_time(later) - _parse_time(earlier)).total_seconds()


_QUARANTINED_BEFORE = "flags <> 0 AND (flags & 1) <> 0 AND received_at < ? AND time >= ?"
"""Quarantined events received before the cutoff (and not already counted as dated before it);
``flags <> 0`` lets the partial index ``events_flagged`` serve it."""


def _prunable(table: str) -> str:
    if table not in ("events", "rejections"):
        raise ValueError(f"retention applies to events and rejections, not {table!r}")
    return table


def _rollups(
    inserted: list[tuple[Any, ...]], received_at: str
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What the new rows add to ``flow_hourly`` (per gate and per site), ``gate_last`` and
    ``flow_flagged``, in key order.

    An event flagged :data:`NOT_FACT` (quarantined or back-dated) counts in none of them;
    a ``FLOOD`` one counts in the flow and again in ``flow_flagged``, so the flow can be
    worked out without it (:meth:`EventStore.flow` ``exclude_flagged``).  Key order
    matters on PostgreSQL: two workers upserting the same rows in the same order wait
    for each other instead of deadlocking.
    """
    flow: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    flagged: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    last: dict[tuple[str, str], tuple[str, int, str]] = {}
    not_fact = int(NOT_FACT)  # a plain int: IntFlag arithmetic is slow per row
    for row_id, site, gate, time, type_, granted, direction, flags in inserted:
        if flags and flags & not_fact:
            continue
        key = (site, gate)
        newest = last.get(key)
        if newest is None or (time, row_id) > newest[:2]:
            last[key] = (time, row_id, type_)
        hour = hour_of(time)
        column = 3
        if granted is not None and type_ in ACCESS_TYPES:
            column = 2 if not granted else 1 if direction == "out" else 0
        rollups = [flow]
        if flags:
            rollups.append(flagged)
        for table in rollups:
            for counts in (table[site, gate, hour], table[site, SITE_ROW, hour]):
                counts[3] += 1
                if column != 3:
                    counts[column] += 1
    flow_rows = [(*key, *counts) for key, counts in sorted(flow.items())]
    flagged_rows = [(*key, *counts) for key, counts in sorted(flagged.items())]
    last_rows = [
        (site, gate, row_id, time, type_, received_at)
        for (site, gate), (time, row_id, type_) in sorted(last.items())
    ]
    return flow_rows, last_rows, flagged_rows


def stored_event(row: tuple[Any, ...]) -> StoredEvent:
    """An ``events`` row read as :data:`EVENT_COLUMNS`."""
    row_id, id_, site, gate, boot, seq, time, trusted, type_, data, received_at, flags = row
    return StoredEvent(
        row_id, id_, site, gate, boot, seq, time, bool(trusted), type_, json.loads(data), received_at, flags
    )
