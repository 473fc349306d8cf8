"""The live watcher against the real store: late commits, restarts, statuses; the hub's closing of streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from console import follow
from console.alarms import AlarmBook
from console.db import Database, format_time
from console.store import EventStore
from console.web import hub as hub_module
from console.web.hub import GateBoard, Hub, Watcher, is_close, load_board
from protocol import Event
from tests.console.web.web_support import make_event

T = TypeVar("T")


@pytest.fixture
def store(db_url: str | Path) -> Iterator[EventStore]:
    with EventStore(db_url) as instance:
        yield instance


def _watcher(store: EventStore) -> Watcher:
    """A watcher with its position and board loaded, stepped by the test (its thread stopped)."""
    watcher = Watcher(store, store.db, AlarmBook(store.db), Hub(), GateBoard())
    watcher.outages.hold_s = 0  # stepped by hand: an offline raises at the step that reads it
    watcher.start()
    watcher.stop()
    return watcher


def _insert_at(db: Database, row_id: int, event: Event) -> None:
    """Store ``event`` as ``row_id``: what a slower ingest worker's commit looks like to a reader."""
    db.execute(
        "INSERT INTO events (row_id, id, site, gate, boot, seq, time, clock_trusted, type, data, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, '2026-11-29T10:00:00.000000Z')",
        (
            row_id,
            event.id,
            event.site,
            event.gate,
            event.boot,
            event.seq,
            format_time(event.time),
            event.type,
            json.dumps(event.data),
        ),
    )


def _kinds(watcher: Watcher) -> list[str]:
    return [alarm.kind for alarm in watcher.alarms.list()]


# -- events committed out of row_id order (PostgreSQL with several ingest workers) --------------


def test_an_event_committed_below_the_cursor_is_still_read(store: EventStore):
    watcher = _watcher(store)
    _insert_at(store.db, 1, make_event("s1", "door-3", 1, "door.opened"))
    _insert_at(store.db, 3, make_event("s1", "door-3", 3, "door.closed"))
    watcher.step_events()
    assert watcher.cursor == 3 and watcher.alarms.cursor() == 1  # a restart would look for 2 again
    _insert_at(store.db, 2, make_event("s1", "door-3", 2, "door.forced"))  # the slower worker commits
    watcher.step_events()
    assert _kinds(watcher) == ["door.forced"]
    assert watcher.alarms.cursor() == 3
    (row,) = watcher.board.rows()
    assert (row.door, row.last_event_type) == ("closed", "door.closed")  # a late row is not the newest


def test_a_restart_reads_again_from_below_a_skipped_id(store: EventStore):
    first = _watcher(store)
    _insert_at(store.db, 1, make_event("s1", "north", 1))
    _insert_at(store.db, 3, make_event("s1", "north", 3))
    first.step_events()
    _insert_at(store.db, 2, make_event("s1", "door-3", 1, "door.forced"))  # while the console restarts
    again = _watcher(store)
    again.step_events()
    assert _kinds(again) == ["door.forced"]
    again.step_events()
    assert again.alarms.cursor() == 3


def test_a_skipped_id_is_forgotten_after_a_while(store: EventStore, monkeypatch: pytest.MonkeyPatch):
    """Ids can be skipped for good (a duplicate or a rolled-back batch uses one up)."""
    monkeypatch.setattr(follow, "GAP_S", 0.0)
    watcher = _watcher(store)
    _insert_at(store.db, 1, make_event("s1", "north", 1))
    _insert_at(store.db, 5000, make_event("s1", "north", 2))  # a jump: only the newest are looked for
    watcher.step_events()
    assert watcher.alarms.cursor() == 5000 - follow.MAX_GAPS - 1
    watcher.step_events()
    assert watcher.alarms.cursor() == 5000


def test_two_ingest_workers_committing_out_of_order_on_postgresql(postgres_url: str):
    """The real thing: a worker holds a lower row_id uncommitted while another commits a higher one."""
    import psycopg

    with EventStore(postgres_url) as store:
        watcher = _watcher(store)
        forced = make_event("s1", "door-3", 1, "door.forced")
        with psycopg.connect(postgres_url) as slow:  # not autocommit: its transaction stays open
            slow.execute(
                "INSERT INTO events (id, site, gate, boot, seq, time, clock_trusted, type, data, received_at)"
                " VALUES (%s, 's1', 'door-3', %s, 1, '2026-11-29T10:00:01.000000Z', 1, 'door.forced', '{}',"
                " '2026-11-29T10:00:02.000000Z')",
                (forced.id, forced.boot),
            )
            store.commit([make_event("s1", "north", 1)])
            watcher.step_events()
            assert [e.type for e in store.events_after(0)] == ["access.scan"]
            assert _kinds(watcher) == []
        watcher.step_events()  # the slow worker has committed
        assert _kinds(watcher) == ["door.forced"]


# -- gate statuses ---------------------------------------------------------------------------


class _Recorder:
    """A database that remembers what it was asked and how many ``gate_status`` rows it gave."""

    def __init__(self, db: Database) -> None:
        self.db, self.dialect, self.sql, self.status_rows = db, db.dialect, [], 0

    def query(self, sql: str, params=()) -> list:
        self.sql.append(sql)
        rows = self.db.query(sql, params)
        if "FROM gate_status" in sql:
            self.status_rows += len(rows)
        return rows


def _set_status(db: Database, gate: str, state: str, received_at: str) -> None:
    db.execute(
        "INSERT INTO gate_status (site, gate, state, boot, received_at, payload) VALUES ('s1', ?, ?, ?, ?, '{}')"
        " ON CONFLICT (site, gate) DO UPDATE SET state = excluded.state, received_at = excluded.received_at",
        (gate, state, "0" * 32, received_at),
    )


def test_a_status_pass_reads_only_what_was_received_lately(store: EventStore):
    for number in range(48):
        _set_status(store.db, f"g{number}", "online", "2026-11-29T08:00:00.000000Z")
    watcher = _watcher(store)
    watcher.db = asked = _Recorder(store.db)  # type: ignore[assignment]
    _set_status(store.db, "g1", "offline", "2026-11-29T09:00:00.000000Z")
    _set_status(store.db, "g2", "offline", "2026-11-29T09:00:00.000000Z")
    watcher.step_statuses()
    asked.status_rows = 0
    _set_status(store.db, "g3", "offline", "2026-11-29T09:00:00.000000Z")  # the same receipt time, later
    _set_status(store.db, "g4", "offline", "2026-11-29T08:59:45.000000Z")  # stamped earlier, committed later
    watcher.step_statuses()
    watcher.step_statuses()
    assert sorted(alarm.gate for alarm in watcher.alarms.list()) == ["g1", "g2", "g3", "g4"]
    assert {row.gate: row.state for row in watcher.board.rows()}["g4"] == "offline"
    assert asked.status_rows == 4 + 4  # the last 30 s are read again, the 44 quiet gates no more


# -- the board at start ----------------------------------------------------------------------


def test_the_board_loads_door_states_through_the_type_index(store: EventStore):
    store.commit([make_event("s1", "door-3", 1, "door.opened"), make_event("s1", "door-3", 2, "access.scan")])
    asked = _Recorder(store.db)
    board = GateBoard()
    load_board(store, asked, board)  # type: ignore[arg-type]
    (row,) = board.rows()
    assert (row.door, row.last_event_type) == ("open", "access.scan")
    if store.dialect == "postgresql":
        store.db.execute("SET enable_seqscan = off")  # the table is tiny: make a scan the last resort
        (sql,) = asked.sql
        assert "events_type_time" in "\n".join(row[0] for row in store.db.query("EXPLAIN " + sql))


# -- the hub ---------------------------------------------------------------------------------


def run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a thread of its own: the browser tests' Playwright keeps a loop running
    on this process's main thread for the whole session, and asyncio.run refuses to nest."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(30)


def test_closing_the_hub_ends_a_stream_waiting_for_its_next_message():
    async def main() -> object:
        hub = Hub()
        hub.bind(asyncio.get_running_loop())
        sub = hub.subscribe({"event"})
        waiting = asyncio.ensure_future(asyncio.wait_for(sub.queue.get(), 2.0))  # as routes/gates.py waits
        await asyncio.sleep(0.05)
        hub.close()
        return await waiting

    assert is_close(run_in_own_loop(main()))


def test_a_page_that_cannot_keep_up_reads_what_it_holds_then_the_close(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(hub_module, "QUEUE_SIZE", 3)

    async def main() -> list[Any]:
        hub = Hub()
        hub.bind(asyncio.get_running_loop())
        sub = hub.subscribe({"event"})
        for seq in range(5):
            hub.publish("event", {"seq": seq})
        await asyncio.sleep(0.05)
        assert sub.dropped and hub.subscribers == 0
        return [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]

    *messages, last = run_in_own_loop(main())  # the oldest went to make room for the close
    assert [payload["seq"] for _, payload in messages] == [1, 2] and is_close(last)
