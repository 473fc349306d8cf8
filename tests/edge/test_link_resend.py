"""A message lost between gate and console, with no reconnect, still reaches the store — once.

A man in the middle on loopback swallows one event's PUBLISH and answers it with a
PUBACK, as a broker that took it and then lost it would.  The gate's paho client is
satisfied and nothing downstream ever sees the event; only the console's Ack (or its
absence) can tell.  The link must notice and send it again while later events keep
flowing, and long before any reconnect.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest

from console.ingest import Ingestor
from console.store import EventStore
from edge.link import Link
from edge.outbox import Outbox
from protocol import GateTopics
from protocol.mqtt import BrokerEndpoint
from simulator.mitm import MqttProxy, Packet
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

RESEND_AFTER_S = 15.0
OVERTAKEN_S = 1.0
LOST_SEQ = 40


def stored_seqs(store: EventStore, site: str, gate: str) -> list[int]:
    return [
        row[0]
        for row in store.db.query(
            "SELECT seq FROM events WHERE site = ? AND gate = ? ORDER BY seq", (site, gate)
        )
    ]


def test_an_event_lost_mid_stream_is_resent_while_later_ones_flow(broker, tmp_path, unique_name):
    site, gate = unique_name, "north"
    console = broker.add_console("main")
    creds = broker.add_gate(site, gate)
    topics = GateTopics(site, gate)
    lost_at: list[float] = []

    def swallow(packet: Packet, from_client: bool) -> bool:
        if not from_client or packet.topic != topics.event or lost_at:
            return False
        if json.loads(packet.payload)["seq"] != LOST_SEQ:
            return False
        lost_at.append(time.monotonic())
        return True

    with (
        MqttProxy((broker.host, broker.port), swallow) as proxy,
        EventStore(tmp_path / "events.db") as store,
        Ingestor(broker.endpoint(console), store, site=site) as ingestor,
        Outbox(tmp_path / "outbox.db", site=site, gate=gate) as outbox,
    ):
        assert ingestor.wait_connected(10)
        link = Link(
            BrokerEndpoint("127.0.0.1", proxy.port, creds.username, creds.password),
            topics,
            outbox,
            resend_after_s=RESEND_AFTER_S,
            resend_overtaken_s=OVERTAKEN_S,
        )
        link.start()
        try:
            assert link.wait_connected(10)
            total = 300
            stop = threading.Event()

            def scan() -> None:  # a steady stream: 50 scans a second for 6 s
                for i in range(1, total + 1):
                    if stop.is_set():
                        return
                    outbox.append(
                        "access.scan", {"code": f"{i:06d}"}, time=datetime.now(UTC), clock_trusted=True
                    )
                    time.sleep(0.02)

            scanner = threading.Thread(target=scan, daemon=True)
            scanner.start()
            assert wait_until(lambda: LOST_SEQ in stored_seqs(store, site, gate), 30), "never resent"
            filled_after = time.monotonic() - lost_at[0]
            later_meanwhile = [s for s in stored_seqs(store, site, gate) if s > LOST_SEQ]
            scanner.join(30)
            assert wait_until(lambda: len(stored_seqs(store, site, gate)) >= total, 30)
        finally:
            stop.set()
            link.stop()
        assert len(proxy.swallowed) == 1
        assert stored_seqs(store, site, gate) == list(range(1, total + 1)), "every seq once, no gap"
        assert filled_after < RESEND_AFTER_S, f"hole filled after {filled_after:.1f} s"
        assert len(later_meanwhile) > 10, "later events kept flowing while the hole was open"
        assert link.connects == 1 and proxy.connections == 1, "no reconnect was needed"
        assert link.resent >= 1
        assert outbox.backlog == 0
