"""What the web console asks of the store: search with keyset pages, hourly flow, the gates overview."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from console.db import Database
from console.store import EventStore
from console.web.queries import EventFilter, event_types, iter_events
from protocol import Event, GateState, GateStatus

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def event(gate: str, seq: int, minutes: float, type_: str = "access.scan", site: str = "s", **data) -> Event:
    return Event(
        id=uuid.uuid4().hex,
        site=site,
        gate=gate,
        boot="b" * 32,
        seq=seq,
        time=T0 + timedelta(minutes=minutes),
        clock_trusted=True,
        type=type_,
        data=data,
    )


class _Recorder:
    """A database that remembers the SQL it was asked, so a test can EXPLAIN it."""

    def __init__(self, db: Database) -> None:
        self.db, self.dialect, self.sql = db, db.dialect, []

    def query(self, sql: str, params=()) -> list:
        self.sql.append(sql)
        return self.db.query(sql, params)


@pytest.fixture
def store(db_url):
    with EventStore(db_url) as instance:
        yield instance


def test_flow_counts_entries_exits_and_denials_per_hour_once(store: EventStore):
    batch = [
        event("north", 1, 5, granted=True),
        event("north", 2, 10, granted=True, direction="out"),
        event("north", 3, 20, granted=False, reason="expired"),
        event("north", 4, 70, "door.access_granted", credential="card"),
        event("north", 5, 75, "door.access_denied", credential="card"),
        event("north", 6, 80, "door.forced"),  # not a decision: not in the flow
        event("north", 7, 85, granted=True, direction="in"),
        event("south", 1, 5, granted=True),
    ]
    assert store.insert_events(batch).new == 8
    assert store.insert_events(batch[:3]).new == 0  # resent: must not count twice
    rows = store.flow("s", "north", T0, T0 + timedelta(hours=2))
    assert [(r.hour, r.entries, r.exits, r.denied) for r in rows] == [
        ("2026-11-29T08:00:00Z", 1, 1, 1),
        ("2026-11-29T09:00:00Z", 2, 0, 1),
    ]
    total = store.flow(None, None, T0 + timedelta(minutes=30), T0 + timedelta(hours=1), per_gate=False)
    assert [(r.site, r.gate, r.hour, r.entries) for r in total] == [("*", "*", "2026-11-29T08:00:00Z", 2)]
    assert store.flow("s", None, T0 + timedelta(hours=1), T0 + timedelta(hours=1)) == []  # end is exclusive
    site_rows = store.flow("s", None, T0, T0 + timedelta(hours=2), per_gate=False)
    assert [(r.site, r.gate, r.entries, r.exits, r.denied) for r in site_rows] == [
        ("s", "*", 2, 1, 1),
        ("s", "*", 2, 0, 1),
    ]
    assert {r.gate for r in store.flow("s", None, T0, T0 + timedelta(hours=2))} == {"north", "south"}


def test_search_filters_and_pages_newest_first(store: EventStore):
    events = [
        event("north", i, i, granted=i % 3 != 0, holder=f"holder {i % 4}", reason="ok") for i in range(1, 61)
    ]
    events += [event("east", 1, 30, "door.held_open", door="main"), event("east", 2, 31, "door.forced")]
    events += [event("north", 61, 90, site="other", granted=True, holder="holder 1", code="ABC123")]
    store.insert_events(events)

    newest = store.search(limit=5)
    assert [e.time for e in newest] == sorted((e.time for e in newest), reverse=True)
    assert newest[0].site == "other"

    pages, before = [], None
    while True:
        page = store.search(gate="s/north", limit=7, before_row_id=before)
        if not page:
            break
        pages.append(page)
        before = page[-1].row_id
    seqs = [e.seq for page in pages for e in page]
    assert seqs == list(range(60, 0, -1))  # every event once, newest first, across 9 pages

    assert {e.type for e in store.search(type="door.*")} == {"door.held_open", "door.forced"}
    assert [e.seq for e in store.search(type="door.forced")] == [2]
    assert {e.data["holder"] for e in store.search(holder="holder 1")} == {"holder 1"}
    assert len(store.search(holder="holder 1")) == 16  # 15 at s/north and one at other/north
    assert len(store.search(holder="holder 1", site="s")) == 15
    assert len(store.search(granted=False)) == 20
    assert [e.data["code"] for e in store.search(code="ABC123")] == ["ABC123"]
    window = store.search(gate="north", start=T0 + timedelta(minutes=10), end=T0 + timedelta(minutes=20))
    assert [e.seq for e in window] == list(range(19, 9, -1))
    assert [e.seq for e in store.search(text='"door":"main"')] == [1]
    assert store.search(reason="expired") == []
    assert store.search(text="%") == []  # a literal, not a wildcard
    assert store.search(holder="x' OR '1'='1") == []


def test_gate_overview_shows_status_newest_event_and_today(store: EventStore):
    store.commit(
        [
            event("north", 1, 10, granted=True, holder="Wang Fang", unit="3-2-401"),
            event("north", 2, 5, granted=False, reason="expired"),  # older clock time, later arrival
            event("east", 1, -600, "agent.started", version="1"),  # yesterday
        ],
        statuses=[GateStatus(state=GateState.ONLINE, site="s", gate="west", boot="c" * 32, backlog=4)],
    )
    rows = {(r.site, r.gate): r for r in store.gate_overview(day_start=T0)}
    assert set(rows) == {("s", "north"), ("s", "east"), ("s", "west")}
    north = rows["s", "north"]
    assert (north.state, north.last_event_type, north.events_today) == (None, "access.scan", 2)
    assert north.last_event_time == "2026-11-29T08:10:00.000000Z"
    assert north.last_event_summary == "GRANTED holder=Wang Fang unit=3-2-401"
    assert rows["s", "east"].events_today == 0 and rows["s", "east"].last_event_type == "agent.started"
    west = rows["s", "west"]
    assert (west.state, west.last_event_time, west.events_today) == ("online", None, 0)
    assert west.status is not None and west.status["backlog"] == 4


def test_a_gate_quiet_for_longer_than_retention_keeps_its_last_event_in_the_overview(store: EventStore):
    store.commit([event("north", 1, 5, "door.locked"), event("north", 2, 10, "agent.stopped")])
    assert store.delete_before("events", T0 + timedelta(days=1), limit=100) == 2
    (north,) = store.gate_overview(day_start=T0)
    assert (north.last_event_type, north.last_event_time) == ("agent.stopped", "2026-11-29T08:10:00.000000Z")
    assert north.last_event_summary is None  # the event itself is gone


def test_iter_events_walks_everything_in_bounded_pages(store: EventStore):
    store.insert_events([event("north", i, i) for i in range(1, 26)])
    pages = iter_events(store, EventFilter(gate="north"), chunk=4)
    assert [e.seq for e in pages] == list(range(25, 0, -1))


def test_event_types_are_read_through_the_type_index(store: EventStore):
    """On PostgreSQL the index is ``COLLATE "C"``: a query in the default collation scanned the table per type."""
    store.insert_events(
        [event("north", i, i, type_) for i, type_ in enumerate(["door.opened", "access.scan"] * 3, 1)]
    )
    store.insert_events([event("north", 9, 9, "agent.started")])
    asked = _Recorder(store.db)
    assert event_types(asked) == ["access.scan", "agent.started", "door.opened"]
    if store.dialect == "postgresql":
        store.db.execute("SET enable_seqscan = off")  # the table is tiny: make a scan the last resort
        (sql,) = asked.sql
        plan = "\n".join(row[0] for row in store.db.query("EXPLAIN " + sql))
        assert "Index Only Scan using events_type_time" in plan and "Seq Scan" not in plan


def test_door_cause_is_searchable_as_reason_in_new_and_migrated_stores(db_url):
    """A door event's cause lands in the indexed reason column; a store made before that learns it on open."""
    with EventStore(db_url) as store:
        store.commit(
            [
                event("north", 1, 1, "door.unlocked", cause="remote"),
                event("north", 2, 2, "door.locked", cause="timeout"),
                event("north", 3, 3, granted=False, reason="expired", cause="ignored"),
            ]
        )
        assert [e.seq for e in store.search(reason="remote")] == [1]
        # what a version-3 store held: no reason for door events, and no record of migration 4
        store.db.execute("UPDATE events SET reason = NULL WHERE type <> 'access.scan'")
        store.db.execute("DELETE FROM schema_migrations WHERE component = 'events' AND version = 4")
        assert store.search(reason="remote") == []
    with EventStore(db_url) as store:
        assert [e.seq for e in store.search(reason="remote")] == [1]
        assert [e.seq for e in store.search(reason="timeout")] == [2]
        assert [e.seq for e in store.search(reason="expired")] == [3]  # an access reason wins over a cause
