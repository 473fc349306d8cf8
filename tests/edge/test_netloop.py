"""Many links on one network thread (edge/netloop.py): each its own session, back after a broker restart."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.link import Link
from edge.netloop import SharedNetwork
from edge.outbox import Outbox
from edge.writers import WriterPool
from protocol import GateTopics, decode_event

pytestmark = pytest.mark.timeout(90)

LINKS = 6


def wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_links_on_one_thread_publish_and_come_back_after_a_broker_restart(
    broker, mqtt_client_factory, unique_name, tmp_path: Path
):
    site = unique_name
    creds = broker.add_gates(site, [f"g{i}" for i in range(LINKS)])
    console = mqtt_client_factory(broker.add_console(f"c{unique_name[:8]}"))
    console.subscribe(f"gatepost/v1/{site}/+/event")
    network, pool = SharedNetwork("test-net"), WriterPool(2)
    before = threading.active_count()
    outboxes = [Outbox(tmp_path / f"{i}.db", site=site, gate=f"g{i}", writers=pool) for i in range(LINKS)]
    links = [
        Link(broker.endpoint(c), GateTopics(site, f"g{i}"), outboxes[i], network=network)
        for i, c in enumerate(creds)
    ]
    try:
        for link in links:
            link.start()
        assert threading.active_count() - before <= 4, "no thread per link (a connector or two at most)"
        assert wait(lambda: all(link.connected for link in links), 20)
        for box in outboxes:
            box.append("access.scan", {"n": 1}, time=datetime.now(UTC), clock_trusted=True)
        got = {decode_event(console.get(10).payload).gate for _ in range(LINKS)}
        assert got == {f"g{i}" for i in range(LINKS)}, "every link published on the shared thread"

        broker.restart()
        assert wait(lambda: all(link.connected for link in links), 40), "each reconnects by itself"
        assert min(link.connects for link in links) >= 2
        console = mqtt_client_factory(
            broker.add_console(f"d{unique_name[:8]}")
        )  # the first one's session went
        console.subscribe(f"gatepost/v1/{site}/+/event")
        for box in outboxes:
            box.append("access.scan", {"n": 2}, time=datetime.now(UTC), clock_trusted=True)
        seen = set()
        deadline = time.monotonic() + 20
        while len(seen) < LINKS and time.monotonic() < deadline:
            message = console.get(1)
            if message is not None:
                event = decode_event(message.payload)
                if event.data.get("n") == 2:
                    seen.add(event.gate)
        assert len(seen) == LINKS, "every link publishes again after the restart"
    finally:
        for link in links:
            link.stop(timeout=2)
        for box in outboxes:
            box.close()
        network.close()
        pool.close()
