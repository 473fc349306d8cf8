"""Fifty real gates in one process through a broker restart: nothing lost, nothing twice, one alarm.

The gates are simulator/fleet.py's (real outbox, link with its own certificate and will,
decision; one shared network thread); the console is the real ingest worker process and
the web console's watcher, which raises the alarms.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from broker.launcher import Broker
from console.alarms import AlarmBook
from console.ingest import IngestWorkers, WorkerSpec
from console.store import EventStore
from console.web.hub import GateBoard, Hub, Watcher
from simulator.fleet import Fleet
from simulator.scenario import resident_codes

GATES = 50
GRACE_S = 8.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def wait(condition, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def stored_once(store: EventStore, site: str, taken: dict[str, int]) -> int:
    """Assert every gate's events ``1..taken[gate]`` are in the store exactly once; return how many."""
    rows = store.db.query(
        "SELECT gate, COUNT(*), COUNT(DISTINCT seq), MAX(seq) FROM events WHERE site = ? GROUP BY gate",
        (site,),
    )
    stored = {gate: (int(n), int(seqs), int(top)) for gate, n, seqs, top in rows}
    for gate, last in taken.items():
        n, seqs, top = stored[gate]
        assert n == seqs, f"{gate}: {n - seqs} duplicated"
        assert seqs == top == last, f"{gate}: {last - seqs} lost"
    assert sum(n for n, _, _ in stored.values()) == sum(taken.values()), "events of gates not taken"
    return sum(taken.values())


def test_a_broker_restart_under_fifty_gates_loses_nothing_and_raises_one_alarm(tmp_path: Path):
    site = "fleet"
    broker = Broker(tmp_path / "broker", gates=GATES)
    creds = broker.add_gates(site, [f"g{i:02d}" for i in range(GATES)])
    console_creds = broker.add_console("fleet")
    broker.start()
    path = tmp_path / "events.db"
    workers = IngestWorkers(WorkerSpec(broker.endpoint(console_creds), str(path), name="fleet", site=site), 1)
    store: EventStore | None = None
    watcher: Watcher | None = None
    fleet: Fleet | None = None
    try:
        workers.start()
        assert workers.wait_ready(60)
        store = EventStore(path)
        alarms = AlarmBook(store.db)
        watcher = Watcher(store, store.db, alarms, Hub(), GateBoard())
        watcher.outages.grace_s = GRACE_S
        watcher.start()
        fleet = Fleet(tmp_path / "gates", site, creds, broker.endpoint, codes=resident_codes(100))
        assert threading.active_count() < GATES, "the gates share threads"
        fleet.start()
        assert fleet.wait(lambda: fleet.connected() == GATES, 60)
        fleet.run_load(2.0)
        assert fleet.wait(lambda: fleet.backlog() == 0, 60), "the console acknowledged every event"
        before = {alarm.row_id for alarm in alarms.list(limit=1000)}

        stop = threading.Event()
        load = threading.Thread(target=fleet.run_load, args=(600.0,), kwargs={"stop": stop}, daemon=True)
        load.start()
        time.sleep(1.0)
        broker.stop()
        time.sleep(3.0)  # down long enough for the watcher to see the wills before the gates return
        broker.start()
        assert fleet.wait(lambda: fleet.connected() == GATES, 90), "every gate reconnects by itself"
        time.sleep(1.0)
        stop.set()
        load.join(30)
        assert fleet.wait(lambda: fleet.backlog() == 0, 90), "every backlog drains"
        time.sleep(watcher.outages.hold_s + GRACE_S + 3)  # a gate still offline would raise by now

        raised = [alarm.kind for alarm in alarms.list(limit=1000) if alarm.row_id not in before]
        assert sorted(raised) == ["broker.outage"], raised
        # How many wills reach the console before its own connection drops is mosquitto's timing
        # (all 50 in most runs, fewer in one CI run of 17 minutes' load); that they were held and
        # dropped, not raised, is the property — the single alarm above is its proof.
        assert watcher.outages.suppressed >= 1, "the gates' wills were held, then dropped"

        taken = fleet.last_seqs()
        assert stored_once(store, site, taken) > GATES
    finally:
        if fleet is not None:
            fleet.stop()
        if watcher is not None:
            watcher.stop()
        workers.stop()
        if store is not None:
            store.close()
        broker.stop()


def test_thirty_gates_move_to_the_twin_broker_when_theirs_is_killed_and_lose_nothing(tmp_path: Path):
    """The fleet's failover phase (bench/fleet.py): the gates' broker SIGKILLed under load with a
    twin beside it that the console also reads; every gate moves, nothing lost or stored twice."""
    from broker.twin import copy_identity
    from console.brokers import BrokerIngest

    site, gates = "fleet", 30
    first = Broker(tmp_path / "a", gates=gates)
    creds = first.add_gates(site, [f"g{i:02d}" for i in range(gates)])
    console_creds = first.add_console("fleet")
    copy_identity(first.state_dir, tmp_path / "b")
    second = Broker(tmp_path / "b", gates=gates)
    first.start()
    second.start()
    store = EventStore(tmp_path / "events.db")
    ingest = BrokerIngest([first.endpoint(console_creds), second.endpoint(console_creds)], store, site=site)
    fleet: Fleet | None = None
    try:
        ingest.start()
        assert ingest.wait_connected(60)
        fleet = Fleet(tmp_path / "gates", site, creds, first.endpoint, codes=resident_codes(100))
        fleet.start()
        assert fleet.wait(lambda: fleet.connected() == gates, 60)
        fleet.add_broker(second.endpoint)
        assert fleet.on_broker(0) == gates, "listing a second broker does not move a gate"
        stop = threading.Event()
        load = threading.Thread(target=fleet.run_load, args=(600.0,), kwargs={"stop": stop}, daemon=True)
        load.start()
        time.sleep(1.5)
        first.kill()
        assert fleet.wait(lambda: fleet.on_broker(1) == gates, 60), "every gate moved to the twin"
        time.sleep(1.0)
        stop.set()
        load.join(30)
        assert fleet.wait(lambda: fleet.backlog() == 0, 60), "every event acknowledged through the twin"
        assert stored_once(store, site, fleet.last_seqs()) > gates
    finally:
        if fleet is not None:
            fleet.stop()
        ingest.stop()
        store.close()
        first.stop()
        second.stop()


def test_gates_spread_over_processes_lose_nothing_through_a_broker_restart(tmp_path: Path):
    """The fleet split over two processes (simulator/fleet.py ``FleetProcesses``, what the
    1,000-gate bench runs): every gate's events stored exactly once, through a broker
    restart under a load that is stopped from here, and the sums answered across both."""
    import os

    from simulator.fleet import FleetProcesses

    site, gates = "fleet", 16
    broker = Broker(tmp_path / "broker", gates=gates)
    creds = broker.add_gates(site, [f"g{i:02d}" for i in range(gates)])
    console_creds = broker.add_console("fleet")
    broker.start()
    path = tmp_path / "events.db"
    workers = IngestWorkers(WorkerSpec(broker.endpoint(console_creds), str(path), name="fleet", site=site), 1)
    fleet: FleetProcesses | None = None
    store: EventStore | None = None
    try:
        workers.start()
        assert workers.wait_ready(60)
        fleet = FleetProcesses(
            tmp_path / "gates", site, creds, broker.endpoint, codes=resident_codes(100), processes=2
        )
        assert len(fleet) == gates and len(fleet.pids) == 2 and os.getpid() not in fleet.pids
        fleet.start()
        assert fleet.wait(lambda: fleet.connected() == gates, 60)
        first = fleet.run_load(1.5, per_gate_per_s=2.0)
        assert first["taken"] > gates and first["start_lag_p99_ms"] is not None
        marks = fleet.marks()
        assert sum(marks.values()) >= first["taken"]

        stop = threading.Event()
        load = threading.Thread(
            target=fleet.run_load, args=(600.0,), kwargs={"per_gate_per_s": 2.0, "stop": stop}, daemon=True
        )
        load.start()
        time.sleep(1.0)
        broker.stop()
        time.sleep(1.0)
        broker.start()
        assert fleet.wait(lambda: fleet.connected() == gates, 90), "every gate reconnects by itself"
        time.sleep(1.0)
        stop.set()
        load.join(30)
        assert not load.is_alive(), "the load stopped when told"
        assert fleet.wait(lambda: fleet.backlog() == 0, 90), "every backlog drains"
        assert fleet.acked_through(fleet.marks())
        fleet.add_broker(broker.endpoint)  # each child's gates list a second broker: here the same one
        assert fleet.on_broker(0) == gates and fleet.on_broker(1) == 0

        store = EventStore(path)
        taken = fleet.last_seqs()
        assert sorted(taken) == sorted(f"g{i:02d}" for i in range(gates))
        assert stored_once(store, site, taken) == fleet.taken() > first["taken"]
    finally:
        if fleet is not None:
            fleet.stop()
        workers.stop()
        if store is not None:
            store.close()
        broker.stop()
