"""Several ingest processes on one $share group: a worker killed mid-stream loses nothing, stores nothing twice."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from console.ingest import Ingestor, IngestWorkers, WorkerSpec, share_group_name, sweep_worker_sessions
from console.store import EventStore
from protocol import GateTopics, encode
from tests.waiting import wait_until

WAIT_S = 60.0


def totals(store: EventStore) -> tuple[int, int, int]:
    """(rows, distinct (gate, seq) pairs, missing) over every gate."""
    stats = store.stats()
    return stats.total_events, sum(g.distinct_seqs for g in stats.gates), stats.total_missing


def test_two_workers_survive_kills_and_store_each_event_once(
    broker, db_url, unique_name, mqtt_client_factory, make_events
):
    site = unique_name
    console = broker.add_console("main")
    gates = ("north", "east", "west")
    per_gate = 1500
    spec = WorkerSpec(broker.endpoint(console), str(db_url), name="main", site=site, log_level="WARNING")
    store = EventStore(db_url)  # created (migrated) before the workers race to open it
    workers = IngestWorkers(spec, 2).start()
    try:
        assert workers.wait_ready(WAIT_S)
        clients = {}
        for gate in gates:
            client = mqtt_client_factory(broker.add_gate(site, gate))
            client.subscribe(GateTopics(site, gate).ack)
            clients[gate] = client
        events = {gate: make_events(site, gate, range(1, per_gate + 1)) for gate in gates}

        def publish(gate: str) -> None:
            topic = GateTopics(site, gate).event
            infos = [clients[gate].client.publish(topic, encode(e), qos=1) for e in events[gate]]
            for info in infos:
                info.wait_for_publish(WAIT_S)

        publishers = [threading.Thread(target=publish, args=(gate,)) for gate in gates]
        for thread in publishers:
            thread.start()
        # kill each worker once, mid-stream, the hard way (no chance to finish a batch)
        for index in (1, 0):
            assert wait_until(lambda: totals(store)[0] > 0, WAIT_S)
            pid = workers.pids()[index]
            os.kill(pid, signal.SIGKILL)
            assert wait_until(lambda i=index, p=pid: workers.pids()[i] != p and workers.alive() == 2, WAIT_S)
        for thread in publishers:
            thread.join(WAIT_S)
        expected = len(gates) * per_gate
        assert wait_until(lambda: totals(store) == (expected, expected, 0), WAIT_S), totals(store)
        assert workers.restarts == 2
        # every seq of every gate was acknowledged to its gate, whichever worker stored it
        for gate in gates:
            acked: set[int] = set()
            from protocol import decode_ack

            while len(acked) < per_gate:
                message = clients[gate].get(WAIT_S)
                assert message is not None, f"{gate}: {per_gate - len(acked)} seqs never acknowledged"
                for first, last in decode_ack(message.payload).iter_ranges():
                    acked.update(range(first, last + 1))
            assert acked == set(range(1, per_gate + 1))
    finally:
        workers.stop()
        store.close()
    assert workers.alive() == 0


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
        assert sweep_worker_sessions(endpoint, "main", keep=1) == 63
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
    """mosquitto grants any client a $share subscription and drops what it may not read; the group name is secret."""
    site = unique_name
    console = broker.add_console("main")
    endpoint = broker.endpoint(console)
    thief = mqtt_client_factory(broker.add_gate(site, "thief"))
    assert thief.subscribe("$share/console-main/gatepost/v1/+/+/event").value == 1  # the obvious guess
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


@pytest.mark.parametrize("count", [0, 65])
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
        watcher = mqtt_client_factory(creds)
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
