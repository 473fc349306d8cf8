"""A lying gate lies only about itself, and only within bounds (issue 13, item 7).

Each test is one finding of the issue, tried the way it was found: a client holding one
gate's own MQTT credentials publishes on that gate's own topics to a real mosquitto, a
real ingestor stores what it gets (SQLite and PostgreSQL), and the web console's watcher
turns it into alarms.  The counts are the issue's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from console.alarms import CONSOLE_ACTOR, AlarmBook, AlarmKind
from console.ingest import Ingestor
from console.retention import RetentionPolicy, prune
from console.store import EventFlag, EventStore
from console.web.hub import GateBoard, Hub, Watcher
from protocol import Event, GateState, GateStatus, GateTopics, decode_ack, encode
from tests.waiting import wait_until

WAIT_S = 20.0
NOW = datetime.now(UTC).replace(microsecond=0)
BOOT = uuid.uuid4().hex


@pytest.fixture
def store(db_url: str | Path) -> Iterator[EventStore]:
    with EventStore(db_url) as instance:
        yield instance


@pytest.fixture
def ingestor(broker, store) -> Iterator[Ingestor]:
    with Ingestor(broker.endpoint(broker.add_console("main")), store, name="main") as instance:
        assert instance.wait_connected(WAIT_S)
        yield instance


@pytest.fixture
def watcher(store, ingestor) -> Watcher:
    """The web console's watcher on the same store, started before the attack and stepped by the test."""
    instance = Watcher(store, store.db, AlarmBook(store.db), Hub(), GateBoard())
    instance.outages.hold_s = 0  # stepped by hand: an offline raises at the step that reads it
    instance.start()
    instance.stop()
    return instance


class Gate:
    """One gate's credentials in an attacker's hands: publishes on the gate's own topics, reads its Acks."""

    def __init__(self, broker: Any, factory: Any, site: str, name: str) -> None:
        self.site, self.name = site, name
        self.topics = GateTopics(site, name)
        self.client = factory(broker.add_gate(site, name))
        assert self.client.subscribe(self.topics.ack).value == 1
        self.acked: set[int] = set()

    def event(self, seq: int, type_: str = "access.scan", *, at: datetime = NOW, **data: Any) -> Event:
        return Event(
            id=uuid.uuid4().hex,
            site=self.site,
            gate=self.name,
            boot=BOOT,
            seq=seq,
            time=at,
            clock_trusted=True,
            type=type_,
            data=data,
        )

    def send(self, events: list[Event]) -> None:
        infos = [self.client.client.publish(self.topics.event, encode(e), qos=1) for e in events]
        for info in infos:
            info.wait_for_publish(WAIT_S)

    def status(self, state: str, *, at: datetime | None = NOW, boot: str = BOOT, **extra: Any) -> None:
        status = GateStatus(
            state=GateState(state), site=self.site, gate=self.name, boot=boot, time=at, **extra
        )
        assert self.client.publish(self.topics.status, encode(status), retain=True).value == 0

    def acks(self, timeout: float = 1.0) -> set[int]:
        while (message := self.client.get(timeout)) is not None:
            for first, last in decode_ack(message.payload).iter_ranges():
                self.acked.update(range(first, last + 1))
        return self.acked


def stored(store: EventStore, site: str, gate: str) -> int:
    return sum(g.count for g in store.stats().gates if (g.site, g.gate) == (site, gate))


def drain(watcher: Watcher) -> None:
    while watcher.step_events():
        pass
    watcher.step_statuses()
    watcher.step_rejections()


def open_alarms(watcher: Watcher, gate: str) -> dict[str, Any]:
    return {a.kind: a for a in watcher.alarms.list(open_only=True, limit=1000) if a.gate == gate}


@pytest.fixture
def north(broker, mqtt_client_factory, unique_name) -> Gate:
    return Gate(broker, mqtt_client_factory, unique_name, "north")


def test_200_forged_door_forced_events_are_one_open_alarm_counting_200(store, watcher, north):
    north.send([north.event(seq, "door.forced") for seq in range(1, 201)])
    assert wait_until(lambda: stored(store, north.site, "north") == 200, WAIT_S)
    drain(watcher)
    alarms = open_alarms(watcher, "north")
    assert list(alarms) == [AlarmKind.DOOR_FORCED.value]
    forced = alarms[AlarmKind.DOOR_FORCED.value]
    assert forced.count == 200
    watcher.alarms.acknowledge(
        forced.row_id, "ana", "forged: gate credentials rotated"
    )  # one acknowledgement
    assert open_alarms(watcher, "north") == {}


def test_10000_denied_scans_open_a_bounded_number_of_alarms_and_are_all_kept(store, watcher, north):
    denied = [
        north.event(seq, granted=False, reason="unknown", credential="pass") for seq in range(1, 10_001)
    ]
    north.send(denied)
    assert wait_until(lambda: stored(store, north.site, "north") == 10_000, 60.0)  # none dropped
    assert wait_until(lambda: len(north.acks()) == 10_000, WAIT_S)  # and every one acknowledged
    drain(watcher)
    alarms = open_alarms(watcher, "north")
    assert sorted(alarms) == [AlarmKind.DENIED_BURST.value, AlarmKind.INGEST_FLOOD.value]  # not 2,018
    assert alarms[AlarmKind.DENIED_BURST.value].count == 2_000
    assert alarms[AlarmKind.INGEST_FLOOD.value].count == 10_000 - 600  # beyond 600 a minute of gate time
    hour = NOW.replace(minute=0, second=0)
    (row,) = store.flow(north.site, "north", hour, hour + timedelta(hours=1))
    (without,) = store.flow(north.site, "north", hour, hour + timedelta(hours=1), exclude_flagged=True)
    assert (row.denied, without.denied) == (10_000, 600)  # recomputed without the flagged ones
    flood = store.search(gate=f"{north.site}/north", flagged=True, limit=10_000)
    assert len(flood) == 9_400 and all(e.flags == EventFlag.FLOOD for e in flood)


def test_500_back_dated_scans_leave_that_hours_flow_unchanged(store, watcher, north):
    past = (NOW - timedelta(hours=5)).replace(minute=0, second=0)
    genuine = [north.event(seq, at=past + timedelta(minutes=seq), granted=True) for seq in range(1, 33)]
    today = [north.event(seq, at=NOW - timedelta(minutes=1), granted=True) for seq in range(33, 41)]
    north.send(genuine + today)
    assert wait_until(lambda: stored(store, north.site, "north") == 40, WAIT_S)
    (before,) = store.flow(north.site, "north", past, past + timedelta(hours=1))
    assert before.entries == 32

    forged = [north.event(seq, at=past + timedelta(minutes=30), granted=True) for seq in range(41, 541)]
    north.send(forged)
    assert wait_until(lambda: stored(store, north.site, "north") == 540, WAIT_S)  # kept, not dropped
    assert wait_until(lambda: set(range(41, 541)) <= north.acks(), WAIT_S)  # and acknowledged
    (after,) = store.flow(north.site, "north", past, past + timedelta(hours=1))
    assert after.entries == 32  # not 532
    drain(watcher)
    assert open_alarms(watcher, "north")[AlarmKind.EVENT_BACKDATED.value].count == 500


def test_a_reused_sequence_number_is_kept_out_of_the_flow(store, ingestor, north):
    """The same lie by another route: numbers the gate already used, under new ids, dated in the past."""
    past = (NOW - timedelta(hours=5)).replace(minute=0, second=0)
    north.send([north.event(seq, at=past + timedelta(minutes=seq), granted=True) for seq in range(1, 33)])
    assert wait_until(lambda: stored(store, north.site, "north") == 32, WAIT_S)
    north.send([north.event(seq, at=past + timedelta(minutes=30), granted=True) for seq in range(1, 33)])
    assert wait_until(lambda: stored(store, north.site, "north") == 64, WAIT_S)
    (after,) = store.flow(north.site, "north", past, past + timedelta(hours=1))
    assert after.entries == 32


def test_an_event_dated_8999_is_quarantined_acknowledged_and_pruned(store, watcher, north):
    north.send([north.event(seq, granted=True) for seq in range(1, 6)])
    north.send([north.event(6, "door.forced", at=datetime(8999, 1, 1, tzinfo=UTC))])
    assert wait_until(lambda: stored(store, north.site, "north") == 6, WAIT_S)
    assert wait_until(lambda: 6 in north.acks(), WAIT_S)  # the gate may delete it

    top = store.search(limit=1)  # the events page, newest first
    assert top[0].seq == 5 and not top[0].time.startswith("8999")
    (quarantined,) = store.search(flagged=True)
    assert quarantined.flags == EventFlag.FUTURE and quarantined.time.startswith("8999")
    assert not any(
        r.hour.startswith("8999") for r in store.flow(None, None, NOW, datetime(9000, 1, 1, tzinfo=UTC))
    )
    (overview,) = store.gate_overview()
    assert not (overview.last_event_time or "").startswith("8999")
    drain(watcher)
    alarms = open_alarms(watcher, "north")
    assert AlarmKind.EVENT_QUARANTINED.value in alarms
    assert AlarmKind.DOOR_FORCED.value not in alarms  # a quarantined event is not taken as fact

    # retention: kept 30 days from its *receipt*, then pruned like the rest
    policy = RetentionPolicy(retain_days=30, retain_rejections_days=30)
    prune(store, policy, now=NOW + timedelta(days=29))
    assert store.search(flagged=True) != []
    prune(store, policy, now=NOW + timedelta(days=31))
    assert store.search(flagged=True) == []


def test_a_forged_sequence_jump_is_refused_and_missing_stays_honest(store, watcher, north):
    north.send([north.event(seq) for seq in range(1, 51)])
    assert wait_until(lambda: set(range(1, 51)) <= north.acks(), WAIT_S)
    jump = 50 + 9_950_402 + 1  # what made the console report 9,950,402 missing
    north.send([north.event(jump)])
    assert wait_until(lambda: store.stats().rejections.get("seq_jump") == 1, WAIT_S)
    north.send([north.event(51)])  # the gate carries on
    assert wait_until(lambda: 51 in north.acks(), WAIT_S)
    assert jump not in north.acks(timeout=0.5)  # refused: not acknowledged, a real gate would keep it
    (gate,) = [g for g in store.stats().gates if g.gate == "north"]
    assert (gate.count, gate.max_seq, gate.missing) == (51, 51, 0)
    drain(watcher)
    assert open_alarms(watcher, "north")[AlarmKind.SEQ_JUMP.value].count == 1


def test_a_replayed_retained_offline_status_is_refused(store, watcher, north):
    north.status("online", backlog=0)
    assert wait_until(lambda: [g.state for g in store.stats().gates] == ["online"], WAIT_S)
    north.status("offline", at=NOW - timedelta(hours=2))  # an old will of this run, replayed
    assert wait_until(lambda: store.stats().rejections.get("stale_status") == 1, WAIT_S)
    assert [g.state for g in store.stats().gates] == ["online"]
    drain(watcher)
    (row,) = watcher.board.rows()
    assert row.state == "online"
    assert list(open_alarms(watcher, "north")) == [AlarmKind.STATUS_REFUSED.value]
    north.status(
        "offline", at=NOW + timedelta(days=1)
    )  # nor one from the future, which would outrank the truth
    assert wait_until(lambda: store.stats().rejections.get("future_status") == 1, WAIT_S)


def test_a_forged_current_offline_status_is_contradicted_by_the_gates_own_events(store, watcher, north):
    north.status("online", backlog=0)
    north.status("offline", at=datetime.now(UTC))  # forged now, naming the gate's own run
    assert wait_until(lambda: [g.state for g in store.stats().gates] == ["offline"], WAIT_S)
    drain(watcher)
    assert list(open_alarms(watcher, "north")) == [AlarmKind.GATE_OFFLINE.value]

    watcher.contradict_grace_s, watcher.contradict_confirm_s = 0.5, 0.0  # (30 s and 3 s in service)
    wait_until(lambda: False, 0.6)
    north.send([north.event(1, granted=True, at=datetime.now(UTC))])  # the real gate carries on
    assert wait_until(lambda: stored(store, north.site, "north") == 1, WAIT_S)
    drain(watcher)
    drain(watcher)  # seen twice: an online committed a moment later by another worker is not this
    (row,) = watcher.board.rows()
    assert (row.state, row.status_contradicted) == ("online", True)
    (offline,) = [a for a in watcher.alarms.list() if a.kind == AlarmKind.GATE_OFFLINE.value]
    assert not offline.open and offline.acked_by == CONSOLE_ACTOR and "forged" in (offline.note or "")
    (stats,) = store.stats(contradict_grace_s=0.5).gates
    assert (stats.state, stats.reported_state, stats.status_contradicted) == ("online", "offline", True)


def test_a_gate_cannot_speak_for_another(store, ingestor, unique_name, north):
    """Only about itself: another gate's topic is refused by the broker, another gate's name by the console."""
    south = GateTopics(unique_name, "south")
    forged = GateStatus(state=GateState.OFFLINE, site=unique_name, gate="south", boot=BOOT, time=NOW)
    assert north.client.publish(south.status, encode(forged), retain=True).is_failure  # ACL: not authorized
    assert north.client.publish(north.topics.status, encode(forged), retain=True).value == 0
    assert wait_until(lambda: store.stats().rejections.get("topic_mismatch") == 1, WAIT_S)
    assert [g.gate for g in store.stats().gates] == []
