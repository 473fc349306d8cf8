"""The door-card list and thumbnails reach gates over a real mosquitto, and heal after a missed delta."""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
from PIL import Image

from console.card_sync import CardPublisher
from console.credentials import CardRegistry
from console.thumbnails import save_thumbnail
from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import decode_event
from protocol.credentials import CardEntry
from protocol.mqtt import make_client
from protocol.topics import GateTopics
from tests.waiting import wait_until

NOW = datetime.now(UTC)
WAIT_S = 20.0  # a 5,000-card snapshot, chunked through a real broker


def _cards(first: int, count: int) -> list[CardEntry]:
    return [
        CardEntry(f"em4100:{n:010X}", holder=f"住户{n}", unit=f"{n % 9 + 1}-1-{n % 600 + 101}",
                  valid_until=NOW + timedelta(days=90))
        for n in range(first, first + count)
    ]  # fmt: skip


def _gate(tmp_path: Path, broker, site: str, gate: str) -> EdgeConfig:
    creds = broker.add_gate(site, gate)
    secret = tmp_path / f"{gate}.secret"
    secret.write_text(creds.password)
    return EdgeConfig.model_validate(
        {
            "site": site,
            "gate": gate,
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "username": creds.username,
                "password_file": str(secret),
            },
            "outbox": {"path": str(tmp_path / f"{gate}-outbox.db")},
            "clock": {"trust": "trusted"},
            "cards": {"store": str(tmp_path / f"{gate}-cards.db"), "timezone": "Asia/Shanghai"},
            "photos": {"dir": str(tmp_path / f"{gate}-photos")},
        }
    )


def _events(agent: GateAgent, event_type: str) -> list[dict]:
    rows = agent.outbox.pending(limit=10_000)
    return [e.data for e in map(decode_event, (r.body for r in rows)) if e.type == event_type]


def _same_list(agent: GateAgent, registry: CardRegistry) -> bool:
    assert agent.decider.cards is not None
    held, want = agent.decider.cards.state, registry.state
    return (held.version, held.hash, held.count) == (want.version, want.hash, want.count)


def test_snapshot_delta_and_thumbnail_reach_a_gate(tmp_path: Path, broker, unique_name: str):
    site = unique_name
    registry = CardRegistry(tmp_path / "registry.db")
    registry.put(_cards(1, 5_000))
    thumbs = tmp_path / "thumbs"
    picture = io.BytesIO()
    Image.new("RGB", (300, 400), (200, 120, 40)).save(picture, "PNG")
    digest = save_thumbnail(thumbs, picture.getvalue())
    console = broker.endpoint(broker.add_console("office"))
    publisher = CardPublisher(console, registry, site, thumbnails=thumbs, poll_s=0.05).start()
    agent = GateAgent(_gate(tmp_path, broker, site, "b5"))
    agent.start()
    try:
        assert wait_until(lambda: _same_list(agent, registry), WAIT_S), "snapshot never applied"
        assert agent.decider.cards is not None
        entry = agent.decider.cards.lookup("em4100:0000000007")
        assert entry is not None and entry.holder == "住户7"
        photo = tmp_path / "b5-photos" / f"{digest}.jpg"
        assert wait_until(photo.exists, WAIT_S)
        assert photo.read_bytes() == (thumbs / f"{digest}.jpg").read_bytes()

        registry.put(_cards(9_000, 3))
        registry.remove(["em4100:0000000007"])
        assert wait_until(lambda: _same_list(agent, registry), WAIT_S), "delta never applied"
        assert agent.decider.cards.lookup("em4100:0000000007") is None
        assert agent.decider.cards.stored_hash() == registry.state.hash

        # The gate swaps its list in, then records cards.applied: the event may trail the state.
        def kinds() -> list[str]:
            return [e["kind"] for e in _events(agent, "cards.applied")]

        assert wait_until(lambda: "delta" in kinds()[1:], WAIT_S), kinds()
        assert kinds()[0] == "snapshot"
        assert publisher.counters.deltas >= 1

        (thumbs / f"{digest}.jpg").unlink()  # the office removed the photo: gates drop it too
        assert wait_until(lambda: not photo.exists(), WAIT_S)
    finally:
        agent.stop(drain_s=0)
        publisher.stop()


def _copy_store(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def test_a_gate_restored_from_an_old_backup_asks_and_is_brought_up_to_date(
    tmp_path: Path, broker, unique_name: str
):
    """The broker's persistent session delivers deltas queued during an outage; a gate whose
    store went back in time (restored from a backup) no longer fits the next delta, asks, and heals."""
    site = unique_name
    registry = CardRegistry(tmp_path / "registry.db")
    registry.put(_cards(1, 200))
    console = broker.endpoint(broker.add_console("office"))
    # The retained snapshot is redone at most hourly here, so only the request path can heal the gate.
    publisher = CardPublisher(console, registry, site, poll_s=0.05, snapshot_every_s=3600).start()
    config = _gate(tmp_path, broker, site, "b6")
    assert config.cards is not None
    backup = tmp_path / "backup.db"
    agent = GateAgent(config)
    agent.start()
    try:
        assert wait_until(lambda: _same_list(agent, registry), WAIT_S)
        held = registry.version
        _copy_store(config.cards.store, backup)
    finally:
        agent.stop(drain_s=0)
    registry.put(_cards(500, 10))  # queued for the gate by its persistent session
    agent = GateAgent(config)
    agent.start()
    try:
        assert wait_until(lambda: _same_list(agent, registry), WAIT_S), "the queued delta was not delivered"
    finally:
        agent.stop(drain_s=0)
    _copy_store(backup, config.cards.store)  # the gate goes back to the old list
    registry.remove(["em4100:0000000001"])  # and the next delta does not fit it
    agent = GateAgent(config)
    assert agent.decider.cards is not None and agent.decider.cards.version == held
    agent.start()
    try:
        assert wait_until(lambda: _same_list(agent, registry), WAIT_S), "the gate was not brought up to date"
        assert [e["reason"] for e in _events(agent, "cards.rejected")] == ["wrong_base"]
        # One outbox across the three runs: the first boot, with an empty store, asked at once.
        assert [e["reason"] for e in _events(agent, "cards.requested")] == ["connected", "wrong_base"]
        assert publisher.counters.answers == 2
        assert agent.decider.cards.stored_hash() == registry.state.hash
    finally:
        agent.stop(drain_s=0)
        publisher.stop()


def test_garbage_on_card_topics_is_refused_without_harm(tmp_path: Path, broker, unique_name: str):
    site = unique_name
    registry = CardRegistry(tmp_path / "registry.db")
    registry.put(_cards(1, 50))
    console = broker.endpoint(broker.add_console("office"))
    publisher = CardPublisher(console, registry, site, poll_s=0.05).start()
    agent = GateAgent(_gate(tmp_path, broker, site, "b7"))
    agent.start()
    try:
        assert wait_until(lambda: _same_list(agent, registry), WAIT_S)
        # The console's own credentials could still send rubbish (a bug, a stolen password).
        client = make_client(console.for_connection("watch"))
        client.connect(broker.host, broker.port)
        client.loop_start()
        topics = GateTopics(site, "b7")
        for payload in (b"GPCL\x01\x01" + b"\x00" * 40, b"\xff" * 100, b"not a chunk"):
            client.publish(topics.cards, payload, 1).wait_for_publish(5)
        client.publish(f"gatepost/v1/{site}/$console/photo/" + "ab" * 16, b"<html>no</html>", 1, retain=True)
        client.disconnect()
        client.loop_stop()
        assert wait_until(lambda: len(_events(agent, "cards.rejected")) >= 1, WAIT_S)
        assert _same_list(agent, registry)  # still the good list
        assert not (tmp_path / "b7-photos" / ("ab" * 16 + ".jpg")).exists()
        # A gate's request with a bad body is refused by the console, which keeps running.
        gate_client = make_client(broker.endpoint(broker.add_gate(site, "b8")))
        gate_client.connect(broker.host, broker.port)
        gate_client.loop_start()
        gate_client.publish(GateTopics(site, "b8").cards_request, b'{"version": "x"}', 1).wait_for_publish(5)
        gate_client.disconnect()
        gate_client.loop_stop()
        assert wait_until(lambda: publisher.counters.refused_requests == 1, WAIT_S)
    finally:
        agent.stop(drain_s=0)
        publisher.stop()


def test_gate_acl_allows_card_topics_and_nothing_more(broker, unique_name: str):
    """A gate may read its site's card topics and ask on its own request topic, not another gate's."""
    site = unique_name
    creds = broker.add_gate(site, "g1")
    client = make_client(broker.endpoint(creds))
    results: list[paho.ReasonCode] = []
    client.on_publish = lambda _c, _u, _mid, reason, _p: results.append(reason)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(GateTopics(site, "g1").cards_request, b"{}", 1).wait_for_publish(5)
        client.publish(GateTopics(site, "g2").cards_request, b"{}", 1).wait_for_publish(5)
        client.publish(f"gatepost/v1/{site}/$console/cards/delta", b"x", 1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    assert [r.is_failure for r in results] == [False, True, True]
