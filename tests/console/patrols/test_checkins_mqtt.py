"""Patrol check-ins through real MQTT: a simulated gate publishes ``patrol.checkin`` Events to a real
mosquitto, the real console ingest stores them, and the round reads each exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from console.db import Database
from console.ingest import Ingestor
from console.patrols.model import Route, Station
from console.patrols.rounds import StationState, match_rounds
from console.patrols.store import PatrolStore
from console.store import EventStore
from protocol import Event, GateTopics, encode
from protocol.duty import PATROL_CHECKIN, PatrolCheck
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]
ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(tmp_path / "console" / "events.db") as instance:
        yield instance


def _checkin(site: str, gate: str, seq: int, at: datetime, reader: str, *, trusted: bool = True) -> Event:
    data = PatrolCheck(person="p-7", name="巡逻员 王", reader=reader).model_dump(mode="json")
    return Event(
        id=uuid.uuid4().hex,
        site=site,
        gate=gate,
        boot="1" * 32,
        seq=seq,
        time=at,
        clock_trusted=trusted,
        type=PATROL_CHECKIN,
        data=data,
    )


def test_check_ins_published_by_a_gate_fill_the_round_once(
    broker, store: EventStore, unique_name: str, mqtt_client_factory, tmp_path: Path
) -> None:
    site = unique_name
    start_local = datetime(2026, 12, 7, 9, 0, tzinfo=ZONE)
    start = start_local.astimezone(UTC)
    route = Route(
        site,
        "east loop",
        (Station("north", 0, 5, "card"), Station("north", 20, 5, "scanner"), Station("b3", 40, 5)),
        time(9),
        time(9),
    )
    events = [
        _checkin(site, "north", 1, start + timedelta(minutes=1), "card"),
        _checkin(site, "north", 2, start + timedelta(minutes=33), "scanner"),  # late by 13
        _checkin(site, "north", 3, start + timedelta(minutes=34), "scanner"),  # a second tap: extra
        # the gate's clock was not trusted: the console's receipt (now) is its time, outside this round
        _checkin(site, "north", 4, start + timedelta(minutes=40), "card", trusted=False),
    ]
    with Ingestor(broker.endpoint(broker.add_console("main")), store, name="main") as ingestor:
        assert ingestor.wait_connected(10)
        gate = mqtt_client_factory(broker.add_gate(site, "north"))
        topics = GateTopics(site, "north")
        for _ in range(2):  # the gate resends all of it (no ack seen): stored once
            for event in events:
                gate.client.publish(topics.event, encode(event), qos=1).wait_for_publish(10)
        assert wait_until(lambda: ingestor.counters.committed == 4 and ingestor.counters.duplicates == 4)

    with Database(tmp_path / "console" / "events.db") as db:
        patrols = PatrolStore(db)
        stored = patrols.save(route, "test")
        checks = patrols.checkins(site, start - timedelta(hours=1), start + timedelta(hours=2))
        assert sorted(c.event_id for c in checks) == sorted(e.id for e in events[:3])
        now = start + timedelta(hours=3)
        (record,) = match_rounds(stored, [start_local], checks, now, ZONE)
    assert [s.state for s in record.stations] == [
        StationState.ON_TIME,
        StationState.LATE,
        StationState.MISSED,
    ]
    assert record.stations[1].late_min == 13 and record.stations[0].check.name == "巡逻员 王"
    assert [c.event_id for c in record.extras] == [events[2].id]
