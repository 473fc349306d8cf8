"""The event store: each id once, one transaction per batch, provable completeness."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from console.store import (
    LATEST_VERSION,
    EventStore,
    Rejection,
    StoreError,
    connect,
    migrate,
    schema_version,
)
from protocol import GateState, GateStatus


def count(path: Path, sql: str) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchone()[0]
    finally:
        db.close()


def test_duplicates_are_ignored_across_and_within_batches(tmp_path: Path, make_events):
    events = make_events("s1", "north", range(1, 11))
    with EventStore(tmp_path / "events.db") as store:
        first = store.insert_events(events[:6])
        assert (first.new, first.duplicate) == (6, 0)
    with EventStore(tmp_path / "events.db") as store:
        # events 1..4 again, 7..10 new, and 7 twice within the batch
        result = store.insert_events([*events[:4], *events[6:], events[6]])
        assert (result.new, result.duplicate) == (4, 5)
        again = store.insert_events(events)
        assert (again.new, again.duplicate) == (0, 10)
    assert count(tmp_path / "events.db", "SELECT COUNT(*) FROM events") == 10


def test_insert_result_counts_a_fresh_batch(tmp_path: Path, make_events):
    with EventStore(tmp_path / "events.db") as store:
        result = store.insert_events(make_events("s1", "g", range(1, 501)))
        assert (result.new, result.duplicate) == (500, 0)
        empty = store.insert_events([])
        assert (empty.new, empty.duplicate) == (0, 0)


def test_a_failed_batch_writes_nothing(tmp_path: Path, make_events):
    good = make_events("s1", "g", range(1, 4))
    with EventStore(tmp_path / "events.db") as store:
        bad = Rejection(topic="t", reason=None, detail="x")  # type: ignore[arg-type]
        with pytest.raises(sqlite3.IntegrityError):  # NOT NULL, after the events were inserted
            store.commit(good, rejections=[bad])
        assert store.stats().total_events == 0
        assert store.insert_events(good).new == 3


def test_stats_count_missing_sequence_numbers(tmp_path: Path, make_events):
    with EventStore(tmp_path / "events.db") as store:
        store.insert_events(make_events("s1", "north", [1, 2, 3, 5, 9, 10]))
        store.insert_events(make_events("s1", "east", range(1, 101)))
        store.insert_events(make_events("s2", "north", [4]))
        # the same seq under a second id is a conflict, not a new sequence number
        store.insert_events(make_events("s1", "east", [50]))
        stats = store.stats()
    by_gate = {(g.site, g.gate): g for g in stats.gates}
    north = by_gate["s1", "north"]
    assert (north.count, north.distinct_seqs, north.min_seq, north.max_seq) == (6, 6, 1, 10)
    assert north.missing == 4  # 4, 6, 7, 8
    assert north.last_event_time == "2026-11-29T08:00:10.000000Z"
    east = by_gate["s1", "east"]
    assert (east.count, east.distinct_seqs, east.missing, east.seq_conflicts) == (101, 100, 0, 1)
    assert by_gate["s2", "north"].missing == 0
    assert stats.total_events == 108
    assert stats.total_missing == 4
    assert stats.schema_version == LATEST_VERSION


def test_rejections_and_gate_status_are_recorded(tmp_path: Path):
    boot = uuid.uuid4().hex
    with EventStore(tmp_path / "events.db") as store:
        store.record_rejection("gatepost/v1/s/g/event", "not_json", "payload is not JSON")
        store.record_rejection("gatepost/v1/s/g/event", "not_json", "payload is not JSON")
        store.commit(rejections=[Rejection("x" * 1000, "schema", "y" * 1000)])
        store.set_gate_status(GateStatus(state=GateState.ONLINE, site="s", gate="g", boot=boot))
        store.set_gate_status(
            GateStatus(
                state=GateState.STOPPED, site="s", gate="g", boot=boot, time=datetime(2026, 1, 1, tzinfo=UTC)
            )
        )
        stats = store.stats()
    assert stats.rejections == {"not_json": 2, "schema": 1}
    assert stats.total_rejections == 3
    assert [(g.gate, g.state, g.count) for g in stats.gates] == [("g", "stopped", 0)]
    db = sqlite3.connect(tmp_path / "events.db")
    assert db.execute("SELECT MAX(LENGTH(topic)), MAX(LENGTH(detail)) FROM rejections").fetchone() == (
        256,
        500,
    )
    assert db.execute("SELECT state, time FROM gate_status").fetchall() == [
        ("stopped", "2026-01-01T00:00:00.000000Z")
    ]


def test_events_after_pages_in_insertion_order(tmp_path: Path, make_events):
    with EventStore(tmp_path / "events.db") as store:
        store.insert_events(make_events("s", "g", range(1, 26)))
        first = store.events_after(0, limit=10)
        assert [e.seq for e in first] == list(range(1, 11))
        rest = store.events_after(first[-1].row_id, limit=100)
        assert [e.seq for e in rest] == list(range(11, 26))
        assert store.events_after(rest[-1].row_id) == []
        assert [e.seq for e in store.last_events(3)] == [23, 24, 25]
        assert rest[0].data == {"credential": "pass", "code": "000011", "granted": False}
        assert rest[0].clock_trusted is True


def test_committed_events_survive_reopen_and_wal_settings(tmp_path: Path, make_events):
    path = tmp_path / "deep" / "missing" / "dir" / "events.db"
    store = EventStore(path)
    store.insert_events(make_events("s", "g", range(1, 51)))
    store.close()
    conn = connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()
    with EventStore(path, readonly=True) as reader:
        stats = reader.stats()
    assert (stats.total_events, stats.total_missing) == (50, 0)


def test_migrations_upgrade_a_v1_store_and_are_idempotent(tmp_path: Path, make_events):
    path = tmp_path / "events.db"
    conn = connect(path)
    assert migrate(conn, upto=1) == [1]
    assert schema_version(conn) == 1
    conn.execute(
        "INSERT INTO events (id, site, gate, boot, seq, time, clock_trusted, type, data, received_at)"
        " VALUES ('a', 's', 'g', 'b', 1, '2026-01-01T00:00:00.000000Z', 1, 'agent.started', '{}', 'now')"
    )
    conn.close()
    with pytest.raises(StoreError, match="start the console once"):
        EventStore(path, readonly=True)
    with EventStore(path) as store:
        assert store.version == LATEST_VERSION
        store.record_rejection("t", "schema", "d")
        assert store.stats().total_events == 1
    conn = connect(path)
    assert migrate(conn) == []
    versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, LATEST_VERSION + 1))
    conn.close()


def test_concurrent_opens_apply_each_migration_once(tmp_path: Path):
    path = tmp_path / "events.db"
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            EventStore(path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert count(path, "SELECT COUNT(*) FROM schema_migrations") == LATEST_VERSION


def test_refuses_a_store_from_newer_software_and_non_databases(tmp_path: Path):
    path = tmp_path / "events.db"
    EventStore(path).close()
    conn = connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'future', 'now')", (LATEST_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        EventStore(path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        EventStore(junk)
    with pytest.raises(StoreError, match="no such"):
        EventStore(tmp_path / "absent.db", readonly=True)
