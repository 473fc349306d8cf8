"""Upgrading a console's database to the integrity schema: events migration 7, alarms migration 2."""

from __future__ import annotations

import json
from pathlib import Path

from console.alarms import CONSOLE_ACTOR, AlarmBook, AlarmKind, Draft
from console.alarms import _migrations as alarm_migrations
from console.db import Database
from console.store import COMPONENT, LATEST_VERSION, EventStore, migrations


def test_a_store_at_version_6_gains_flags_and_keeps_the_last_reported_backlog(
    db_url: str | Path, make_events
):
    with Database(db_url) as db:
        db.migrate(COMPONENT, migrations(db.dialect)[:6])
        payload = {"state": "online", "site": "s1", "gate": "north", "boot": "b" * 32, "backlog": 17}
        db.execute(
            "INSERT INTO gate_status (site, gate, state, boot, time, received_at, payload)"
            " VALUES ('s1', 'north', 'online', ?, '2026-11-29T10:00:00.000000Z', '2026-11-29T10:00:01.000000Z', ?)",
            ("b" * 32, json.dumps(payload)),
        )
        db.execute(
            "INSERT INTO events (id, site, gate, boot, seq, time, clock_trusted, type, data, received_at)"
            " VALUES ('e1', 's1', 'north', 'b', 1, '2026-11-29T09:00:00.000000Z', 1, 'access.scan', '{}', 'then')"
        )
    with EventStore(db_url) as store:
        assert store.version == LATEST_VERSION == 7
        (north,) = store.stats().gates
        assert (north.held, north.held_reported_at) == (17, "2026-11-29T10:00:00.000000Z")
        assert [e.flags for e in store.search()] == [0]
        store.commit(make_events("s1", "north", [2]))  # the new insert path on the upgraded table
        assert store.stats().gates[0].count == 2
        if store.dialect == "postgresql":  # new text compared in byte order, like the rest
            loose = store.db.query(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND data_type = 'text'"
                " AND table_name IN ('flow_flagged', 'seq_gaps', 'gate_seq', 'console_link', 'watch_cursor',"
                " 'gate_status', 'gate_last') AND collation_name IS DISTINCT FROM 'C'"
            )
            assert loose == []


def _v1_alarm(db: Database, source: str, gate: str, *, acked: bool = False) -> None:
    db.execute(
        "INSERT INTO alarms (kind, site, gate, source, raised_at, event_time, event_id, detail, acked_at, acked_by)"
        " VALUES ('door.forced', 's1', ?, ?, '2026-11-29T10:00:00.000000Z', '2026-11-29T10:00:00.000000Z',"
        " ?, '{}', ?, ?)",
        (gate, source, source, "2026-11-29T11:00:00.000000Z" if acked else None, "ana" if acked else None),
    )


def test_open_alarms_of_one_kind_and_gate_are_merged_into_the_oldest(db_url: str | Path):
    with Database(db_url) as db:
        db.migrate("alarms", alarm_migrations(db.dialect)[:1])
        _v1_alarm(db, "e0", "north", acked=True)
        for source in ("e1", "e2", "e3"):
            _v1_alarm(db, source, "north")
        _v1_alarm(db, "e4", "south")
        book = AlarmBook(db)  # migrates to version 2
        north = [a for a in book.list(limit=10) if a.gate == "north"]
        (kept,) = [a for a in north if a.open]
        assert (kept.source, kept.count) == ("e1", 3)
        merged = [a for a in north if a.acked_by == CONSOLE_ACTOR]
        assert sorted(a.source for a in merged) == ["e2", "e3"] and all(
            "merged" in (a.note or "") for a in merged
        )
        (south,) = [a for a in book.list(open_only=True) if a.gate == "south"]
        assert south.count == 1
        again = Draft(AlarmKind.DOOR_FORCED, "s1", "north", "e2", "2026-11-29T10:00:00.000000Z", "e2", {})
        assert book.raise_drafts([again]) == []  # counted before the upgrade: not again
        fresh = Draft(AlarmKind.DOOR_FORCED, "s1", "north", "e9", "2026-11-29T12:00:00.000000Z", "e9", {})
        (counted,) = book.raise_drafts([fresh])
        assert (counted.row_id, counted.count, counted.opened) == (kept.row_id, 4, False)
