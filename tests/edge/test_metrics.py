"""The gate's /metrics after real activity, scraped over HTTP, and its retained health message.

A gate with a scanner on a pseudo-terminal and a door on gpiozero's mock pins decides
real scans; the numbers are read back the way Prometheus reads them (HTTP, text format,
parsed by prometheus_client's own parser) and compared with what the gate did.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from prometheus_client.parser import text_string_to_metric_families

from broker.launcher import Broker
from console.ingest import Ingestor
from console.store import EventStore
from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import GateTopics, decode_event, decode_health
from simulator.scanner import VirtualScanner
from tests.conftest import ClientFactory
from tests.edge.full_disk import FullDisk
from tests.waiting import wait_until

GRANTED = [f"1047290000{i:02d}" for i in range(6)]
UNKNOWN = [f"9990000000{i:02d}" for i in range(4)]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from one scrape of ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def fill_disk_until_degraded(gate: Gate, disk: FullDisk) -> None:
    """SQLite's own "database or disk is full" from now on; scan until the gate says so."""
    outbox = gate.agent.outbox
    disk.set(outbox)
    for i in range(200):
        before = outbox.last_seq
        gate.scanner.type(f"{i:012d}")
        assert wait_until(lambda before=before: outbox.last_seq > before)  # decided and taken (or held)
        if outbox.degraded is not None:
            return
    raise AssertionError("the page limit never refused a write")


class Gate:
    def __init__(self, tmp_path: Path, broker: Broker, name: str) -> None:
        creds = broker.add_gate("site1", name)
        secret = tmp_path / "gate.secret"
        secret.write_text(creds.password)
        self.name = name
        self.scanner = VirtualScanner(tmp_path / "ttyACM0", baudrate=115200, pace=False)
        config = EdgeConfig.model_validate(
            {
                "site": "site1",
                "gate": name,
                "mqtt": {
                    "host": broker.host,
                    "port": broker.port,
                    "username": creds.username,
                    "password_file": str(secret),
                    "resend_after_s": 0.3,
                },
                "scanners": [{"url": str(self.scanner.link_path), "baudrate": 115200}],
                "outbox": {"path": str(tmp_path / "outbox.db")},
                "access": {"allow": GRANTED, "repeat_s": 5.0},
                "clock": {"trust": "trusted"},
                "gpio": {"pin_factory": "mock"},
                "door": {"pins": {"relay": "GPIO17"}, "behaviour": {"unlock_s": 0.2}},
                "metrics": {"listen": "127.0.0.1:0"},
                "health": {"interval_s": 1},
            }
        )
        self.agent = GateAgent(config, pin_factory=MockFactory())

    def start(self) -> GateAgent:
        self.agent.start()
        assert wait_until(lambda: self.agent.reader_states.get("scanner") == "connected")
        return self.agent

    def close(self) -> None:
        self.agent.stop(drain_s=0)
        self.scanner.close()


@pytest.fixture
def gate(tmp_path: Path, broker: Broker, unique_name: str) -> Iterator[Gate]:
    gate = Gate(tmp_path, broker, unique_name)
    try:
        yield gate
    finally:
        gate.close()


def test_every_metric_family_reads_what_the_gate_did(tmp_path: Path, broker: Broker, gate: Gate):
    agent = gate.start()
    port = agent.metrics.port
    assert port, "the listener is up"
    assert agent.link.wait_connected(10)
    for code in GRANTED + UNKNOWN:
        gate.scanner.type(code)
    gate.scanner.type(UNKNOWN[-1])  # the same card again at once: one presentation, not two

    def scans() -> list:
        events = (decode_event(row.body) for row in agent.outbox.pending(limit=1000))
        return [event for event in events if event.type == "access.scan"]

    assert wait_until(lambda: len(scans()) == len(GRANTED) + len(UNKNOWN))
    # No console yet: everything is owed, and the link resends the oldest as a probe.
    assert wait_until(lambda: agent.link.resent >= 1, timeout=10)
    samples = scrape(port)

    assert value(samples, "gatepost_gate_decisions_total", outcome="granted", reason="granted") == len(
        GRANTED
    )
    assert value(samples, "gatepost_gate_decisions_total", outcome="denied", reason="unknown") == len(UNKNOWN)
    assert value(samples, "gatepost_gate_decision_seconds_count") == len(GRANTED) + len(UNKNOWN)
    assert 0 < value(samples, "gatepost_gate_decision_seconds_sum") < 5  # type: ignore[operator]
    assert value(samples, "gatepost_gate_decision_seconds_bucket", le="+Inf") == len(GRANTED) + len(UNKNOWN)
    unlocks = [
        e for e in (decode_event(r.body) for r in agent.outbox.pending(limit=1000))
        if e.type == "door.unlocked" and not e.data.get("extended")
    ]  # fmt: skip
    assert unlocks and value(samples, "gatepost_gate_relay_actuations_total", cause="grant") == len(unlocks)
    assert value(samples, "gatepost_gate_outbox_events") == agent.outbox.backlog
    oldest = value(samples, "gatepost_gate_outbox_oldest_age_seconds")
    assert oldest is not None and 0 < oldest < 60
    resent = value(samples, "gatepost_gate_events_resent_total")
    assert resent is not None and 1 <= resent <= agent.link.resent
    assert value(samples, "gatepost_gate_broker_connected") == 1
    assert value(samples, "gatepost_gate_reader_state", reader="scanner", state="connected") == 1
    assert value(samples, "gatepost_gate_reader_state", reader="scanner", state="disconnected") == 0
    assert value(samples, "gatepost_gate_clock_trusted") == 1
    assert value(samples, "gatepost_gate_degraded") == 0
    assert value(samples, "gatepost_gate_outbox_held_events") == 0
    assert value(samples, "gatepost_gate_outbox_refused_total") == 0
    assert value(samples, "gatepost_gate_outbox_write_failures_total") == 0
    assert value(samples, "gatepost_gate_last_seq") == agent.outbox.last_seq
    assert value(samples, "gatepost_gate_broker_connects_total") == 1
    published = value(samples, "gatepost_gate_events_published_total")
    assert published is not None and published >= agent.outbox.last_seq
    assert value(samples, "gatepost_gate_repeats_suppressed_total") == 1
    assert value(samples, "gatepost_gate_relay_watchdog_cuts_total") == 0
    assert 0 < value(samples, "gatepost_gate_up_seconds") < 120  # type: ignore[operator]
    assert not any(name.startswith("gatepost_gate_certificate") for name, _ in samples), "none without TLS"

    # A console acknowledges everything: the backlog and its age go to zero.
    console = broker.add_console("console")
    store = EventStore(tmp_path / "console.db")
    with Ingestor(broker.endpoint(console), store) as ingestor:
        assert ingestor.wait_connected(10)
        assert wait_until(lambda: agent.outbox.backlog == 0, timeout=20)
    store.close()
    samples = scrape(port)
    assert value(samples, "gatepost_gate_outbox_events") == 0
    assert value(samples, "gatepost_gate_outbox_oldest_age_seconds") == 0
    assert value(samples, "gatepost_gate_events_acknowledged_total") >= len(GRANTED) + len(UNKNOWN)  # type: ignore[operator]

    # The hook the TLS work fills in: then the expiry is exported.
    not_after = datetime(2027, 3, 1, tzinfo=UTC)
    agent.metrics.certificate_expiry = lambda: {"client": not_after}
    samples = scrape(port)
    assert value(samples, "gatepost_gate_certificate_expiry_timestamp_seconds", certificate="client") == (
        not_after.timestamp()
    )


def test_the_degraded_disk_shows_in_metrics(gate: Gate, full_disk: FullDisk):
    agent = gate.start()
    port = agent.metrics.port
    assert port
    fill_disk_until_degraded(gate, full_disk)
    samples = scrape(port)
    assert value(samples, "gatepost_gate_degraded") == 1
    assert value(samples, "gatepost_gate_outbox_held_events") == agent.outbox.held > 0
    assert value(samples, "gatepost_gate_outbox_write_failures_total") >= 1  # type: ignore[operator]


def test_a_taken_metrics_port_does_not_stop_the_gate(tmp_path: Path, broker: Broker, gate: Gate):
    agent = gate.start()
    port = agent.metrics.port
    assert port
    other = (
        Gate(tmp_path / "other", broker, gate.name + "b") if (tmp_path / "other").mkdir() is None else None
    )
    assert other is not None
    other.agent.config.metrics.listen = f"127.0.0.1:{port}"
    try:
        second = other.start()
        assert second.metrics.port is None  # logged, not fatal
        other.scanner.type(GRANTED[0])
        assert wait_until(lambda: second.outbox.last_seq >= 3)
    finally:
        other.close()


def test_the_health_message_is_retained_and_follows_the_state(
    broker: Broker, gate: Gate, mqtt_client_factory: ClientFactory, full_disk: FullDisk
):
    agent = gate.start()
    assert agent.link.wait_connected(10)
    gate.scanner.type(UNKNOWN[0])
    assert wait_until(lambda: agent.health.published >= 1)
    console = mqtt_client_factory(broker.add_console("watcher"))
    console.subscribe(GateTopics("site1", gate.name).health)
    message = console.get()
    assert message is not None and message.retain, "the latest arrives on subscribe"
    health = decode_health(message.payload)
    assert (health.site, health.gate, health.state.value, health.degraded) == (
        "site1",
        gate.name,
        "online",
        False,
    )
    assert health.readers == {"scanner": "connected"} and health.clock_trusted
    assert (
        health.disk_free_bytes
        and health.disk_total_bytes
        and health.disk_free_bytes <= health.disk_total_bytes
    )
    assert health.memory_total_bytes and health.load_1m is not None
    assert health.time > datetime.now(UTC) - timedelta(seconds=30)
    # A change of state is sent within a second or two, not at the next interval.
    fill_disk_until_degraded(gate, full_disk)
    degraded = None
    for _ in range(10):
        message = console.get(timeout=3)
        if message is None:
            break
        latest = decode_health(message.payload)
        if latest.degraded:
            degraded = latest
            break
    assert degraded is not None and degraded.state.value == "degraded" and degraded.held > 0
    assert degraded.outbox_error and "full" in degraded.outbox_error


def test_the_certificate_expiry_is_exported_for_a_gate_on_tls(
    tmp_path: Path, broker: Broker, unique_name: str
):
    """A gate that logs in with its certificate exports when it and the site CA expire."""
    from protocol.certs import not_after

    creds = broker.add_gate("site1", unique_name)
    config = EdgeConfig.model_validate(
        {
            "site": "site1",
            "gate": unique_name,
            "mqtt": {
                "host": broker.host,
                "port": broker.tls_port,
                "username": creds.username,
                "tls_ca": str(creds.tls_ca),
                "tls_cert": str(creds.tls_cert),
                "tls_key": str(creds.tls_key),
            },
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "clock": {"trust": "trusted"},
            "metrics": {"listen": "127.0.0.1:0"},
        }
    )
    agent = GateAgent(config)
    agent.start()
    try:
        assert agent.link.wait_connected(10) and agent.metrics.port
        samples = scrape(agent.metrics.port)
        expiry = "gatepost_gate_certificate_expiry_timestamp_seconds"
        assert value(samples, expiry, certificate="client") == not_after(creds.tls_cert).timestamp()
        assert value(samples, expiry, certificate="ca") == not_after(creds.tls_ca).timestamp()
    finally:
        agent.stop(drain_s=0)
