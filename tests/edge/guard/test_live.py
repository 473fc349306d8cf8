"""The live stream on the real server (uvicorn on the agent's thread): decisions arrive as they happen.

The screen is local, so it keeps working with the broker down: the last test stops the
broker and scans with a virtual serial scanner, and the page's stream still updates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.launcher import Broker
from simulator.scanner import VirtualScanner
from tests.waiting import wait_until

from .conftest import PIN, GuardGate, SseReader


@pytest.fixture
def stream(guard_gate: GuardGate) -> Iterator[SseReader]:
    reader = SseReader(guard_gate.url)
    try:
        yield reader
    finally:
        reader.close()


def test_the_stream_starts_idle_then_carries_each_decision(guard_gate: GuardGate, stream: SseReader):
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert stream.next() == ("state", {"site": "longtan", "gate": "north", "last": None, "age_s": None})
    guard_gate.scan("104729")
    event, granted = stream.next()
    assert event == "show"
    assert (granted["kind"], granted["granted"], granted["reason"]) == ("decision", True, "granted")
    guard_gate.scan("999999")
    _, denied = stream.next("show")
    assert (denied["granted"], denied["reason"], denied["photo"]) == (False, "unknown", None)


def test_a_page_that_connects_late_still_sees_the_current_decision(guard_gate: GuardGate):
    guard_gate.scan("999999")
    reader = SseReader(guard_gate.url)
    try:
        event, state = reader.next()
        assert event == "state" and state["last"]["reason"] == "unknown" and state["age_s"] < 30
    finally:
        reader.close()


def test_a_manual_let_through_is_pushed_to_every_page(guard_gate: GuardGate, stream: SseReader):
    second = SseReader(guard_gate.url)
    try:
        stream.next("state")
        second.next("state")
        response = guard_gate.post("/api/manual", {"pin": PIN, "guard": "07", "reason": "emergency"})
        assert response.status_code == 200
        for reader in (stream, second):
            _, shown = reader.next("show")
            assert (shown["kind"], shown["guard"], shown["manual_reason"]) == ("manual", "07", "emergency")
    finally:
        second.close()


def test_stopping_the_agent_ends_the_stream_and_frees_the_port(tmp_path: Path):
    gate = GuardGate(tmp_path)
    reader = SseReader(gate.url)
    reader.next("state")
    gate.close()
    with pytest.raises(AssertionError, match="stream ended"):
        reader.next()
    reader.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(gate.url, timeout=2)


def test_the_screen_keeps_working_with_the_broker_down(tmp_path: Path, broker: Broker):
    creds = broker.add_gate("longtan", "north")
    secret = tmp_path / "gate.secret"
    secret.write_text(creds.password)
    with VirtualScanner(tmp_path / "ttyACM0", baudrate=115200, pace=False) as scanner:
        gate = GuardGate(
            tmp_path,
            mqtt={
                "host": broker.host,
                "port": broker.port,
                "username": creds.username,
                "password_file": str(secret),
            },
            extra={"scanners": [{"name": "scanner", "url": str(scanner.link_path), "baudrate": 115200}]},
        )
        reader = SseReader(gate.url)
        try:
            assert wait_until(lambda: gate.agent.link.connected, 10)
            reader.next("state")
            broker.stop()
            assert wait_until(lambda: not gate.agent.link.connected, 10)
            scanner.type("104729")
            _, shown = reader.next("show")
            assert (shown["granted"], shown["reader"]) == (True, "scanner")
            response = gate.post("/api/manual", {"pin": PIN, "guard": "07", "reason": "forgot_pass"})
            assert response.status_code == 200
            assert reader.next("show")[1]["kind"] == "manual"
            assert gate.events("access.manual")  # waiting in the outbox for the console
        finally:
            reader.close()
            gate.close()


def test_a_port_in_use_leaves_the_gate_deciding_without_a_screen(tmp_path: Path, caplog):
    import socket
    import time

    from edge.agent import GateAgent, Presented
    from edge.config import EdgeConfig

    from .conftest import PIN_HASH

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    config = EdgeConfig.model_validate(
        {
            "site": "longtan",
            "gate": "north",
            "mqtt": {"host": "127.0.0.1", "port": 9},
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "access": {"allow": ["104729"]},
            "guard_screen": {
                "enabled": True,
                "listen": f"127.0.0.1:{port}",
                "pin_hash": PIN_HASH,
                "visitor_db": str(tmp_path / "visitors.db"),
            },
        }
    )
    agent = GateAgent(config)
    try:
        agent.start()
        assert agent.guard.url is None
        assert f"guard screen not served on 127.0.0.1:{port}" in caplog.text
        decision = agent.present(Presented("104729", "pass", "scanner", time.monotonic_ns(), "104729"))
        assert decision is not None and decision.granted
    finally:
        agent.stop(drain_s=0)
        taken.close()


def test_a_door_forced_open_and_tampered_with_turns_the_screen_red(guard_gate: GuardGate, stream: SseReader):
    stream.next("state")
    assert guard_gate.door is not None
    guard_gate.door.force_open()  # opened with the lock closed: no grant, no exit button
    _event, shown = stream.next("show")
    assert (shown["kind"], shown["door"], shown["granted"]) == ("alarm", "forced", False)
    guard_gate.door.set_tamper(True)
    _event, shown = stream.next("show")
    assert (shown["kind"], shown["door"]) == ("alarm", "tamper")
    assert [e.type for e in guard_gate.events() if e.type in ("door.forced", "door.tamper")] == [
        "door.forced",
        "door.tamper",
    ]


def test_the_door_alarm_texts_exist_in_both_languages():
    import json
    from pathlib import Path

    import edge.guard
    from edge.guard.texts import DOOR_ALARMS

    folder = Path(edge.guard.__file__).parent / "locales"
    for lang in ("zh", "en"):
        texts = json.loads((folder / f"{lang}.json").read_text())
        assert texts["ui"]["alarm"]
        assert all(texts["door"][name] for name in DOOR_ALARMS)
