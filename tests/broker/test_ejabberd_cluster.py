"""An existing clustered MQTT broker, ejabberd's mod_mqtt, against what gatepost needs (docs/cluster.md).

Opt-in: skipped unless ejabberd is installed (Debian 12's 23.01 here; not in bootstrap's
packages) and the tests run as root.  Two nodes are clustered on loopback.  Each thing gatepost
relies on is checked across the two nodes.  The gap found (retained messages) is an
``xfail(strict=True)``, so the test suite says so if a later ejabberd closes it.  The
last test is the fleet's zero-loss check with a gate failing over between the nodes.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from console.ingest import Ingestor
from console.store import EventStore
from edge.link import Link
from edge.outbox import Outbox
from protocol import GateTopics
from protocol.mqtt import BrokerEndpoint
from tests.broker.ejabberd_nodes import Cluster, available
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(available() is not None, reason=str(available())),
]

GATE, GATE_PW = "gate.s1.g1", "gate-secret"
CONSOLE, CONSOLE_PW = "console.main", "console-secret"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    instance = Cluster()
    try:
        instance.start()
        instance.register(GATE, GATE_PW)
        instance.register(CONSOLE, CONSOLE_PW)
        yield instance
    finally:
        instance.stop()


class Client:
    """A bare paho MQTT 5 client that records CONNACK, SUBACK, disconnects and messages."""

    def __init__(self, port: int, client_id: str, user: str, password: str, **connect: object) -> None:
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.disconnects: queue.Queue[ReasonCode] = queue.Queue()
        connacks: queue.Queue[tuple[ReasonCode, paho.ConnectFlags]] = queue.Queue()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.client.username_pw_set(user, password)
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_subscribe = lambda _c, _u, _m, reasons, _p: self.subacks.put(reasons)
        self.client.on_disconnect = lambda _c, _u, _f, reason, _p: self.disconnects.put(reason)
        self.client.on_connect = lambda _c, _u, flags, reason, _p: connacks.put((reason, flags))
        will = connect.pop("will", None)
        if will is not None:
            self.client.will_set(*will, qos=1, retain=True)  # type: ignore[misc]
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(connect.pop("expiry", 0))  # type: ignore[call-overload]
        self.client.connect("127.0.0.1", port, 15, clean_start=connect.pop("clean", True), properties=props)  # type: ignore[arg-type]
        self.client.loop_start()
        self.reason, self.flags = connacks.get(timeout=10)
        assert not self.reason.is_failure, self.reason

    def subscribe(self, topic: str) -> list[ReasonCode]:
        self.client.subscribe(topic, 1)
        return self.subacks.get(timeout=10)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, 1, retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_will_published_on_one_node_reaches_a_subscriber_on_the_other(cluster, unique_name):
    first, second = cluster.nodes
    topic = f"gatepost/v1/{unique_name}/north/status"
    watcher = Client(first.port, f"watch{unique_name}", CONSOLE, CONSOLE_PW)
    assert watcher.subscribe(topic)[0].value == 1
    gate = Client(second.port, unique_name, GATE, GATE_PW, will=(topic, b"offline"))
    gate.client.loop_stop()
    gate.client.socket().shutdown(socket.SHUT_RDWR)  # the connection dies without a DISCONNECT
    message = watcher.messages.get(timeout=30)
    assert (message.topic, message.payload) == (topic, b"offline")
    watcher.close()


def test_a_qos1_session_queues_while_away_and_resumes_on_the_other_node(cluster, unique_name):
    first, second = cluster.nodes
    topic = f"gatepost/v1/{unique_name}/north/event"
    console = Client(first.port, f"c{unique_name}", CONSOLE, CONSOLE_PW, expiry=3600)
    console.subscribe(topic)
    console.close()
    gate = Client(second.port, f"g{unique_name}", GATE, GATE_PW)
    for i in range(20):
        gate.publish(topic, str(i).encode())
    console = Client(second.port, f"c{unique_name}", CONSOLE, CONSOLE_PW, expiry=3600, clean=False)
    assert console.flags.session_present
    received = [console.messages.get(timeout=10).payload for _ in range(20)]
    assert received == [str(i).encode() for i in range(20)]
    console.close()
    gate.close()


def test_a_shared_subscription_is_refused_with_a_disconnect(cluster, unique_name):
    """mod_mqtt_session:validate_subscribe answers ``$share/...`` with 'shared-subscriptions-not-supported'."""
    first, _ = cluster.nodes
    client = Client(first.port, f"s{unique_name}", CONSOLE, CONSOLE_PW)
    client.client.subscribe(f"$share/g{unique_name}/gatepost/v1/+/+/event", 1)
    reason = client.disconnects.get(timeout=10)
    assert reason.getName() == "Shared subscription not supported"
    assert client.subacks.empty()
    client.client.loop_stop()


@pytest.mark.xfail(
    strict=True,
    reason="mod_mqtt's index of retained topics is a node-local ETS table (mod_mqtt.erl, "
    "MQTT_TOPIC_CACHE, filled at node start and on local publishes): a retained message "
    "published on one node is not found by a subscriber on the other",
)
def test_a_retained_message_published_on_one_node_is_sent_to_a_subscriber_on_the_other(cluster, unique_name):
    first, second = cluster.nodes
    topic = f"gatepost/v1/{unique_name}/$site/cards"
    publisher = Client(second.port, f"p{unique_name}", CONSOLE, CONSOLE_PW)
    publisher.publish(topic, b"signed card list", retain=True)
    subscriber = Client(first.port, f"r{unique_name}", GATE, GATE_PW)
    subscriber.subscribe(topic)
    try:
        message = subscriber.messages.get(timeout=5)
    except queue.Empty:
        message = None
    finally:
        subscriber.close()
        publisher.close()
    assert message is not None and message.retain and message.payload == b"signed card list"


def test_gates_failing_over_between_nodes_lose_and_duplicate_nothing(cluster, tmp_path, unique_name):
    """The fleet's zero-loss check: a gate on node 2 streams, node 2 is SIGKILLed, the gate moves to node 1."""
    first, second = cluster.nodes
    site, gate, total, kill_at = unique_name, "g1", 300, 100
    with (
        EventStore(tmp_path / "events.db") as store,
        # On a cluster the console connects to one node: its session (and client id) is cluster-wide.
        Ingestor(BrokerEndpoint("127.0.0.1", first.port, CONSOLE, CONSOLE_PW), store, site=site) as ingest,
        Outbox(tmp_path / "outbox.db", site=site, gate=gate) as outbox,
    ):
        assert ingest.wait_connected(20)
        link = Link(
            BrokerEndpoint("127.0.0.1", second.port, GATE, GATE_PW),
            GateTopics(site, gate),
            outbox,
            resend_after_s=5.0,
            resend_overtaken_s=1.0,
            failover=[BrokerEndpoint("127.0.0.1", first.port, GATE, GATE_PW)],
        )
        link.start()
        taken = threading.Semaphore(0)

        def scan() -> None:
            for i in range(1, total + 1):
                outbox.append("access.scan", {"code": f"{i:06d}"}, time=datetime.now(UTC), clock_trusted=True)
                taken.release()
                time.sleep(0.01)

        try:
            assert link.wait_connected(20)
            scanner = threading.Thread(target=scan, daemon=True)
            scanner.start()
            for _ in range(kill_at):
                assert taken.acquire(timeout=30)
            killed_at = time.monotonic()
            second.kill()
            assert wait_until(lambda: link.connected and link.brokers.index == 1, 60), "gate never moved"
            print(f"ejabberd failover_s={time.monotonic() - killed_at:.3f}")
            scanner.join(60)
            assert wait_until(lambda: outbox.backlog == 0, 60), f"{outbox.backlog} never acknowledged"
        finally:
            link.stop()
        rows, distinct, low, high = store.db.query(
            "SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM events WHERE site = ? AND gate = ?",
            (site, gate),
        )[0]
        assert (rows, distinct, low, high) == (total, total, 1, total)
    second.start()  # it rejoins the cluster from its own spool
