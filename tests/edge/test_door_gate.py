"""A building door run by the gate agent: Wiegand reader and door on gpiozero's mock pins.

The same path a resident uses: a card pulsed onto D0/D1 with real timing, decoded,
decided by the agent, the relay energised, the door opened by a person in the model —
and every happening an event in the outbox, with the network down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.wiegand import H10301
from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import decode_event
from simulator.door import DoorModel
from simulator.wiegand import VirtualWiegandReader
from tests.waiting import wait_until

PINS = {
    "relay": "GPIO17",
    "contact": "GPIO27",
    "exit_button": "GPIO22",
    "tamper": "GPIO23",
    "green": "GPIO24",
    "red": "GPIO25",
}
RESIDENT = (13, 13067)  # wiegand26:13:13067


class DoorGate:
    def __init__(self, tmp_path: Path) -> None:
        self.factory = MockFactory()
        config = EdgeConfig.model_validate(
            {
                "site": "site1",
                "gate": "building-3",
                "mqtt": {"host": "127.0.0.1", "port": 9},  # nothing listens: the network is down
                "outbox": {"path": str(tmp_path / "outbox.db")},
                "access": {"allow": [f"wiegand26:{RESIDENT[0]}:{RESIDENT[1]}"], "repeat_s": 2.0},
                "clock": {"trust": "trusted"},
                "gpio": {"pin_factory": "mock"},
                "door": {
                    "pins": PINS,
                    "behaviour": {
                        "unlock_s": 0.5,
                        "max_unlock_s": 2.0,
                        "prealarm_s": 0.4,
                        "held_open_s": 0.8,
                    },
                },
                "wiegand": [
                    {"name": "reader", "d0": "GPIO5", "d1": "GPIO6", "min_silence_ms": 150}
                ],  # 150 ms: a loaded machine may pause the simulated reader mid-frame longer than 30
            }
        )
        self.agent = GateAgent(config, pin_factory=self.factory)
        self.door = DoorModel(self.factory, self.agent.config.door.pins)  # type: ignore[union-attr]
        self.reader = VirtualWiegandReader(self.factory, "GPIO5", "GPIO6", pulse_us=100, gap_us=1000)
        self.agent.start()

    def events(self) -> list:
        return [decode_event(row.body) for row in self.agent.outbox.pending(limit=10_000)]

    def types(self) -> list[str]:
        return [event.type for event in self.events()]

    def wait_for(self, event_type: str, count: int = 1, timeout: float = 5.0) -> list:
        assert wait_until(lambda: self.types().count(event_type) >= count, timeout), self.types()
        return [event for event in self.events() if event.type == event_type]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[DoorGate]:
    gate = DoorGate(tmp_path)
    try:
        yield gate
    finally:
        gate.agent.stop(drain_s=0)


def test_relay_is_off_at_start(gate: DoorGate):
    assert not gate.door.relay_energised


def test_a_known_card_opens_the_door_offline(gate: DoorGate):
    gate.reader.send_card(*RESIDENT, H10301)
    scan = gate.wait_for("access.scan")[0]
    assert scan.data == {
        "credential": "card",
        "code": "wiegand26:13:13067",
        "granted": True,
        "reason": "granted",
        "reader": "reader",
    }
    unlocked = gate.wait_for("door.unlocked")[0]
    assert unlocked.data["cause"] == "grant"
    assert gate.door.walk_through(wait_s=1.0)
    gate.wait_for("door.closed")
    assert "door.forced" not in gate.types()
    assert gate.wait_for("door.locked")
    assert not gate.agent.link.connected


def test_an_unknown_card_is_denied_and_the_relay_stays_off(gate: DoorGate):
    gate.reader.send_card(1, 4242, H10301)
    scan = gate.wait_for("access.scan")[0]
    assert (scan.data["granted"], scan.data["reason"]) == (False, "unknown")
    time.sleep(0.2)
    assert not gate.door.relay_energised
    assert "door.unlocked" not in gate.types()


def test_the_same_card_twice_in_the_repeat_window_is_one_presentation(gate: DoorGate):
    gate.reader.send_card(*RESIDENT, H10301)
    gate.wait_for("access.scan")
    gate.reader.send_card(*RESIDENT, H10301)
    # wait for the second frame to be decoded and judged (a loaded machine takes its time)
    deadline = time.monotonic() + 5.0
    while gate.agent.repeats.suppressed < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gate.agent.repeats.suppressed == 1
    assert gate.types().count("access.scan") == 1


def test_a_corrupted_frame_is_a_typed_rejection_never_a_card(gate: DoorGate):
    bits = H10301.encode(*RESIDENT)
    flipped = bits[:5] + ("1" if bits[5] == "0" else "0") + bits[6:]  # one data bit: parity fails
    gate.reader.send_bits(flipped)
    rejected = gate.wait_for("door.card_rejected")[0]
    assert rejected.data["reason"] == "parity"
    assert "access.scan" not in gate.types()
    assert not gate.door.relay_energised


def test_forced_and_held_open_raise_alarms(gate: DoorGate):
    gate.door.force_open()
    gate.wait_for("door.forced")
    gate.wait_for("door.held_open", timeout=3.0)
    gate.door.close()
    closed = gate.wait_for("door.closed")[0]
    assert closed.data["forced"] is True


def test_exit_button_unlocks(gate: DoorGate):
    gate.door.press_exit()
    unlocked = gate.wait_for("door.unlocked")[0]
    assert unlocked.data["cause"] == "exit"
