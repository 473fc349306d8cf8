"""Attendance and duty sheets over a real mosquitto: a gate's duty events stored once, its sheet for it alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from console.duty_pins import hash_duty_pin
from console.duty_sheets import DutySheetPublisher
from console.ingest import Ingestor
from console.roster.attendance import report
from console.store import EventStore
from edge.guard.pin import verify_pin
from protocol import GateTopics, encode
from protocol.duty import DUTY_CHECK_OUT, DutyMethod, decode_sheet
from tests.console.roster.attendance_support import DAY, ZONE, duty_event, local, seed_roster
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
WAIT_S = 15.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(tmp_path / "console" / "events.db") as instance:
        yield instance


def _duty_rows(store: EventStore) -> int:
    return int(store.db.query("SELECT COUNT(*) FROM events WHERE type LIKE 'duty.%'")[0][0])


def test_check_ins_published_by_a_gate_count_once_across_a_resend(
    broker, store: EventStore, unique_name: str, mqtt_client_factory
):
    site = unique_name
    seed_roster(store.db, site)
    gate = mqtt_client_factory(broker.add_gate(site, "north"))
    topics = GateTopics(site, "north")
    events = [
        duty_event(site, "north", 1, local(8, 2), "g0", name="王伟"),
        duty_event(site, "north", 2, local(8, 40), "g1", name="Li Na", method=DutyMethod.PIN),
        duty_event(site, "north", 3, local(12, 1), "g0", type_=DUTY_CHECK_OUT, on_duty_s=14340.0),
    ]
    with Ingestor(broker.endpoint(broker.add_console("main")), store, name="main") as ingestor:
        assert ingestor.wait_connected(WAIT_S)
        for event in events:
            assert not gate.publish(topics.event, encode(event)).is_failure
        assert wait_until(lambda: _duty_rows(store) == 3, WAIT_S)
        # The gate missed the acks (say) and resends all three from its outbox: nothing new is stored.
        for event in events:
            assert not gate.publish(topics.event, encode(event)).is_failure
        assert wait_until(lambda: ingestor.counters.duplicates == 3, WAIT_S)
    assert _duty_rows(store) == 3

    (north,) = [
        p
        for p in report(store, seed_roster(store.db, site), DAY, ZONE, now=local(23))
        if p.post.endswith("north")
    ]
    kept = {s.span.person: s for s in north.shifts}
    assert kept["g0"].status == "on_time" and kept["g1"].status == "late" and kept["g1"].late_minutes == 40
    hour_9 = north.hours[9]
    assert sorted(d.person for d in hour_9.present) == ["g0", "g1"]  # once each, resend or not
    assert [d.method for d in hour_9.present if d.person == "g1"] == ["pin"]
    assert [d.person for d in north.hours[13].present] == ["g1"]  # g0 checked out at 12:01


def _sheet_of(client, timeout: float = WAIT_S):  # type: ignore[no-untyped-def]
    message = client.get(timeout)
    return None if message is None else decode_sheet(message.payload)


def test_a_gate_reads_its_own_duty_sheet_and_no_other(
    broker, store: EventStore, unique_name: str, mqtt_client_factory
):
    site = unique_name
    roster = seed_roster(store.db, site)
    roster.set_pin("g1", hash_duty_pin("246810"), "test")
    north_creds, east_creds = broker.add_gate(site, "north"), broker.add_gate(site, "east")
    console = broker.endpoint(broker.add_console("main"))
    clock_at = local(7)  # an hour before the morning shifts
    publisher = DutySheetPublisher(console, store.db, ZONE, poll_s=0.1, clock=lambda: clock_at).start()
    try:
        north = mqtt_client_factory(north_creds)
        assert not north.subscribe(GateTopics(site, "north").duty).is_failure
        sheet = _sheet_of(north)
        assert sheet is not None and (sheet.site, sheet.gate) == (site, "north")
        assert {(s.person, s.start, s.end) for s in sheet.shifts} == {
            ("g0", local(8), local(12)),
            ("g1", local(8), local(16)),
        }
        (pin,) = sheet.pins
        assert pin.person == "g1" and verify_pin("246810", pin.pin_hash)  # the gate's own check
        assert sheet.valid_until == local(7) + timedelta(hours=36)

        # The east gate may read its own sheet, and not north's: nothing of north's is delivered.
        east = mqtt_client_factory(east_creds)
        east.subscribe(GateTopics(site, "north").duty)  # mosquitto may grant it; nothing may arrive
        assert east.get(2.0) is None, "east read north's duty sheet"
        assert not east.subscribe(GateTopics(site, "east").duty).is_failure
        east_sheet = _sheet_of(east)
        assert east_sheet is not None and [s.person for s in east_sheet.shifts] == ["g2"]
        assert east_sheet.pins == []  # g2 has no PIN; g1's PIN stays at g1's post
        assert east.get(1.0) is None

        # A roster change reaches the gate without waiting for the hourly resend.
        roster.clear_pin("g1")
        publisher.poke()
        changed = _sheet_of(north)
        assert changed is not None and changed.pins == []
    finally:
        publisher.stop()
    assert publisher.counters.failed == 0


def test_the_sheet_is_sent_again_when_due_even_unchanged(
    broker, store: EventStore, unique_name: str, mqtt_client_factory
):
    site = unique_name
    seed_roster(store.db, site)
    creds = broker.add_gate(site, "north")
    broker.add_gate(site, "east")
    now = [local(7)]
    publisher = DutySheetPublisher(
        broker.endpoint(broker.add_console("main")),
        store.db,
        ZONE,
        poll_s=0.1,
        every_s=0.5,
        clock=lambda: now[0],
    ).start()
    try:
        north = mqtt_client_factory(creds)
        assert not north.subscribe(GateTopics(site, "north").duty).is_failure
        first = _sheet_of(north)
        now[0] = local(7, 30)
        deadline = time.monotonic() + WAIT_S
        later = None
        while time.monotonic() < deadline:
            later = _sheet_of(north, 1.0)
            if later is not None and later.issued_at > first.issued_at:  # type: ignore[union-attr]
                break
        assert later is not None and later.issued_at == local(7, 30)
        assert isinstance(later.issued_at, datetime)
    finally:
        publisher.stop()
