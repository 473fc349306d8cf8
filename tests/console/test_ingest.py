"""The ingestor against a real mosquitto: stored once, acknowledged after the commit, never crashed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.ingest import Ingestor, parse_message
from console.store import EventStore
from protocol import (
    GateState,
    GateStatus,
    GateTopics,
    ProtocolError,
    RejectReason,
    decode_ack,
    decode_console_status,
    encode,
)
from protocol.messages import MAX_MESSAGE_BYTES
from protocol.topics import console_status_topic
from tests.waiting import wait_until

WAIT_S = 10.0


def stored(store: EventStore, site: str, gate: str) -> tuple[int, int, int]:
    """(rows, distinct seqs, missing) of one gate."""
    for g in store.stats().gates:
        if (g.site, g.gate) == (site, gate):
            return g.count, g.distinct_seqs, g.missing
    return 0, 0, 0


def acked_seqs(gate_client, expected: set[int], timeout: float = WAIT_S) -> set[int]:
    """Read Acks from the gate's ack subscription until they cover ``expected`` (or time runs out)."""
    covered: set[int] = set()
    deadline = time.monotonic() + timeout
    while not expected <= covered:
        message = gate_client.get(max(0.0, deadline - time.monotonic()))
        if message is None:
            break
        for first, last in decode_ack(message.payload).iter_ranges():
            covered.update(range(first, last + 1))
    return covered


def publish_all(gate_client, topic: str, payloads: list[bytes]) -> None:
    infos = [gate_client.client.publish(topic, payload, qos=1) for payload in payloads]
    for info in infos:
        info.wait_for_publish(WAIT_S)


@pytest.fixture
def site(unique_name: str) -> str:
    return unique_name


@pytest.fixture
def console_creds(broker):
    return broker.add_console("main")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(tmp_path / "console" / "events.db") as instance:
        yield instance


@pytest.fixture
def ingestor(broker, console_creds, store) -> Iterator[Ingestor]:
    with Ingestor(broker.endpoint(console_creds), store, name="main") as instance:
        assert instance.wait_connected(WAIT_S)
        yield instance


@pytest.fixture
def gate(broker, site, mqtt_client_factory):
    """A connected client with the north gate's credentials, subscribed to its ack topic."""
    creds = broker.add_gate(site, "north")
    client = mqtt_client_factory(creds)
    client.creds = creds
    client.topics = GateTopics(site, "north")
    assert client.subscribe(client.topics.ack).value == 1
    return client


def test_events_are_stored_once_and_every_one_is_acknowledged(ingestor, store, gate, site, make_events):
    events = make_events(site, "north", range(1, 401))
    publish_all(gate, gate.topics.event, [encode(e) for e in events])
    assert wait_until(lambda: stored(store, site, "north") == (400, 400, 0))
    assert acked_seqs(gate, set(range(1, 401))) == set(range(1, 401))

    # The gate never got those Acks (say): it resends everything; nothing new is stored,
    # and every resent seq is acknowledged again.
    publish_all(gate, gate.topics.event, [encode(e) for e in events[:250]])
    assert acked_seqs(gate, set(range(1, 251))) >= set(range(1, 251))
    assert wait_until(lambda: ingestor.counters.duplicates == 250)
    counters = ingestor.counters
    assert (counters.received, counters.committed, counters.rejected) == (650, 400, 0)
    assert counters.batches < 650  # group commit, not one transaction per message
    assert stored(store, site, "north") == (400, 400, 0)


def test_acks_go_to_each_gate_alone(ingestor, store, broker, site, mqtt_client_factory, make_events):
    gates = {}
    for name in ("east", "west"):
        client = mqtt_client_factory(broker.add_gate(site, name))
        client.topics = GateTopics(site, name)
        client.subscribe(client.topics.ack)
        gates[name] = client
    publish_all(
        gates["east"],
        gates["east"].topics.event,
        [encode(e) for e in make_events(site, "east", range(1, 31))],
    )
    publish_all(
        gates["west"], gates["west"].topics.event, [encode(e) for e in make_events(site, "west", [7, 8])]
    )
    assert acked_seqs(gates["east"], set(range(1, 31))) == set(range(1, 31))
    assert acked_seqs(gates["west"], {7, 8}) == {7, 8}
    assert gates["west"].get(0.3) is None
    stats = {g.gate: g for g in store.stats().gates}
    assert (stats["east"].count, stats["west"].count, stats["west"].missing) == (30, 2, 0)


def test_a_committed_event_is_visible_in_the_store_before_its_ack(ingestor, store, gate, site, make_events):
    seen_at_commit: list[int] = []
    ingestor.on_commit = lambda events, new: seen_at_commit.append(stored(store, site, "north")[0])
    events = make_events(site, "north", range(1, 21))
    publish_all(gate, gate.topics.event, [encode(e) for e in events])
    message = gate.get(WAIT_S)
    assert message is not None
    acked = {
        seq for first, last in decode_ack(message.payload).iter_ranges() for seq in range(first, last + 1)
    }
    # whatever the first Ack names is already in a second, independent connection to the file
    with EventStore(store.path, readonly=True) as reader:
        rows = {e.seq for e in reader.events_after(0, 1000) if e.gate == "north"}
    assert acked and acked <= rows
    assert wait_until(lambda: bool(seen_at_commit))


JUNK: list[tuple[bytes, RejectReason]] = [
    (b"\xff\xfe\xfd", RejectReason.NOT_UTF8),
    (b"not json", RejectReason.NOT_JSON),
    (b"", RejectReason.NOT_JSON),
    (b"[1, 2, 3]", RejectReason.NOT_OBJECT),
    (b'{"v": 99}', RejectReason.BAD_VERSION),
    (b'{"v": 1}', RejectReason.SCHEMA),
    (b"{" * 70_000, RejectReason.TOO_LARGE),
]


@pytest.mark.parametrize(("payload", "reason"), JUNK, ids=[reason.value for _, reason in JUNK])
def test_parse_message_refuses_junk_with_its_reason(payload: bytes, reason: RejectReason):
    with pytest.raises(ProtocolError) as caught:
        parse_message("gatepost/v1/s1/north/event", payload)
    assert caught.value.reason is reason
    assert len(str(caught.value)) < 300  # never the payload


def test_parse_message_checks_topics(make_events):
    event = make_events("s1", "north", [1])[0]
    assert parse_message("gatepost/v1/s1/north/event", encode(event)) == event
    assert parse_message("gatepost/v1/s1/$console/status", b"anything") is None
    cases = {
        "gatepost/v1/s1/south/event": RejectReason.TOPIC_MISMATCH,
        "gatepost/v1/s2/north/event": RejectReason.TOPIC_MISMATCH,
        "gatepost/v1/s1/north/response": RejectReason.BAD_TOPIC,
        "gatepost/v1/s1/North/event": RejectReason.BAD_TOPIC,
        "elsewhere/s1/north/event": RejectReason.BAD_TOPIC,
    }
    for topic, reason in cases.items():
        with pytest.raises(ProtocolError) as caught:
            parse_message(topic, encode(event))
        assert caught.value.reason is reason, topic


def test_malformed_messages_are_rejected_and_ingestion_goes_on(
    broker, ingestor, store, gate, site, make_events, mqtt_client_factory, caplog: pytest.LogCaptureFixture
):
    topics = gate.topics
    sendable = [payload for payload, _ in JUNK if len(payload) <= MAX_MESSAGE_BYTES]
    other_gate = make_events(site, "south", [1])[0]
    publish_all(gate, topics.event, [*sendable, encode(other_gate)])
    publish_all(gate, topics.status, sendable)
    # over the size limit: the broker refuses it (and drops that connection), so it never
    # reaches the console.  Sent by another gate: a second connection as north would be
    # north itself (one user name, one client id) and end the session subscribed to acks.
    big = mqtt_client_factory(broker.add_gate(site, "big"))
    big.client.publish(GateTopics(site, "big").event, b"{" * (MAX_MESSAGE_BYTES + 1), qos=1)
    expected = 2 * len(sendable) + 1
    assert wait_until(lambda: ingestor.counters.rejected == expected)

    good = make_events(site, "north", range(1, 51))
    publish_all(gate, topics.event, [encode(e) for e in good])
    assert acked_seqs(gate, set(range(1, 51))) == set(range(1, 51))
    assert ingestor.connected
    stats = store.stats()
    assert stats.total_rejections == expected
    assert stats.rejections["topic_mismatch"] == 1
    assert stats.rejections["not_json"] == 4
    assert stored(store, site, "north") == (50, 50, 0)
    assert stored(store, site, "south") == (0, 0, 0)
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "rejected" in r.getMessage()]
    assert len(warnings) == expected
    assert all("not json" not in r.getMessage() for r in warnings)  # the payload is never logged


def test_gate_status_is_stored_and_retained_junk_rejected(broker, console_creds, store, gate, site):
    topics = gate.topics
    boot = uuid.uuid4().hex
    status = GateStatus(state=GateState.ONLINE, site=site, gate="north", boot=boot, backlog=3)
    assert not gate.publish(topics.status, encode(status), retain=True).is_failure
    # retained before the console ever subscribed: it arrives on subscribe
    with Ingestor(broker.endpoint(console_creds), store, name="main") as ingestor:
        assert ingestor.wait_connected(WAIT_S)
        assert wait_until(lambda: ingestor.counters.statuses == 1)
        assert gate.publish(topics.status, b'{"v": 1, "state": "online"}', retain=True).value == 0
        assert wait_until(lambda: ingestor.counters.rejected == 1)
        stopped = GateStatus(state=GateState.STOPPED, site=site, gate="north", boot=boot)
        gate.publish(topics.status, encode(stopped), retain=True)
        assert wait_until(lambda: ingestor.counters.statuses == 2)
    gates = {(g.site, g.gate): g for g in store.stats().gates}
    assert gates[site, "north"].state == "stopped"
    assert store.stats().rejections == {"schema": 1}


def test_events_published_while_the_console_is_down_arrive_on_restart(
    broker, console_creds, store, gate, site, make_events, mqtt_client_factory
):
    endpoint = broker.endpoint(console_creds)
    with Ingestor(endpoint, store, name="main") as first:
        assert first.wait_connected(WAIT_S)
    # the console is away; its session (subscriptions and queue) stays with the broker
    burst = make_events(site, "north", range(1, 601))
    publish_all(gate, gate.topics.event, [encode(e) for e in burst])
    assert stored(store, site, "north") == (0, 0, 0)
    with Ingestor(endpoint, store, name="main") as second:
        assert second.wait_connected(WAIT_S)
        assert wait_until(lambda: stored(store, site, "north") == (600, 600, 0))
        assert acked_seqs(gate, set(range(1, 601))) == set(range(1, 601))
        assert second.counters.committed == 600


def test_console_status_is_retained_online_then_stopped(broker, console_creds, store, mqtt_client_factory):
    watcher = mqtt_client_factory(console_creds, "w1")
    topic = console_status_topic("all")

    def latest_state() -> str:
        client = mqtt_client_factory(console_creds, "watch")  # console.main itself is the ingestor's
        client.subscribe(topic)
        message = client.get(WAIT_S)
        client.close()
        assert message is not None and message.retain
        return decode_console_status(message.payload).state.value

    with Ingestor(broker.endpoint(console_creds), store, name="main") as ingestor:
        assert ingestor.wait_connected(WAIT_S)
        assert ingestor.status_topic == topic
        assert wait_until(lambda: latest_state() == "online")
    assert latest_state() == "stopped"
    del watcher


def test_a_single_site_console_serves_only_its_site(
    broker, console_creds, store, site, mqtt_client_factory, make_events
):
    other = f"{site}x"
    clients = {}
    for name in (site, other):
        client = mqtt_client_factory(broker.add_gate(name, "g"))
        client.topics = GateTopics(name, "g")
        clients[name] = client
    with Ingestor(broker.endpoint(console_creds), store, name="main", site=site) as ingestor:
        assert ingestor.wait_connected(WAIT_S)
        assert ingestor.status_topic == console_status_topic(site)
        for name, client in clients.items():
            publish_all(
                client, client.topics.event, [encode(e) for e in make_events(name, "g", range(1, 11))]
            )
        assert wait_until(lambda: stored(store, site, "g") == (10, 10, 0))
        time.sleep(0.2)
    assert stored(store, other, "g") == (0, 0, 0)


def test_ingestion_resumes_after_the_broker_restarts(
    broker, console_creds, store, site, mqtt_client_factory, make_events
):
    creds = broker.add_gate(site, "north")
    topics = GateTopics(site, "north")
    events = make_events(site, "north", range(1, 201))
    with Ingestor(broker.endpoint(console_creds), store, name="main") as ingestor:
        assert ingestor.wait_connected(WAIT_S)
        before = mqtt_client_factory(creds)
        publish_all(before, topics.event, [encode(e) for e in events[:100]])
        assert wait_until(lambda: stored(store, site, "north")[0] == 100)
        before.close()
        broker.restart()
        assert wait_until(lambda: ingestor.counters.connects == 2), ingestor.counters
        assert ingestor.wait_connected(WAIT_S)  # reconnected and subscribed again
        after = mqtt_client_factory(creds)
        after.subscribe(topics.ack)
        publish_all(after, topics.event, [encode(e) for e in events[100:]])
        assert acked_seqs(after, set(range(101, 201))) >= set(range(101, 201))
    assert stored(store, site, "north") == (200, 200, 0)


def test_parse_message_refuses_a_seq_beyond_64_bits(make_events):
    """A column of 64 bits cannot hold it; storing would fail the whole batch for ever."""
    event = make_events("s1", "north", [1])[0].model_copy(update={"seq": 2**63})
    with pytest.raises(ProtocolError) as caught:
        parse_message("gatepost/v1/s1/north/event", encode(event))
    assert caught.value.reason is RejectReason.SCHEMA
    assert parse_message("gatepost/v1/s1/north/event", encode(event.model_copy(update={"seq": 2**63 - 1})))


def test_a_backlog_waits_in_the_broker_not_in_the_consoles_memory(
    broker, console_creds, store, gate, site, make_events, monkeypatch
):
    """mosquitto 2.0.11 sends a reconnecting session's whole backlog at once; the ingestor stops reading instead.

    With receive_maximum 50 the queue holds at most 100 (QUEUE_FACTOR x 50); a slow
    store keeps it full. Without the bound every one of the 2,000 would be in memory
    before the first few batches were committed.
    """
    endpoint = broker.endpoint(console_creds)
    with Ingestor(endpoint, store, name="main", receive_maximum=50) as first:
        assert first.wait_connected(WAIT_S)
    backlog = make_events(site, "north", range(1, 2001))
    publish_all(gate, gate.topics.event, [encode(e) for e in backlog])
    commit = store.commit

    def slow_commit(*args, **kwargs):
        time.sleep(0.01)
        return commit(*args, **kwargs)

    monkeypatch.setattr(store, "commit", slow_commit)
    with Ingestor(endpoint, store, name="main", receive_maximum=50, batch_max=20) as second:
        assert second.wait_connected(WAIT_S)
        ahead = 0
        deadline = time.monotonic() + WAIT_S
        while second.counters.committed < 2000 and time.monotonic() < deadline:
            counts = second.counters
            ahead = max(ahead, counts.received - counts.committed)
            time.sleep(0.005)
        assert second.counters.committed == 2000
        # the queue's bound, plus the batch in hand and the message that found it full
        assert 50 <= ahead <= 100 + 20 + 1, ahead
    assert stored(store, site, "north") == (2000, 2000, 0)
