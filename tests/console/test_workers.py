"""Several ingest processes on one $share group: a worker killed mid-stream loses nothing, stores nothing twice."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime

import pytest

from console.ingest import (
    MAX_WORKERS,
    Ingestor,
    IngestWorkers,
    WorkerSpec,
    share_group_name,
    sweep_worker_sessions,
)
from console.store import EventStore
from edge.link import Link
from edge.outbox import Outbox
from protocol import GateTopics, encode
from tests.waiting import wait_until

WAIT_S = 60.0


def totals(store: EventStore) -> tuple[int, int, int]:
    """(rows, distinct (gate, seq) pairs, missing) over every gate."""
    stats = store.stats()
    return stats.total_events, sum(g.distinct_seqs for g in stats.gates), stats.total_missing


class Gate:
    """A real gate's sending side: its outbox and MQTT link, fed scans from a thread."""

    def __init__(self, broker, tmp_path, site: str, gate: str) -> None:
        creds = broker.add_gate(site, gate)
        self.outbox = Outbox(tmp_path / f"{gate}.outbox.db", site=site, gate=gate)
        self.link = Link(broker.endpoint(creds), GateTopics(site, gate), self.outbox, resend_overtaken_s=1.0)
        self.thread: threading.Thread | None = None

    def start(self, count: int, per_s: float) -> Gate:
        self.link.start()
        assert self.link.wait_connected(10)

        def scan() -> None:
            for i in range(count):
                self.outbox.append(
                    "access.scan", {"code": f"{i:06d}"}, time=datetime.now(UTC), clock_trusted=True
                )
                time.sleep(1 / per_s)

        self.thread = threading.Thread(target=scan, daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        if self.thread is not None:
            self.thread.join(60)
        self.link.stop()
        self.outbox.close()


def test_two_workers_survive_kills_and_store_each_event_once(broker, db_url, unique_name, tmp_path):
    """Each worker SIGKILLed once mid-stream and restarted: every event stored once, every one acknowledged.

    The gates are real outboxes and links: an event a killed worker held is redelivered by
    the broker to the restarted worker, or — where mosquitto strands it — resent by the gate.
    """
    site = unique_name
    console = broker.add_console("main")
    names = ("north", "east", "west")
    per_gate = 1500
    spec = WorkerSpec(broker.endpoint(console), str(db_url), name="main", site=site, log_level="WARNING")
    store = EventStore(db_url)  # created (migrated) before the workers race to open it
    workers = IngestWorkers(spec, 2).start()
    gates = [Gate(broker, tmp_path, site, name) for name in names]
    try:
        assert workers.wait_ready(WAIT_S)
        for gate in gates:
            gate.start(per_gate, per_s=500)
        # kill each worker once, mid-stream, the hard way (no chance to finish a batch)
        for index in (1, 0):
            assert wait_until(lambda: totals(store)[0] > 0, WAIT_S)
            pid = workers.pids()[index]
            os.kill(pid, signal.SIGKILL)
            assert wait_until(lambda i=index, p=pid: workers.pids()[i] != p and workers.alive() == 2, WAIT_S)
        expected = len(names) * per_gate
        assert wait_until(lambda: totals(store) == (expected, expected, 0), WAIT_S), totals(store)
        assert workers.restarts == 2
        # every event acknowledged to its gate, whichever worker stored it: the outboxes are empty
        assert wait_until(lambda: all(gate.outbox.backlog == 0 for gate in gates), WAIT_S)
        assert [gate.link.connects for gate in gates] == [1, 1, 1]
    finally:
        for gate in gates:
            gate.close()
        workers.stop()
        store.close()
    assert workers.alive() == 0


def test_a_worker_that_dies_holding_events_loses_none_and_no_gate_reconnects(
    broker, db_url, unique_name, tmp_path
):
    """A $share member dies with events delivered to it and its session is lost with them.

    The other worker stays up.  Nothing but the gates' own resends can bring those
    events back (no gate disconnects, so no whole-stream replay): each is stored once.
    """
    import multiprocessing

    from console.ingest import _worker_main

    site = unique_name
    console = broker.add_console("main")
    endpoint = broker.endpoint(console)
    spec = WorkerSpec(endpoint, str(db_url), name="main", site=site, log_level="WARNING")
    store = EventStore(db_url)
    survivor = Ingestor(
        endpoint,
        EventStore(db_url),
        name="main",
        site=site,
        share_group=share_group_name("main", endpoint.password),
        shared=True,
    ).start()
    context = multiprocessing.get_context("spawn")
    ready, ready_child = context.Pipe(duplex=False)
    doomed = context.Process(target=_worker_main, args=(spec, 1, 2, ready_child), daemon=True)
    doomed.start()
    ready_child.close()
    gates = [Gate(broker, tmp_path, site, name) for name in ("north", "east")]
    per_gate = 600
    try:
        assert survivor.wait_connected(WAIT_S) and ready.poll(WAIT_S)
        for gate in gates:
            gate.start(per_gate, per_s=200)
        assert wait_until(lambda: totals(store)[0] > 200, WAIT_S)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.join(10)
        time.sleep(0.5)  # the broker goes on giving the dead member its share meanwhile
        assert sweep_worker_sessions(endpoint, keep=1) >= 1  # ...and its session, with them, is gone
        expected = len(gates) * per_gate
        assert wait_until(lambda: totals(store) == (expected, expected, 0), WAIT_S), totals(store)
        assert wait_until(lambda: all(gate.outbox.backlog == 0 for gate in gates), WAIT_S)
        assert [gate.link.connects for gate in gates] == [1, 1], "no gate reconnected"
        assert sum(gate.link.resent for gate in gates) > 0, "the stranded events came back by resend"
    finally:
        for gate in gates:
            gate.close()
        survivor.stop()
        survivor.store.close()
        if doomed.is_alive():
            doomed.kill()
        store.close()


def test_shared_and_plain_modes_swap_without_double_delivery(
    broker, tmp_path, unique_name, mqtt_client_factory, make_events
):
    """Going from 2 workers back to 1: worker 0's old $share subscription is dropped, the spare session ended."""
    site = unique_name
    console = broker.add_console("main")
    endpoint = broker.endpoint(console)
    group = share_group_name("main", endpoint.password)
    with EventStore(tmp_path / "events.db") as store:
        for shared in (True, False):
            with Ingestor(
                endpoint, store, name="main", site=site, share_group=group, shared=shared
            ) as ingestor:
                assert ingestor.wait_connected(10)
        assert sweep_worker_sessions(endpoint, keep=1) == MAX_WORKERS - 1
        gate = mqtt_client_factory(broker.add_gate(site, "north"))
        for event in make_events(site, "north", range(1, 51)):
            gate.client.publish(GateTopics(site, "north").event, encode(event), qos=1).wait_for_publish(10)
        with Ingestor(endpoint, store, name="main", site=site, share_group=group) as ingestor:
            assert ingestor.wait_connected(10)
            assert wait_until(lambda: ingestor.counters.committed == 50, 10)
            time.sleep(0.3)  # a second copy through a stale subscription would arrive within this
            assert ingestor.counters.duplicates == 0


def test_a_client_outside_the_acl_cannot_take_a_share(
    broker, tmp_path, unique_name, mqtt_client_factory, make_events
):
    """Only the console's role may subscribe to $share/… (tests/broker/test_takeover.py tries every guess)."""
    site = unique_name
    console = broker.add_console("main")
    endpoint = broker.endpoint(console)
    thief = mqtt_client_factory(broker.add_gate(site, "thief"))
    assert thief.subscribe("$share/console-main/gatepost/v1/+/+/event").value == 0x87  # the obvious guess
    assert (
        thief.subscribe(f"$share/{share_group_name('main', endpoint.password)}/gatepost/v1/+/+/event").value
        == 0x87
    )
    with EventStore(tmp_path / "events.db") as store:
        group = share_group_name("main", endpoint.password)
        assert group != "console-main"
        with Ingestor(endpoint, store, name="main", site=site, share_group=group, shared=True) as ingestor:
            assert ingestor.wait_connected(10)
            gate = mqtt_client_factory(broker.add_gate(site, "north"))
            for event in make_events(site, "north", range(1, 21)):
                gate.client.publish(GateTopics(site, "north").event, encode(event), qos=1).wait_for_publish(
                    10
                )
            assert wait_until(lambda: ingestor.counters.committed == 20, 10)
    assert thief.get(0.2) is None


@pytest.mark.parametrize("count", [0, MAX_WORKERS + 1])
def test_worker_count_is_bounded(count, broker):
    with pytest.raises(ValueError):
        IngestWorkers(WorkerSpec(broker.endpoint(), "x.db"), count)


def test_console_run_with_two_workers_stores_and_stops_cleanly(
    tmp_path, broker, unique_name, mqtt_client_factory, make_events
):
    """The operator's view: ``gatepost console run --workers 2``, then SIGTERM; every event stored once."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    site = unique_name
    creds = broker.add_console("console")
    (tmp_path / "console.secret").write_text(creds.password)
    db = tmp_path / "events.db"
    config = tmp_path / "console.toml"
    config.write_text(
        f'site = "{site}"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nusername = "{creds.username}"\n'
        f'password_file = "console.secret"\n[store]\npath = "{db}"\n[web]\nenabled = false\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatepost", "console", "run", "--config", str(config), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert wait_until(lambda: db.exists(), 30)
        gate = mqtt_client_factory(broker.add_gate(site, "north"))
        watcher = mqtt_client_factory(creds, "watch")  # console.console itself is worker 0's
        watcher.subscribe(f"gatepost/v1/{site}/$console/status")
        assert wait_until(lambda: (m := watcher.get(0.5)) is not None and b'"online"' in m.payload, 30)
        for event in make_events(site, "north", range(1, 301)):
            gate.client.publish(GateTopics(site, "north").event, encode(event), qos=1)
        with EventStore(db, readonly=True) as reader:
            assert wait_until(lambda: totals(reader) == (300, 300, 0), 30), totals(reader)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        output = proc.stdout.read() if proc.stdout else ""
    assert "Traceback" not in output, output


def test_changing_between_shared_and_plain_leaves_no_moment_without_a_subscription(
    broker, tmp_path, unique_name, mqtt_client_factory, make_events
):
    """The new filter is subscribed before the old one is dropped: an event published while the
    console changes mode reaches it without waiting for the gate to resend (bench/fleet.py lost two
    of 200 gates' events to that gap when going from one worker to two, until their resend)."""
    site = unique_name
    console = broker.add_console("main")
    endpoint = broker.endpoint(console)
    group = share_group_name("main", endpoint.password)
    gate = mqtt_client_factory(broker.add_gate(site, "north"))
    topic = GateTopics(site, "north").event
    events = make_events(site, "north", range(1, 6001))
    stop = threading.Event()

    def flood() -> None:  # QoS 1 without any resend: what the broker drops is gone
        for event in events:
            if stop.is_set():
                return
            gate.client.publish(topic, encode(event), qos=1)
            time.sleep(0.0002)

    with EventStore(tmp_path / "events.db") as store:
        with Ingestor(endpoint, store, name="main", site=site, share_group=group) as ingestor:
            assert ingestor.wait_connected(10)
        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        try:
            for shared in (True, False, True, False, True, False):
                with Ingestor(
                    endpoint, store, name="main", site=site, share_group=group, shared=shared
                ) as ingestor:
                    assert ingestor.wait_connected(10)
                    time.sleep(0.2)
        finally:
            sender.join(30)
            stop.set()
        with Ingestor(endpoint, store, name="main", site=site, share_group=group) as ingestor:
            assert ingestor.wait_connected(10)
            assert wait_until(lambda: store.stats().total_events == len(events), 15), (
                f"{len(events) - store.stats().total_events} of {len(events)} events went to no subscription"
            )
