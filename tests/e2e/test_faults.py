"""Nothing is lost: every scan taken at a gate reaches the console store exactly once.

Each test runs the real thing — mosquitto from ``broker/``'s configuration, ``gatepost
console run`` and ``gatepost edge run`` as processes, virtual scanners on
pseudo-terminals — then breaks something and counts at both ends.  "Taken" is what the
gate's outbox committed (its ``last_seq``); "arrived" is what the console stored.  The
proof of exactly-once is that the console holds every sequence number from 1 to the
gate's last, each once, with each scan code once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.credentials import CardRegistry
from protocol import GateTopics
from protocol.mqtt import BrokerEndpoint, make_client
from simulator.site import SimulatedSite

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def code(i: int) -> str:
    return f"{i:012d}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[SimulatedSite]:
    site = SimulatedSite(
        tmp_path / "site",
        gates=["g1"],
        residents=10,
        baudrate=115200,
        pace=False,
        resend_after_s=2.0,
        log_level="WARNING",
    )
    try:
        yield site
    finally:
        site.stop()


def outbox_last_seq(site: SimulatedSite, gate: str) -> int:
    db = sqlite3.connect(f"file:{site.outbox_path(gate)}?mode=ro", uri=True, timeout=10)
    try:
        # A commit that only adds events leaves ``meta`` as it was: the newest row has the number.
        row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        newest = db.execute("SELECT MAX(seq) FROM outbox").fetchone()
        return max(int(row[0]) if row else 0, int(newest[0] or 0))
    finally:
        db.close()


def console_seqs(site: SimulatedSite, gate: str) -> list[int]:
    return [row[0] for row in site.console_rows("SELECT seq FROM events WHERE gate = ? ORDER BY seq", [gate])]


def settle(site: SimulatedSite, gate: str, timeout: float = 90.0) -> int:
    """Wait until the gate has taken all it will (its last seq stops moving) and the console has caught up."""
    deadline = time.monotonic() + timeout
    previous = -1
    while time.monotonic() < deadline:
        last = outbox_last_seq(site, gate)
        if last == previous and len(console_seqs(site, gate)) >= last:
            return last
        previous = last
        time.sleep(0.5)
    raise AssertionError(
        f"console has {len(console_seqs(site, gate))} of {outbox_last_seq(site, gate)} events"
    )


def assert_exactly_once(
    site: SimulatedSite, gate: str, typed: list[str], *, all_typed_taken: bool, torn_lines: int = 0
) -> None:
    last = settle(site, gate)
    seqs = console_seqs(site, gate)
    assert seqs == list(range(1, last + 1)), "every taken event exactly once, no gaps"
    codes = site.stored_codes(gate)
    assert len(codes) == len(set(codes)), "no scan stored twice"
    if all_typed_taken:
        assert sorted(codes) == sorted(typed)
    else:
        # A killed agent may have read the head of a line; the new one then reads its tail
        # as a line of its own (a real serial line does the same).  That torn tail is a scan
        # like any other (decided, refused as unknown, stored once): at most one per kill,
        # and only ever the end of a code that was typed.
        extra = set(codes) - set(typed)
        assert len(extra) <= torn_lines, f"more torn lines than kills: {sorted(extra)}"
        assert all(any(t.endswith(x) and t != x for t in typed) for x in extra), sorted(extra)


def wait_started(site: SimulatedSite, gate: str) -> None:
    assert site.wait_for(
        lambda: site.console_rows("SELECT 1 FROM events WHERE gate = ? AND type = 'agent.started'", [gate]),
        timeout=30,
    ), site.agents[gate].log_tail()


class Typist:
    """Types unique codes into a gate's scanner from a thread, at a steady rate."""

    def __init__(self, site: SimulatedSite, gate: str, start: int, count: int, per_s: float = 800.0) -> None:
        self.scanner = site.scanner(gate)
        self.codes = [code(i) for i in range(start, start + count)]
        self.typed: list[str] = []
        self.per_s = per_s
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        began = time.monotonic()
        for n, value in enumerate(self.codes):
            self.scanner.type(value)
            self.typed.append(value)
            ahead = (n + 1) / self.per_s - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)

    def start(self) -> Typist:
        self.thread.start()
        return self

    def wait_until(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.typed) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    def join(self) -> list[str]:
        self.thread.join(timeout=120)
        return self.typed


def test_broker_killed_and_restarted_mid_stream(site: SimulatedSite):
    site.start()
    wait_started(site, "g1")
    typist = Typist(site, "g1", 0, 5000).start()
    typist.wait_until(1500)
    site.broker.kill()
    time.sleep(1.0)
    site.broker.restart()
    typed = typist.join()
    assert len(typed) == 5000
    assert_exactly_once(site, "g1", typed, all_typed_taken=True)


def test_agent_sigkilled_mid_stream_and_restarted(site: SimulatedSite):
    site.start()
    wait_started(site, "g1")
    typist = Typist(site, "g1", 0, 3000).start()
    typist.wait_until(1000)
    site.agents["g1"].kill()
    taken_at_kill = outbox_last_seq(site, "g1")
    assert taken_at_kill > 0
    time.sleep(0.5)
    site.start_gate("g1")
    typed = typist.join()
    assert_exactly_once(site, "g1", typed, all_typed_taken=False, torn_lines=1)
    # Everything taken before the kill is there — and arrived once, which the seq check proved.
    assert len(console_seqs(site, "g1")) >= taken_at_kill


def test_console_sigkilled_mid_stream_and_down_for_a_burst(site: SimulatedSite):
    site.start()
    wait_started(site, "g1")
    typist = Typist(site, "g1", 0, 2000).start()
    typist.wait_until(700)
    assert site.console is not None
    site.console.kill()
    typist.join()
    # A whole burst while the console is down: the gate keeps taking scans.
    burst = Typist(site, "g1", 2000, 1500, per_s=2000).start()
    burst.join()
    assert site.wait_for(lambda: outbox_last_seq(site, "g1") >= 3500, timeout=30)
    site.start_console()
    assert_exactly_once(site, "g1", typist.typed + burst.typed, all_typed_taken=True)


def test_malformed_payloads_on_every_topic_are_rejected_and_nothing_is_lost(site: SimulatedSite):
    site.start()
    wait_started(site, "g1")
    topics = GateTopics(site.site, "g1")
    junk = [b"", b"\xff\xfe\xfd", b"not json", b"[1,2,3]", b'{"v": 99}', b'{"v": 1}', b"{" * 60000]

    def publish_all(endpoint: BrokerEndpoint, topic_list: list[str], retain: bool = False) -> None:
        client = make_client(endpoint)
        client.connect(endpoint.host, endpoint.port)
        client.loop_start()
        try:
            for topic in topic_list:
                for payload in junk:
                    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()

    # A gate's credentials connect only as that gate (one user name, one client id): the junk
    # client takes g1's place for a moment, as a stolen gate would.  The console's may use a
    # connection of its own.
    gate = site.broker.endpoint(site.credentials[f"gate.{site.site}.g1"])
    console = site.broker.endpoint(site.credentials["console.console"]).for_connection("watch")
    typist = Typist(site, "g1", 0, 1000).start()

    def g1_status() -> tuple | None:
        rows = site.console_rows("SELECT state, payload FROM gate_status WHERE gate = ?", ["g1"])
        return rows[0] if rows else None

    before = g1_status()
    # What the console reads: events and status, published with the gate's own credentials.
    publish_all(gate, [topics.event, topics.status])
    # g1 was away while the junk client held its id; a fresh "online" says it is back and
    # subscribed again (it subscribes before announcing, on the same connection).
    assert site.wait_for(lambda: (now := g1_status()) is not None and now[0] == "online" and now != before)
    # What the gate reads: acks and commands, published with the console's credentials; one retained.
    publish_all(console, [topics.ack, topics.command])
    publish_all(console, [topics.command], retain=True)
    typed = typist.join()
    assert_exactly_once(site, "g1", typed, all_typed_taken=True)
    assert site.console is not None and site.console.running
    assert site.agents["g1"].running
    rejected = site.console_rows("SELECT COUNT(*) FROM rejections")[0][0]
    assert rejected >= len(junk)  # every junk event was refused (status junk too)
    refused_commands = site.console_rows("SELECT COUNT(*) FROM events WHERE type = 'command.rejected'")[0][0]
    assert refused_commands >= len(junk)


# -- a vehicle lane: plates pushed by its LPR camera, and read by its own camera ---------------


def test_vehicle_events_through_a_broker_kill_and_an_agent_kill_arrive_exactly_once(tmp_path: Path):
    """Plates from the lane camera and the LPR camera's pushes, with the broker and then the agent killed
    mid-stream: every event the gate took is stored once, and every push the gate answered is there once."""
    site = SimulatedSite(
        tmp_path / "site",
        gates=[],
        lane_gates=["carpark"],
        residents=60,
        resend_after_s=2.0,
        log_level="WARNING",
    )
    try:
        site.console_config()
        with CardRegistry(site.card_registry) as registry:  # resident cars reach the gate in the card list
            registry.put(site.vehicles.card_entries())
        site.start()
        wait_started(site, "carpark")
        camera = site.lpr_client("carpark")
        pushed: list[str] = []

        def push(start: int, count: int) -> None:
            for i in range(start, start + count):
                plate = f"京A{i:05d}"
                for _ in range(200):  # as a camera does: until the endpoint is up (after a start or restart)
                    try:
                        status, _answer = camera.push(plate, confidence=95)
                    except ConnectionRefusedError:
                        time.sleep(0.1)
                        continue
                    if status == 200:
                        pushed.append(plate)
                    break

        worker = threading.Thread(target=push, args=(0, 300), daemon=True)
        worker.start()
        site.wait_for(lambda: len(pushed) >= 100, timeout=60)
        site.broker.kill()
        time.sleep(1.0)
        site.broker.restart()
        worker.join(timeout=120)
        assert len(pushed) == 300
        site.agents["carpark"].kill()  # SIGKILL: what the gate had taken must still arrive once
        site.start_gate("carpark")
        push(300, 50)
        last = settle(site, "carpark")
        assert console_seqs(site, "carpark") == list(range(1, last + 1)), "every taken event exactly once"
        plates = [
            row[0]
            for row in site.console_rows(
                "SELECT json_extract(data, '$.plate') FROM events WHERE gate = ? AND type = 'access.scan'"
                " AND json_extract(data, '$.reader') = 'car-out'",
                ["carpark"],
            )
        ]
        assert sorted(plates) == sorted(pushed), "each answered push stored once"
        read = site.console_rows(
            "SELECT json_extract(data, '$.plate'), json_extract(data, '$.granted') FROM events"
            " WHERE gate = ? AND type = 'access.scan' AND json_extract(data, '$.reader') = 'car-in'",
            ["carpark"],
        )
        assert read, "the entrance camera read cars meanwhile"
        assert all(plate in site.vehicles.schedule for plate, _ in read)
        assert any(granted for plate, granted in read if plate in site.vehicles.residents), read
        # Plate crops are taken out of the stored JSON into event_crops, one per event that carried one.
        assert not site.console_rows("SELECT id FROM events WHERE json_extract(data, '$.crop') IS NOT NULL")
        referenced = site.console_rows(
            "SELECT count(*) FROM events WHERE json_extract(data, '$.crop_ref') IS NOT NULL AND gate = ?",
            ["carpark"],
        )[0][0]
        assert referenced >= len(read)
        assert site.console_rows("SELECT count(*) FROM event_crops")[0][0] == referenced
    finally:
        site.stop()
