"""Reading in ingest order: the cursor never passes an event that is still to commit below it."""

from __future__ import annotations

import time

import pytest

from console.district.reader import GAP_MIN_S, IngestOrderReader
from console.store import EventStore

pytestmark = pytest.mark.timeout(60)


def test_every_event_once_in_row_id_order(db_url, make_events):
    with EventStore(db_url) as store:
        store.commit(make_events("north", "g1", range(1, 301)))
        reader = IngestOrderReader(store)
        seen: list[int] = []
        for _ in range(20):
            batch = reader.read(64)
            seen += [event.row_id for event in batch.events]
            reader.advance(batch.position)
            if not batch.more and not batch.events:
                break
        assert len(seen) == len(set(seen)) == 300 and seen == sorted(seen)


def test_postgres_a_hole_is_waited_for_until_its_transaction_ends(postgres_url, make_events):
    """Worker A takes a row_id and has not committed; worker B commits a higher one.  The reader
    must stop before A's id (passing it would lose A's event for good), then read both."""
    import psycopg

    with EventStore(postgres_url) as store:
        store.commit(make_events("north", "g1", range(1, 11)))
        reader = IngestOrderReader(store)
        reader.advance(reader.read(100).position)
        late = make_events("north", "g2", [1])[0]
        with psycopg.connect(postgres_url) as conn:  # worker A: inserted, not committed
            conn.execute(
                "INSERT INTO events (id, site, gate, boot, seq, time, clock_trusted, type, data, received_at)"
                " VALUES (%s, 'north', 'g2', %s, 1, '2026-11-29T08:00:01.000000Z', 1, 'access.scan', '{}',"
                " '2026-11-29T08:00:01.000000Z')",
                (late.id, late.boot),
            )
            store.commit(make_events("north", "g3", range(1, 4)))  # worker B commits after it
            deadline = time.monotonic() + GAP_MIN_S * 4
            while time.monotonic() < deadline:
                assert reader.read(100).events == [], "the reader passed an uncommitted event's id"
                time.sleep(0.05)
            conn.commit()
        events: list = []
        deadline = time.monotonic() + 10
        while len(events) < 4 and time.monotonic() < deadline:
            batch = reader.read(100)
            events += batch.events
            reader.advance(batch.position)
            time.sleep(0.05)
        assert [e.gate for e in events] == ["g2", "g3", "g3", "g3"]


def test_postgres_a_hole_for_good_is_passed_once_its_transaction_rolled_back(postgres_url, make_events):
    import psycopg

    with EventStore(postgres_url) as store:
        reader = IngestOrderReader(store)
        with psycopg.connect(postgres_url) as conn:
            conn.execute(
                "INSERT INTO events (id, site, gate, boot, seq, time, clock_trusted, type, data, received_at)"
                " VALUES ('gone', 'north', 'g2', 'b', 1, '2026-11-29T08:00:01.000000Z', 1, 'access.scan', '{}',"
                " '2026-11-29T08:00:01.000000Z')"
            )
            store.commit(make_events("north", "g3", range(1, 4)))
            assert reader.read(100).events == []
            conn.rollback()
        events: list = []
        deadline = time.monotonic() + 10
        while len(events) < 3 and time.monotonic() < deadline:
            batch = reader.read(100)
            events += batch.events
            reader.advance(batch.position)
            time.sleep(0.05)
        assert [e.gate for e in events] == ["g3"] * 3
