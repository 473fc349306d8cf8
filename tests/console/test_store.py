"""The event store: each id once, one transaction per batch, provable completeness — on both backends."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from console.db import Database, IntegrityError, format_time
from console.store import (
    LATEST_VERSION,
    MIGRATIONS,
    EventStore,
    Rejection,
    StoreError,
)
from protocol import GateState, GateStatus


def count(store: EventStore, sql: str) -> int:
    return int(store.db.query(sql)[0][0])


def test_duplicates_are_ignored_across_and_within_batches(db_url, make_events):
    events = make_events("s1", "north", range(1, 11))
    with EventStore(db_url) as store:
        first = store.insert_events(events[:6])
        assert (first.new, first.duplicate) == (6, 0)
    with EventStore(db_url) as store:
        # events 1..4 again, 7..10 new, and 7 twice within the batch
        result = store.insert_events([*events[:4], *events[6:], events[6]])
        assert (result.new, result.duplicate) == (4, 5)
        again = store.insert_events(events)
        assert (again.new, again.duplicate) == (0, 10)
        assert count(store, "SELECT COUNT(*) FROM events") == 10


def test_insert_result_counts_a_fresh_batch(db_url, make_events):
    with EventStore(db_url) as store:
        result = store.insert_events(make_events("s1", "g", range(1, 501)))
        assert (result.new, result.duplicate) == (500, 0)
        empty = store.insert_events([])
        assert (empty.new, empty.duplicate) == (0, 0)


def test_a_failed_batch_writes_nothing(db_url, make_events):
    good = make_events("s1", "g", range(1, 4))
    with EventStore(db_url) as store:
        bad = Rejection(topic="t", reason=None, detail="x")  # type: ignore[arg-type]
        with pytest.raises(IntegrityError):  # NOT NULL, after the events and rollups were written
            store.commit(good, rejections=[bad])
        assert store.stats().total_events == 0
        assert count(store, "SELECT COUNT(*) FROM flow_hourly") == 0
        assert store.gate_overview() == []
        assert store.insert_events(good).new == 3


def test_stats_count_missing_sequence_numbers(db_url, make_events):
    with EventStore(db_url) as store:
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


def test_rejections_and_gate_status_are_recorded(db_url):
    boot = uuid.uuid4().hex
    with EventStore(db_url) as store:
        store.record_rejection("gatepost/v1/s/g/event", "not_json", "payload is not JSON")
        store.record_rejection("gatepost/v1/s/g/event", "not_json", "payload is not JSON")
        store.commit(rejections=[Rejection("x" * 1000, "schema", "y\x00" * 1000)])
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
        assert store.db.query("SELECT MAX(LENGTH(topic)), MAX(LENGTH(detail)) FROM rejections") == [
            (256, 500)
        ]
        assert store.db.query("SELECT state, time FROM gate_status") == [
            ("stopped", "2026-01-01T00:00:00.000000Z")
        ]


def test_events_after_pages_in_insertion_order(db_url, make_events):
    with EventStore(db_url) as store:
        store.insert_events(make_events("s", "g", range(1, 26)))
        first = store.events_after(0, limit=10)
        assert [e.seq for e in first] == list(range(1, 11))
        rest = store.events_after(first[-1].row_id, limit=100)
        assert [e.seq for e in rest] == list(range(11, 26))
        assert store.events_after(rest[-1].row_id) == []
        assert [e.seq for e in store.last_events(3)] == [23, 24, 25]
        assert rest[0].data == {"credential": "pass", "code": "000011", "granted": False}
        assert rest[0].clock_trusted is True
        assert store.get(rest[0].row_id) == rest[0]
        assert store.get(10**9) is None


def test_hostile_field_values_cannot_wedge_the_store(db_url, make_events):
    """A 60 kB holder or a NUL in a code must not make the batch fail for ever (index size, PG text)."""
    events = make_events("s", "g", range(1, 4))
    events[0].data.update(holder="h" * 60_000, code="a\x00b")
    events[1].data.update(holder=12, granted="yes", direction=["out"])
    with EventStore(db_url) as store:
        assert store.insert_events(events).new == 3
        assert store.get(1).data["code"] == "a\x00b"  # the stored JSON is exactly what the gate sent
        assert store.db.query("SELECT LENGTH(holder), code FROM events ORDER BY row_id LIMIT 1") == [
            (200, "a\ufffdb")
        ]


def test_committed_events_survive_reopen_and_wal_settings(tmp_path: Path, make_events):
    path = tmp_path / "deep" / "missing" / "dir" / "events.db"
    store = EventStore(path)
    store.insert_events(make_events("s", "g", range(1, 51)))
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with EventStore(path) as store:
        assert store.db.query("PRAGMA synchronous") == [(2,)]  # FULL, on every connection the store makes
    with EventStore(f"sqlite:///{path}", readonly=True) as reader:
        stats = reader.stats()
    assert (stats.total_events, stats.total_missing) == (50, 0)


def _old_v2_store(path: Path) -> None:
    """A store exactly as the previous release left it: migrations 1 and 2, old schema_migrations."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    for migration in MIGRATIONS[:2]:
        for statement in migration.statements:
            conn.execute(statement.replace("{pk}", "INTEGER PRIMARY KEY").replace("{bigint}", "INTEGER"))
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, ?, 'then')", (migration.version, migration.name)
        )
    rows = [
        ("a", 1, "2026-01-01T08:10:00.000000Z", "access.scan", '{"granted":true,"holder":"Wang Fang"}'),
        ("b", 2, "2026-01-01T08:20:00.000000Z", "access.scan", '{"granted":true,"direction":"out"}'),
        ("c", 3, "2026-01-01T09:00:00.000000Z", "access.scan", '{"granted":false,"reason":"expired"}'),
        ("d", 4, "2026-01-01T09:30:00.000000Z", "agent.started", "{}"),
    ]
    conn.executemany(
        "INSERT INTO events (id, site, gate, boot, seq, time, clock_trusted, type, data, received_at)"
        " VALUES (?, 's', 'g', 'b', ?, ?, 1, ?, ?, 'then')",
        rows,
    )
    conn.commit()
    conn.close()


def test_a_store_from_the_previous_release_is_upgraded_and_backfilled(tmp_path: Path, make_events):
    path = tmp_path / "events.db"
    _old_v2_store(path)
    with pytest.raises(StoreError, match="start the console once"):
        EventStore(path, readonly=True)
    with EventStore(path) as store:
        assert store.version == LATEST_VERSION
        start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
        assert [(f.hour, f.entries, f.exits, f.denied) for f in store.flow("s", "g", start, end)] == [
            ("2026-01-01T08:00:00Z", 1, 1, 0),
            ("2026-01-01T09:00:00Z", 0, 0, 1),
        ]
        assert [e.id for e in store.search(holder="Wang Fang")] == ["a"]
        assert [e.id for e in store.search(reason="expired")] == ["c"]
        (overview,) = store.gate_overview()
        assert (overview.last_event_type, overview.last_event_time) == (
            "agent.started",
            "2026-01-01T09:30:00.000000Z",
        )
        assert store.insert_events(make_events("s", "g", [5])).new == 1
        assert store.db.query(
            "SELECT component, version FROM schema_migrations WHERE component = 'events' ORDER BY version"
        ) == [("events", v) for v in range(1, LATEST_VERSION + 1)]


def test_postgresql_compares_the_store_s_text_in_byte_order(postgres_url, make_events):
    """As SQLite does: the same gate order on both backends, and memcmp in every index."""
    with EventStore(postgres_url) as store:
        store.insert_events(
            [*make_events("s", "ab", [1]), *make_events("s", "a_b", [1]), *make_events("s", "a-b", [1])]
        )
        other = store.db.query(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND data_type = 'text'"
            " AND table_name IN ('events', 'gate_status', 'rejections', 'flow_hourly', 'gate_last')"
            " AND collation_name IS DISTINCT FROM 'C'"
        )
        assert other == []
        assert [row[0] for row in store.db.query("SELECT gate FROM gate_last ORDER BY gate")] == [
            "a-b",
            "a_b",
            "ab",
        ]


def test_concurrent_opens_apply_each_migration_once(db_url):
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            EventStore(db_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Database(db_url) as db:
        assert db.query("SELECT COUNT(*) FROM schema_migrations WHERE component = 'events'") == [
            (LATEST_VERSION,)
        ]


def test_refuses_a_store_from_newer_software(db_url):
    EventStore(db_url).close()
    with Database(db_url) as db:
        db.execute(
            "INSERT INTO schema_migrations (component, version, name, applied_at) VALUES ('events', ?, 'f', 'n')",
            (LATEST_VERSION + 1,),
        )
    with pytest.raises(StoreError, match="newer"):
        EventStore(db_url)


def test_refuses_non_databases_and_missing_files(tmp_path: Path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        EventStore(junk)
    with pytest.raises(StoreError, match="no such"):
        EventStore(tmp_path / "absent.db", readonly=True)


def test_a_shared_database_is_not_closed_by_the_store(db_url, make_events):
    with Database(db_url) as db:
        with EventStore(db) as store:
            store.insert_events(make_events("s", "g", [1]))
        assert db.query("SELECT COUNT(*) FROM events") == [(1,)]


def test_a_batch_over_many_gates_rolls_up_each_gate_in_a_fixed_number_of_statements(db_url, make_events):
    """A fleet's batch touches one rollup row per gate: the counts must be each gate's own, the
    newest event each gate's newest, and the statements per batch must not grow with the gates
    (they did, two per gate, and at 200 gates that was most of the console's CPU per event)."""
    gates = [f"g{i:02d}" for i in range(40)]
    by_gate = {gate: make_events("fleet", gate, range(1, 7)) for gate in gates}
    first = [event for seq in range(4) for gate in gates for event in [by_gate[gate][seq]]]
    second = [event for seq in range(2, 6) for gate in gates for event in [by_gate[gate][seq]]]
    with EventStore(db_url) as store:
        calls: list[str] = []
        db = store.db
        for name in ("execute", "executemany", "query"):
            original = getattr(db, name)

            def counted(*args: object, _name: str = name, _original: Any = original) -> object:
                calls.append(_name)
                return _original(*args)

            setattr(db, name, counted)
        assert store.insert_events(by_gate["g00"][:1]).new == 1
        few = len(calls)
        calls.clear()
        assert store.insert_events(first[1:]).new == 4 * len(gates) - 1
        assert "executemany" not in calls
        assert len(calls) == few, calls
        result = store.insert_events(second)  # seqs 3, 4 again, 5, 6 new: the upserts' update path
        assert (result.new, result.duplicate) == (2 * len(gates), 2 * len(gates))
        flow = {
            gate: (entries, denied, total)
            for gate, entries, denied, total in store.db.query(
                "SELECT gate, entries, denied, events FROM flow_hourly WHERE site = 'fleet'"
            )
        }
        last = dict(store.db.query("SELECT gate, time FROM gate_last WHERE site = 'fleet'"))
    for gate in gates:
        assert flow[gate] == (3, 3, 6), gate  # granted on even seqs: 2, 4, 6
        assert last[gate] == format_time(by_gate[gate][-1].time), gate
    assert flow["*"] == (3 * len(gates), 3 * len(gates), 6 * len(gates))


def test_two_workers_storing_the_same_events_in_opposite_orders_do_not_deadlock(postgres_url, make_events):
    """Two ingest workers get overlapping batches when a gate resends into a shared
    subscription: on PostgreSQL each insert of an id the other has not yet committed waits for
    it, so batches taken in opposite orders locked each other ("deadlock detected", seen in
    bench/fleet.py's two-worker drain).  The store inserts in one order whatever the batch's."""
    events = [event for gate in ("a", "b", "c") for event in make_events("s", gate, range(1, 301))]
    statuses = [
        GateStatus(state=GateState.ONLINE, site="s", gate=gate, boot=uuid.uuid4().hex) for gate in "abcdefgh"
    ]
    errors: list[BaseException] = []
    results: list[int] = []
    for round_ in range(3):
        stores = [EventStore(postgres_url), EventStore(postgres_url)]
        start = threading.Barrier(2)

        def work(store: EventStore, batch: list, status: list, start: threading.Barrier = start) -> None:
            try:
                start.wait(5)
                results.append(store.commit(batch, status).new)
            except BaseException as exc:  # the test reports what the other thread raised
                errors.append(exc)

        batch = events[round_ * 300 : round_ * 300 + 300]
        threads = [
            threading.Thread(target=work, args=(stores[0], batch, statuses)),
            threading.Thread(target=work, args=(stores[1], batch[::-1], statuses[::-1])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for store in stores:
            store.close()
    assert not errors, errors
    assert sorted(results) == [0, 0, 0, 300, 300, 300], "each event stored once, by one of the two"


def test_old_numbers_from_many_gates_are_checked_in_one_query(db_url, make_events):
    """After a console outage a drain batch holds resends from hundreds of gates, each at or
    below its gate's highest stored number.  The ingest guard asks which ids are stored under
    them in one query (per 300), not one per gate: per gate, a 1,000-gate drain stalled the
    writer long enough for the broker to drop the console's session, over and over.  A number
    stored under another id is still found, on any gate of the batch."""
    from console.integrity import IngestGuard

    gates = [f"g{i:02d}" for i in range(60)]
    stored = {gate: make_events("fleet", gate, range(1, 4)) for gate in gates}
    with EventStore(db_url) as store:
        store.insert_events([event for events in stored.values() for event in events])
        guard = IngestGuard(store)
        resent = [event for events in stored.values() for event in events[:2]]  # the same ids again
        forged = make_events("fleet", "g37", [3])  # a used number under a new id
        guard.check_events(resent[:1])  # the guard learns every gate's highest number once
        for gate in gates:
            guard.check_events(stored[gate][:1])
        queries: list[str] = []
        original = store.db.query

        def counted(sql: str, params: Any = ()) -> Any:
            queries.append(sql)
            return original(sql, params)

        store.db.query = counted  # type: ignore[method-assign]
        verdict = guard.check_events(resent + forged)
        assert len(queries) == 1, f"{len(queries)} queries for {len(gates)} gates"
        by_id = dict(zip((event.id for event in verdict.events), verdict.flags, strict=True))
        assert not any(by_id[event.id] for event in resent)
        assert by_id[forged[0].id], "the reused number is flagged"
