"""Routes and check-ins in the console database, SQLite and PostgreSQL; the watcher's alarms exactly once;
the district feed's ``patrols`` subset."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from console.alarms import AlarmBook, AlarmKind
from console.db import Database
from console.district.config import Subset
from console.district.records import selector
from console.patrols.model import Route, Station
from console.patrols.store import PatrolStore, RouteExists
from console.patrols.watcher import PatrolWatcher
from console.store import EventStore
from protocol import Event
from protocol.duty import PATROL_CHECKIN, PatrolCheck

ZONE = ZoneInfo("Asia/Shanghai")


def _checkin(gate: str, seq: int, at: datetime, *, trusted: bool = True) -> Event:
    return Event(
        id=uuid.uuid4().hex,
        site="longtan",
        gate=gate,
        boot="3" * 32,
        seq=seq,
        time=at,
        clock_trusted=trusted,
        type=PATROL_CHECKIN,
        data=PatrolCheck(person="p-2", reader="card").model_dump(mode="json"),
    )


def test_routes_and_check_ins_on_both_databases(db_url: str | Path) -> None:
    with EventStore(db_url) as events, Database(db_url) as db:
        store = PatrolStore(db)
        route = store.save(
            Route("longtan", "loop", (Station("north", 0, 5, "card"), Station("east", 30, 10))), "ada"
        )
        assert store.route(route.id) == route and route.id > 0
        with pytest.raises(RouteExists):
            store.save(Route("longtan", "loop", (Station("north", 0, 5),)), "ada")
        store.put_routes(
            [Route("longtan", "loop", (Station("south", 10, 5),), time(8), time(20), 120)], "bob"
        )
        (again,) = store.routes()
        assert (again.id, again.stations[0].gate, again.every_min, again.updated_by) == (
            route.id,
            "south",
            120,
            "bob",
        )

        start = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
        events.commit(
            [_checkin("north", 1, start + timedelta(minutes=3)), _checkin("north", 2, start, trusted=False)]
        )
        found = store.checkins("longtan", start, start + timedelta(hours=1))
        # the untrusted one is placed at its receipt time (now), outside this hour
        assert [c.at for c in found] == [start + timedelta(minutes=3)]


def test_a_watcher_raises_each_round_station_once_however_often_it_looks(tmp_path: Path) -> None:
    url = tmp_path / "events.db"
    with EventStore(url), Database(url) as db:
        book = AlarmBook(db)
        store = PatrolStore(db)
        route = store.save(
            Route("longtan", "loop", (Station("north", 0, 5), Station("east", 20, 5)), time(9), time(10)), "t"
        )
        db.execute(
            "UPDATE patrol_routes SET updated_at = ? WHERE id = ?", ("2026-12-06T23:00:00.000000Z", route.id)
        )
        watchers = [
            PatrolWatcher(db, book, ZONE),
            PatrolWatcher(db, book, ZONE),
        ]  # two console processes, say
        after = datetime(2026, 12, 7, 11, 30, tzinfo=ZONE).astimezone(UTC)  # both of the day's rounds over
        for minutes in range(3):  # later passes, each a minute on
            for watcher in watchers:
                watcher.step(after + timedelta(minutes=minutes))
        alarms = book.list()
        sources = [(a.kind, a.source) for a in alarms]
        assert len(sources) == len(set(sources))
        # the 7th: 2 rounds x 2 stations, each late and missed (the 6th was over before the route was saved);
        # one open alarm per kind and gate counts the rest
        assert sum(a.count for a in alarms if a.kind == AlarmKind.PATROL_MISSED.value) == 4
        assert sum(a.count for a in alarms if a.kind == AlarmKind.PATROL_LATE.value) == 4


def test_the_district_patrols_subset_forwards_check_ins_only() -> None:
    from console.store import StoredEvent

    def stored(type_: str) -> StoredEvent:
        return StoredEvent(1, "e", "longtan", "north", "b", 1, "t", True, type_, {}, "t")

    wanted = selector([Subset.PATROLS], None)
    assert wanted(stored(PATROL_CHECKIN)) and not wanted(stored("access.scan"))
