"""The gate agent in one process: real pty scanner, real broker, real outbox.

What a guard and an operator rely on: a scan is decided and taken without the network;
the backlog drains only when the console acknowledges; commands are answered, and
stale ones refused.
"""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.launcher import Broker
from console.commands import OfficeCommandSigner
from console.ingest import Ingestor
from console.store import EventStore
from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import (
    CommandResponse,
    GateState,
    GateStatus,
    GateTopics,
    decode_event,
    decode_response,
    decode_status,
)
from protocol.commands import CommandBody
from protocol.mqtt import make_client
from simulator.scanner import VirtualScanner
from tests.offices import create_office, gate_passes_section
from tests.waiting import wait_until

ALLOWED = "104729000001"


@pytest.fixture
def scanner(tmp_path: Path) -> Iterator[VirtualScanner]:
    with VirtualScanner(tmp_path / "ttyACM0", baudrate=115200, pace=False) as device:
        yield device


def make_agent(
    tmp_path: Path,
    broker: Broker,
    scanner: VirtualScanner,
    gate: str,
    *,
    office: Path | None = None,
    **taken,
) -> GateAgent:
    creds = broker.add_gate("site1", gate)
    secret = tmp_path / f"{gate}.secret"
    secret.write_text(creds.password)
    passes = {"passes": gate_passes_section(office, tmp_path / f"{gate}-passes")} if office else {}
    config = EdgeConfig.model_validate(
        {
            **passes,
            "site": "site1",
            "gate": gate,
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "username": creds.username,
                "password_file": str(secret),
                "resend_after_s": 1.0,
            },
            "scanners": [{"url": str(scanner.link_path), "baudrate": 115200}],
            "outbox": {"path": str(tmp_path / f"{gate}-outbox.db")},
            "access": {"allow": [ALLOWED]},
            "clock": {"trust": "trusted"},
        }
    )
    return GateAgent(config, **taken)


def start(agent: GateAgent) -> None:
    """Start the agent and wait until its reader has the port open (bytes sent before are flushed)."""
    agent.start()
    assert wait_until(
        lambda: all(state == "connected" for state in agent.reader_states.values()) and agent.reader_states
    )


def outbox_events(agent: GateAgent) -> list:
    return [decode_event(row.body) for row in agent.outbox.pending(limit=10_000)]


def test_scans_are_decided_and_taken_without_any_network(
    tmp_path: Path, scanner: VirtualScanner, unique_name: str
):
    broker = Broker(tmp_path / "broker")  # provisioned but never started: the network is down
    decisions: list[tuple[str, bool]] = []
    agent = make_agent(
        tmp_path,
        broker,
        scanner,
        unique_name,
        on_taken=lambda scan, decision, event, ns: decisions.append((scan.code, decision.granted)),
    )
    start(agent)
    try:
        scanner.type(ALLOWED)
        scanner.type("999999999999")
        scanner.type_garbage(__import__("random").Random(1), kind="control")
        assert wait_until(lambda: len(decisions) == 2)
        assert decisions == [(ALLOWED, True), ("999999999999", False)]
        assert wait_until(lambda: any(e.type == "scanner.rejected" for e in outbox_events(agent)))
        scans = [e for e in outbox_events(agent) if e.type == "access.scan"]
        assert [(e.data["code"], e.data["granted"], e.data["reason"]) for e in scans] == [
            (ALLOWED, True, "granted"),
            ("999999999999", False, "unknown"),
        ]
        assert not agent.link.connected
        assert agent.outbox.backlog >= 4  # started, scanner connected, two scans, rejection
    finally:
        agent.stop(drain_s=0)


def test_backlog_drains_only_when_the_console_acknowledges(
    tmp_path: Path, broker: Broker, scanner: VirtualScanner, unique_name: str
):
    agent = make_agent(tmp_path, broker, scanner, unique_name)
    start(agent)
    try:
        for i in range(50):
            scanner.type(f"{i:012d}")
        assert wait_until(lambda: agent.outbox.last_seq >= 52)
        assert agent.link.wait_connected(10)
        time.sleep(1.5)
        # Published and PUBACKed by the broker, but no console: everything is still owed.
        assert agent.outbox.backlog >= 52
        assert agent.link.published >= 52
        creds = broker.add_console("console")
        store = EventStore(tmp_path / "console.db")
        with Ingestor(broker.endpoint(creds), store) as ingestor:
            ingestor.wait_connected(10)
            # The gate resends after resend_after_s; the console commits and acknowledges.
            assert wait_until(lambda: agent.outbox.backlog == 0, timeout=20)
        stats = store.stats()
        store.close()
        gate = next(g for g in stats.gates if g.gate == unique_name)
        assert gate.count == agent.outbox.last_seq and gate.missing == 0
    finally:
        agent.stop(drain_s=0)


class Operator:
    """The console's side of commands: publish a signed command, wait for its CommandResponse."""

    def __init__(self, broker: Broker, gate: str, office: Path) -> None:
        self.topics = GateTopics("site1", gate)
        self.signer = OfficeCommandSigner(office)
        creds = broker.add_console("operator")
        self.responses: queue.Queue[CommandResponse] = queue.Queue()
        self.client = make_client(broker.endpoint(creds))
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self.responses.put(decode_response(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(self.topics.response, qos=1)
        self.client.loop_start()
        assert ready.wait(5)

    def send(self, name: str, *, expires_in_s: float = 30.0, retain: bool = False) -> str:
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=expires_in_s)
        command = CommandBody(
            site="site1",
            gate=self.topics.gate,
            id=uuid.uuid4().hex,
            name=name,
            issued_at=min(now, expires - timedelta(seconds=30)),
            expires_at=expires,
            operator="ana",
        )
        payload = self.signer.sign(command)
        self.client.publish(self.topics.command, payload, qos=1, retain=retain).wait_for_publish(5)
        return command.id

    def response(self, timeout: float = 5.0) -> CommandResponse:
        return self.responses.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_commands_are_answered_and_stale_ones_refused(
    tmp_path: Path, broker: Broker, scanner: VirtualScanner, unique_name: str
):
    office = tmp_path / "office"
    create_office(office, site="site1").close()
    agent = make_agent(tmp_path, broker, scanner, unique_name, office=office)
    start(agent)
    operator = Operator(broker, unique_name, office)
    try:
        assert agent.link.wait_connected(10)
        time.sleep(0.3)
        sent = operator.send("status")
        response = operator.response()
        assert response.id == sent and response.ok
        assert response.result["readers"] == {"scanner": "connected"}
        assert "backlog" in response.result

        sent = operator.send("status", expires_in_s=-1)
        response = operator.response()
        assert (response.id, response.ok, response.error) == (sent, False, "expired")

        sent = operator.send("open_sesame")
        response = operator.response()
        assert response.id == sent and not response.ok

        # A retained command would replay on every reconnect: ignored, and no response at all.
        operator.send("status", retain=True)
        with pytest.raises(queue.Empty):
            operator.response(timeout=1.0)
        reasons = [e.data["reason"] for e in outbox_events(agent) if e.type == "command.rejected"]
        assert reasons == ["expired", "unknown", "retained"]
    finally:
        operator.close()
        agent.stop(drain_s=0)


def test_check_config_names_file_line_and_key(tmp_path: Path):
    config = tmp_path / "gate.toml"
    config.write_text(
        'site = "longtan"\ngate = "North"\n\n[mqtt]\nport = 99999\nusernme = "x"\n\n[[scanners]]\nbaudrate = 9600\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "gatepost", "edge", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert f"{config}:2: gate:" in lines[0]
    assert any(line.startswith(f"{config}:5: mqtt.port:") for line in lines)
    assert any(line.startswith(f"{config}:6: mqtt.usernme:") for line in lines)
    assert any(line.startswith(f"{config}:8: scanners.0.url:") for line in lines)
    assert "Traceback" not in result.stderr
    ok = tmp_path / "ok.toml"
    ok.write_text('site = "longtan"\ngate = "north"\n')
    assert (
        subprocess.run(
            [sys.executable, "-m", "gatepost", "edge", "check-config", str(ok)], timeout=60
        ).returncode
        == 0
    )


def test_each_connection_leaves_a_will_of_its_own(
    tmp_path: Path, broker: Broker, scanner: VirtualScanner, unique_name: str
):
    """Two outages of one boot are two different ``offline`` statuses, so the console can
    tell a second outage from the broker re-sending the retained will of the first."""
    agent = make_agent(tmp_path, broker, scanner, unique_name)
    creds = broker.add_console("watcher")
    wills: queue.Queue[GateStatus] = queue.Queue()
    observer = make_client(broker.endpoint(creds))
    ready = threading.Event()
    observer.on_subscribe = lambda *a: ready.set()

    def on_message(_c: object, _u: object, message: object) -> None:
        status = decode_status(message.payload)  # type: ignore[attr-defined]
        if status.state == GateState.OFFLINE:
            wills.put(status)

    observer.on_message = on_message
    observer.connect(broker.host, broker.port)
    observer.subscribe(GateTopics("site1", unique_name).status, qos=1)
    observer.loop_start()
    assert ready.wait(5)
    start(agent)
    try:
        seen = []
        for _ in range(2):
            assert wait_until(lambda: agent.link.connected)
            agent.link._client.socket().shutdown(socket.SHUT_RDWR)  # the link dies, no DISCONNECT
            seen.append(wills.get(timeout=10))
            assert wait_until(lambda: not agent.link.connected)
        assert [s.boot for s in seen] == [agent.outbox.boot] * 2
        assert seen[0].time is not None and seen[1].time is not None
        assert seen[0].time < seen[1].time
    finally:
        agent.stop(drain_s=0)
        observer.disconnect()
        observer.loop_stop()
