"""Say what has not arrived: events held at the gates, and states the console can no longer vouch for.

The case of issue 12: the demo's broker SIGKILLed and left down for its last minute, and
its closing summary (``console stats``) printed ``0 missing`` and every gate ``online``
while a minute of events sat in the gates' outboxes.  Here with a real mosquitto killed
under a real ingestor, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from console.cli import format_stats
from console.ingest import Ingestor
from console.store import LINK_STALE_S, EventStore
from protocol import GateState, GateStatus, GateTopics, encode
from tests.waiting import wait_until

WAIT_S = 10.0
BOOT = "b" * 32


@pytest.fixture
def store(db_url: str | Path) -> Iterator[EventStore]:
    with EventStore(db_url) as instance:
        yield instance


def online(site: str, gate: str, backlog: int) -> bytes:
    return encode(
        GateStatus(
            state=GateState.ONLINE, site=site, gate=gate, boot=BOOT, time=datetime.now(UTC), backlog=backlog
        )
    )


def feed(broker, site: str, mqtt_client_factory, make_events, gates=("north", "east")) -> None:
    for name in gates:
        client = mqtt_client_factory(broker.add_gate(site, name))
        topics = GateTopics(site, name)
        client.publish(topics.status, online(site, name, backlog=3), retain=True)
        for event in make_events(site, name, range(1, 11)):
            client.publish(topics.event, encode(event))


def settled(store: EventStore, gates: int) -> bool:
    stats = store.stats()
    return len(stats.gates) == gates and all(g.count == 10 and g.state == "online" for g in stats.gates)


def test_a_killed_broker_leaves_the_summary_unconfirmed_not_online(
    broker, store, unique_name, mqtt_client_factory, make_events, capsys
):
    ingestor = Ingestor(broker.endpoint(broker.add_console("main")), store, name="main").start()
    try:
        assert ingestor.wait_connected(WAIT_S)
        feed(broker, unique_name, mqtt_client_factory, make_events)
        assert wait_until(lambda: settled(store, 2), WAIT_S)
        live = store.stats()
        assert live.confirmed and all(g.state_confirmed for g in live.gates)
        assert all(line.split()[8] == "online" for line in format_stats(live).splitlines()[1:3])

        broker.kill()  # SIGKILL, left down
        assert wait_until(lambda: (link := store.link_state()) is not None and not link.connected, WAIT_S)
    finally:
        ingestor.stop()
    stats = store.stats()
    summary = format_stats(stats)
    print(summary)
    lines = summary.splitlines()
    assert not stats.confirmed and stats.link is not None and stats.link.state.value == "lost"
    for gate in stats.gates:
        assert gate.state == "online" and not gate.state_confirmed
        assert gate.unconfirmed_since == stats.link.since
        assert (gate.held, gate.missing) == (3, 0) and gate.held_reported_at is not None
    rows = lines[1:3]
    assert all("online? unconfirmed since" in row for row in rows), rows
    assert all(" online " not in f" {row} " for row in rows)  # never a bare "online"
    assert "6 held at 2 gates as last reported (unconfirmed)" in lines[-2]
    assert lines[-1].startswith("UNCONFIRMED since ") and "lost its broker connection" in lines[-1]

    as_json = json.loads(json.dumps(stats.to_dict()))
    assert as_json["confirmed"] is False and as_json["link"]["state"] == "lost"
    assert [(g["held"], g["state_confirmed"]) for g in as_json["gates"]] == [(3, False), (3, False)]


def test_a_console_that_died_silently_is_unconfirmed_from_its_last_heartbeat(
    broker, store, unique_name, mqtt_client_factory, make_events
):
    with Ingestor(broker.endpoint(broker.add_console("main")), store, name="main") as ingestor:
        assert ingestor.wait_connected(WAIT_S)
        feed(broker, unique_name, mqtt_client_factory, make_events, gates=("north",))
        assert wait_until(lambda: settled(store, 1), WAIT_S)
        link = store.link_state()
        assert link is not None and link.connected
        # SIGKILL leaves the link saying "connected": its heartbeat going stale is what tells
        later = datetime.now(UTC) + timedelta(seconds=LINK_STALE_S + 60)
        (north,) = store.stats(now=later).gates
        assert not north.state_confirmed and north.unconfirmed_since == link.confirmed_at
        assert "died or hung" in format_stats(store.stats(now=later)).splitlines()[-1]


def test_a_clean_stop_reports_states_as_of_the_stop(
    broker, store, unique_name, mqtt_client_factory, make_events
):
    site = unique_name
    with Ingestor(broker.endpoint(broker.add_console("main")), store, name="main") as ingestor:
        assert ingestor.wait_connected(WAIT_S)
        client = mqtt_client_factory(broker.add_gate(site, "north"))
        stopped = GateStatus(
            state=GateState.STOPPED, site=site, gate="north", boot=BOOT, time=datetime.now(UTC), backlog=0
        )
        client.publish(GateTopics(site, "north").status, encode(stopped), retain=True)
        assert wait_until(lambda: [g.state for g in store.stats().gates] == ["stopped"], WAIT_S)
    stats = store.stats()
    (north,) = stats.gates
    assert stats.link is not None and stats.link.state.value == "stopped"
    lines = format_stats(stats).splitlines()
    assert "stopped at " in lines[1] and "?" not in lines[1]  # the gate said so itself
    assert lines[-1].startswith("As of ") and "when the console stopped" in lines[-1]
    assert north.held == 0


def test_a_will_keeps_the_backlog_the_gate_last_reported(store):
    """An ``offline`` will carries no backlog: what the gate said before it went stays, with its time."""
    said = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    store.commit(
        statuses=[
            GateStatus(state=GateState.ONLINE, site="s1", gate="north", boot=BOOT, time=said, backlog=5)
        ]
    )
    will = GateStatus(
        state=GateState.OFFLINE, site="s1", gate="north", boot=BOOT, time=said + timedelta(hours=1)
    )
    store.commit(statuses=[will])
    (north,) = store.stats().gates
    assert (north.state, north.held, north.held_reported_at) == ("offline", 5, "2026-11-29T10:00:00.000000Z")
