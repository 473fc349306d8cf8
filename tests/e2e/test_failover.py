"""Two brokers, one killed mid-stream: the gate moves to the other, and the store has every event once.

Both mosquittos are the site's (same CA, same accounts: broker/twin.py), the console
reads both (console/brokers.py), and the gate publishes to the first until it is SIGKILLed
under a steady stream of scans.  Nothing the gate took may be missing from the store or
be stored twice, and the gate must be shown online, on the broker it moved to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.launcher import Broker
from broker.twin import copy_identity
from console.brokers import BrokerIngest
from console.store import EventStore
from edge.link import Link
from edge.outbox import Outbox
from protocol import GateTopics
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]

TOTAL = 400
KILL_AT = 150
SCAN_INTERVAL_S = 0.01


def counts(store: EventStore, site: str, gate: str) -> tuple[int, int, int, int]:
    """(rows, distinct seqs, lowest seq, highest seq) stored for the gate."""
    row = store.db.query(
        "SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM events WHERE site = ? AND gate = ?",
        (site, gate),
    )[0]
    return int(row[0]), int(row[1]), int(row[2] or 0), int(row[3] or 0)


def test_killing_the_active_broker_mid_stream_loses_and_duplicates_nothing(broker, tmp_path, unique_name):
    site, gate = unique_name, "north"
    console_creds = broker.add_console("main")
    gate_creds = broker.add_gate(site, gate)
    copy_identity(broker.state_dir, tmp_path / "second")
    second = Broker(tmp_path / "second")
    second.start()
    try:
        with (
            EventStore(tmp_path / "events.db") as store,
            BrokerIngest(
                [broker.endpoint(console_creds), second.endpoint(console_creds)], store, site=site
            ) as ingest,
            Outbox(tmp_path / "outbox.db", site=site, gate=gate) as outbox,
        ):
            assert ingest.wait_connected(15), "console did not subscribe on both brokers"
            link = Link(
                broker.endpoint(gate_creds),
                GateTopics(site, gate),
                outbox,
                resend_after_s=5.0,
                resend_overtaken_s=1.0,
                failover=[second.endpoint(gate_creds)],
            )
            link.start()
            stop = threading.Event()
            appended = threading.Semaphore(0)

            def scan() -> None:
                for i in range(1, TOTAL + 1):
                    if stop.is_set():
                        return
                    outbox.append(
                        "access.scan", {"code": f"{i:06d}"}, time=datetime.now(UTC), clock_trusted=True
                    )
                    appended.release()
                    time.sleep(SCAN_INTERVAL_S)

            try:
                assert link.wait_connected(15)
                scanner = threading.Thread(target=scan, daemon=True)
                scanner.start()
                for _ in range(KILL_AT):
                    assert appended.acquire(timeout=30)
                assert counts(store, site, gate)[0] > 0 or wait_until(
                    lambda: counts(store, site, gate)[0] > 0, 10
                )
                killed_at = time.monotonic()
                broker.kill()  # SIGKILL: no will, no goodbye, whatever was in flight is gone with it
                assert wait_until(lambda: link.connected and link.brokers.index == 1, 30), "gate never moved"
                failover_s = time.monotonic() - killed_at
                scanner.join(60)
                assert wait_until(lambda: counts(store, site, gate)[0] >= TOTAL, 60), counts(
                    store, site, gate
                )
                assert wait_until(lambda: outbox.backlog == 0, 30), (
                    "the console never acknowledged everything"
                )
                print(f"failover_s={failover_s:.3f}")
            finally:
                stop.set()
                link.stop()
            rows, distinct, low, high = counts(store, site, gate)
            assert (rows, distinct, low, high) == (TOTAL, TOTAL, 1, TOTAL), "every seq exactly once, no gap"
            assert link.brokers.moves == 1
            assert failover_s < 10.0, f"failover took {failover_s:.1f} s"

            def state() -> list[tuple[str]]:
                return store.db.query(
                    "SELECT state FROM gate_status WHERE site = ? AND gate = ?", (site, gate)
                )

            assert wait_until(lambda: state() == [("stopped",)], 10), (
                f"the gate's last word, on the second broker, is what the console shows, not {state()}"
            )
    finally:
        second.stop()


@pytest.mark.slow  # a console process or a whole agent, and a broker killed: 20-30 s
def test_console_run_reads_every_broker_of_its_mqtt_failover_list(broker, tmp_path, unique_name):
    """``gatepost console run`` with ``[mqtt] failover``: the operator's path to the same guarantee."""
    site, gate = unique_name, "east"
    console_creds = broker.add_console("console")
    gate_creds = broker.add_gate(site, gate)
    copy_identity(broker.state_dir, tmp_path / "second")
    second = Broker(tmp_path / "second")
    second.start()
    (tmp_path / "console.secret").write_text(console_creds.password or "")
    db = tmp_path / "events.db"
    config = tmp_path / "console.toml"
    config.write_text(
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nusername = "{console_creds.username}"\n'
        f'password_file = "console.secret"\nfailover = ["{second.host}:{second.port}"]\n'
        f'[store]\npath = "{db}"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    console = subprocess.Popen(
        [sys.executable, "-m", "gatepost", "console", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        with Outbox(tmp_path / "outbox.db", site=site, gate=gate) as outbox:
            link = Link(
                broker.plain_endpoint(gate_creds),
                GateTopics(site, gate),
                outbox,
                resend_after_s=5.0,
                failover=[second.plain_endpoint(gate_creds)],
            )
            link.start()
            try:
                assert link.wait_connected(15)
                for i in range(1, 101):
                    outbox.append(
                        "access.scan", {"code": f"{i:06d}"}, time=datetime.now(UTC), clock_trusted=True
                    )
                assert wait_until(lambda: outbox.backlog == 0, 30), (
                    "the console never acknowledged on the first broker"
                )
                broker.kill()
                for i in range(101, 201):
                    outbox.append(
                        "access.scan", {"code": f"{i:06d}"}, time=datetime.now(UTC), clock_trusted=True
                    )
                assert wait_until(lambda: outbox.backlog == 0, 30), (
                    "the console never acknowledged on the second broker"
                )
                assert link.brokers.index == 1
            finally:
                link.stop()
        console.send_signal(signal.SIGTERM)
        assert console.wait(15) == 0, console.stderr.read() if console.stderr else ""
        with EventStore(db, readonly=True) as store:
            assert counts(store, site, gate) == (200, 200, 1, 200)
    finally:
        if console.poll() is None:
            console.kill()
            console.wait(10)
        second.stop()


@pytest.mark.slow  # a console process or a whole agent, and a broker killed: 20-30 s
def test_a_gate_agent_on_the_second_broker_gets_commands_and_its_health_is_seen(
    broker, tmp_path, unique_name
):
    """The agent's ``[mqtt] failover`` moves it; the console's commands and health follow it there."""
    from gpiozero.pins.mock import MockFactory

    from console.commands import CommandClient, OfficeCommandSigner
    from console.health import HealthListener
    from edge.agent import GateAgent
    from edge.config import EdgeConfig
    from tests.offices import create_office, gate_passes_section

    office = tmp_path / "office"
    create_office(office, site="s1").close()
    gate = unique_name
    gate_creds = broker.add_gate("s1", gate)
    console_creds = broker.add_console("console")
    copy_identity(broker.state_dir, tmp_path / "second")
    second = Broker(tmp_path / "second")
    second.start()
    (tmp_path / "gate.secret").write_text(gate_creds.password or "")
    config = EdgeConfig.model_validate(
        {
            "site": "s1",
            "gate": gate,
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "username": gate_creds.username,
                "password_file": str(tmp_path / "gate.secret"),
                "failover": [f"{second.host}:{second.port}"],
            },
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "access": {"allow": []},
            "clock": {"trust": "trusted"},
            "passes": gate_passes_section(office, tmp_path / "gate-passes"),
        }
    )
    agent = GateAgent(config, pin_factory=MockFactory())
    agent.start()
    commands = health = None
    try:
        assert agent.link.wait_connected(15) and agent.link.brokers.index == 0
        broker.kill()
        assert wait_until(lambda: agent.link.connected and agent.link.brokers.index == 1, 30), (
            "agent never moved"
        )
        first, *others = (b.plain_endpoint(console_creds) for b in (broker, second))
        commands = CommandClient(first, signer=OfficeCommandSigner(office), failover=others).start()
        health = HealthListener(first, site="s1", failover=others).start()
        assert commands.wait_connected(15) and health.wait_connected(15), "the second broker's connections"
        answer = commands.send("s1", gate, "ping", operator="ana", timeout_s=10)
        assert (answer.status, answer.result) == ("ok", {"pong": True}), answer
        agent.health.poke()
        assert wait_until(lambda: health.board.get("s1", gate) is not None, 30), "no health through broker 2"
    finally:
        for client in (commands, health):
            if client is not None:
                client.stop()
        agent.stop(drain_s=0)
        second.stop()


@pytest.mark.slow  # a console process or a whole agent, and a broker killed: 20-30 s
def test_publish_passes_puts_the_revocation_list_on_every_broker(broker, tmp_path, unique_name, capsys):
    """A gate reads its signed documents from the broker it is on: each broker must hold the latest."""
    from gatepost.cli import main
    from protocol.topics import SiteDocument, site_document_topic
    from tests.conftest import MqttTestClient
    from tests.offices import create_office

    create_office(tmp_path / "office", site=unique_name).close()
    console_creds = broker.add_console("console")
    gate_creds = broker.add_gate(unique_name, "north")
    copy_identity(broker.state_dir, tmp_path / "second")
    second = Broker(tmp_path / "second")
    second.start()
    try:
        (tmp_path / "console.secret").write_text(console_creds.password or "")
        config = tmp_path / "console.toml"
        config.write_text(
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nusername = "{console_creds.username}"\n'
            f'password_file = "console.secret"\nfailover = ["{second.host}:{second.port}"]\n'
            f'[store]\npath = "{tmp_path / "events.db"}"\n'
        )
        public = tmp_path / "office" / "public"
        code = main(
            [
                "console",
                "publish-passes",
                "--config",
                str(config),
                "--site",
                unique_name,
                "--public",
                str(public),
            ]
        )
        assert code == 0, capsys.readouterr()
        topic = site_document_topic(unique_name, SiteDocument.REVOCATION)
        for each in (broker, second):
            reader = MqttTestClient(each.plain_endpoint(gate_creds))
            reader.connect()
            try:
                reader.subscribe(topic)
                message = reader.get(timeout=10)
                assert message is not None and message.retain, f"no retained revocation list on {each!r}"
                assert message.payload == (public / "revocations").read_bytes()
            finally:
                reader.close()
        second.stop()  # one broker down: the operator must be told, not shown success
        code = main(
            [
                "console",
                "publish-passes",
                "--config",
                str(config),
                "--site",
                unique_name,
                "--public",
                str(public),
            ]
        )
        assert code == 2
        assert f"on {second.host}:{second.port}" in capsys.readouterr().err
    finally:
        second.stop()
