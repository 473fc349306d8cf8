"""The gap watch against a real mosquitto and a real store (SQLite and PostgreSQL): a hole that stays
open raises one alarm naming the gate and the range, and the alarm clears itself when the hole fills."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.alarms import CONSOLE_ACTOR, AlarmBook, AlarmKind
from console.cli import format_stats
from console.gaps import GapWatch
from console.ingest import Ingestor
from console.store import EventStore, GateGaps
from protocol import GateTopics, encode
from tests.waiting import wait_until

WAIT_S = 10.0
AGE_S = 1.0


@pytest.fixture
def store(db_url: str | Path) -> Iterator[EventStore]:
    with EventStore(db_url) as instance:
        yield instance


@pytest.fixture
def ingestor(broker, store) -> Iterator[Ingestor]:
    with Ingestor(broker.endpoint(broker.add_console("main")), store, name="main") as instance:
        assert instance.wait_connected(WAIT_S)
        yield instance


def publish(client, topic: str, events) -> None:
    infos = [client.client.publish(topic, encode(e), qos=1) for e in events]
    for info in infos:
        info.wait_for_publish(WAIT_S)


def gate_row(store: EventStore, site: str, gate: str):
    return next((g for g in store.stats().gates if (g.site, g.gate) == (site, gate)), None)


def count(store: EventStore, site: str, gate: str) -> int:
    row = gate_row(store, site, gate)
    return row.count if row is not None else 0


def gap_alarms(book: AlarmBook) -> list:
    return [a for a in book.list(limit=100) if a.kind == AlarmKind.SEQ_GAP.value]


def test_a_gap_raises_one_alarm_after_its_age_and_clears_when_filled(
    ingestor, store, broker, unique_name, mqtt_client_factory, make_events
):
    site = unique_name
    gate = mqtt_client_factory(broker.add_gate(site, "north"))
    topic = GateTopics(site, "north").event
    events = make_events(site, "north", range(1, 101))
    hole = [e for e in events if 40 <= e.seq <= 45]
    publish(gate, topic, [e for e in events if not 40 <= e.seq <= 45])
    assert wait_until(lambda: count(store, site, "north") == 94, WAIT_S)

    book = AlarmBook(store.db)
    watch = GapWatch(store, book, alarm_after_s=AGE_S, interval_s=0.1)
    watch.step()
    north = gate_row(store, site, "north")
    assert (north.open_gaps, north.open_gap_count, north.gap_missing) == ([(40, 45)], 1, 6)
    assert gap_alarms(book) == []  # younger than the configured age: the resend may still come

    time.sleep(AGE_S + 0.1)
    watch.step()
    watch.step()  # a second look at the same hole counts nothing more
    (alarm,) = gap_alarms(book)
    assert (alarm.site, alarm.gate, alarm.open, alarm.count) == (site, "north", True, 1)
    assert alarm.detail == {"ranges": "40-45", "missing": 6, "gaps": 1}
    table = format_stats(store.stats())
    assert "40-45" in table and "(1 open gaps)" in table

    publish(gate, topic, hole)  # the resends arrive
    assert wait_until(lambda: count(store, site, "north") == 100, WAIT_S)
    watch.step()
    (alarm,) = gap_alarms(book)
    assert not alarm.open and alarm.acked_by == CONSOLE_ACTOR and "arrived" in (alarm.note or "")
    north = gate_row(store, site, "north")
    assert (north.open_gaps, north.open_gap_count, north.missing) == ([], 0, 0)


def test_the_watch_thread_raises_and_clears_on_its_own(
    ingestor, store, broker, unique_name, mqtt_client_factory, make_events
):
    """The thread ``console run`` starts: no test stepping, just time."""
    site = unique_name
    gate = mqtt_client_factory(broker.add_gate(site, "north"))
    topic = GateTopics(site, "north").event
    events = make_events(site, "north", range(1, 21))
    publish(gate, topic, [e for e in events if e.seq != 7])
    book = AlarmBook(store.db)
    told: list[tuple[int, bool]] = []
    watch = GapWatch(
        store,
        book,
        alarm_after_s=AGE_S,
        interval_s=0.1,
        on_alarm=lambda a, opened: told.append((a.row_id, opened)),
    ).start()
    try:
        (alarm,) = wait_until(lambda: [a for a in gap_alarms(book) if a.open], WAIT_S)
        assert alarm.detail["ranges"] == "7"
        publish(gate, topic, [events[6]])
        assert wait_until(lambda: not any(a.open for a in gap_alarms(book)), WAIT_S)
    finally:
        watch.stop()
    assert told == [(alarm.row_id, True), (alarm.row_id, False)]  # opened, then cleared


def test_a_restarted_watch_carries_on_without_a_second_alarm(store, make_events):
    store.commit(make_events("s1", "north", [*range(1, 10), *range(15, 30)]))
    book = AlarmBook(store.db)
    GapWatch(store, book, alarm_after_s=0).step()
    assert len(gap_alarms(book)) == 1
    again = GapWatch(store, AlarmBook(store.db), alarm_after_s=0)  # the console restarted
    again.step()
    store.commit(make_events("s1", "north", range(30, 40)))
    again.step()
    (alarm,) = gap_alarms(book)
    assert alarm.open and alarm.detail["ranges"] == "10-14"
    assert store.watch_cursor() > 0


def test_an_operator_acknowledged_gap_does_not_come_back_but_a_new_one_does(store, make_events):
    store.commit(make_events("s1", "north", [1, 2, 5]))
    book = AlarmBook(store.db)
    watch = GapWatch(store, book, alarm_after_s=0)
    watch.step()
    (alarm,) = gap_alarms(book)
    book.acknowledge(alarm.row_id, "ana", "gate replaced; those two are gone")
    watch.step()
    assert not any(a.open for a in gap_alarms(book))
    store.commit(make_events("s1", "north", [6, 9]))  # a new hole, 7-8
    watch.step()
    (new,) = [a for a in gap_alarms(book) if a.open]
    assert new.detail["ranges"] == "3-4, 7-8"


def test_a_fill_the_cursor_never_saw_is_found_before_the_alarm(store, make_events):
    """On PostgreSQL an event can commit below the position already read; the range read finds it."""
    events = make_events("s1", "north", range(1, 11))
    store.commit([e for e in events if e.seq != 4])
    book = AlarmBook(store.db)
    watch = GapWatch(store, book, alarm_after_s=3600)
    watch.step()
    assert gate_row(store, "s1", "north").open_gaps == [(4, 4)]
    store.commit([events[3]])
    # as if seq 4 had committed under a row_id the watch had already passed
    store.save_gaps([GateGaps("s1", "north", 10, [(4, 4, "2000-01-01T00:00:00.000000Z")])], cursor=10**9)
    again = GapWatch(store, book, alarm_after_s=60)
    again.step()
    assert gap_alarms(book) == []
    assert gate_row(store, "s1", "north").open_gaps == []


def test_stats_json_names_open_gaps(store, make_events, tmp_path, capsys):
    from gatepost.cli import main

    store.commit(make_events("s1", "north", [1, 2, 3, 8, 9, 20]))
    GapWatch(store, None).step()
    if store.dialect != "sqlite":
        stats = store.stats().to_dict()
    else:
        assert main(["console", "stats", "--db", str(store.path), "--json"]) == 0
        stats = json.loads(capsys.readouterr().out)
    (north,) = stats["gates"]
    assert north["open_gaps"] == [[4, 7], [10, 19]] or north["open_gaps"] == [(4, 7), (10, 19)]
    assert (north["open_gap_count"], north["gap_missing"], stats["total_open_gaps"]) == (2, 14, 2)
