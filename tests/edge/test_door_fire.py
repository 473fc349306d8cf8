"""The fire-alarm input: the door is released and stays released until it clears, whatever else happens.

Three layers: the pure door machine (nothing relocks it), the door I/O on gpiozero's mock
pins (the relay is held released even with no door logic listening, past the relay
watchdog's limit), and the gate agent with a simulated door (events in the outbox, a
granted card and the exit button change nothing, the console raises an alarm).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from console.alarms import AlarmKind, AlarmRules, RuleState, evaluate
from drivers.door_io import DoorHardware, DoorPins, FailMode
from edge.agent import GateAgent, Presented
from edge.config import EdgeConfig
from edge.door import DoorCommandError, DoorEventType, DoorMachine, DoorSettings, RemoteRefusal
from protocol import decode_event
from protocol import events as ev
from simulator.door import DoorModel
from tests.waiting import wait_until

S = 1_000_000_000
FIRE = "GPIO26"
RESIDENT = (13, 13067)


def kinds(events: list) -> list[str]:
    return [str(event.type) for event in events]


# -- the door machine ----------------------------------------------------------------------


def test_nothing_relocks_a_door_the_fire_alarm_released():
    settings = DoorSettings(unlock_s=5, max_unlock_s=30, prealarm_s=20, held_open_s=30)
    door = DoorMachine(settings)
    door.start(0, door_closed=True)
    tripped = door.fire_alarm_changed(active=True, now_ns=1 * S)
    assert kinds(tripped) == [ev.DOOR_FIRE_ALARM, "door.unlocked"]
    assert tripped[1].data == {"cause": "fire", "seconds": None, "extended": False}
    assert door.unlocked and door.outputs.unlocked

    assert "door.unlocked" not in kinds(
        door.access(granted=True, now_ns=2 * S, credential="c", reason="granted")
    )
    assert kinds(door.exit_pressed(3 * S)) == ["door.exit_pressed"]
    with pytest.raises(DoorCommandError) as refused:
        door.remote_lock(now_ns=4 * S)
    assert refused.value.reason is RemoteRefusal.FIRE_ALARM
    assert "door.locked" not in kinds(door.relay_cut(now_ns=5 * S, on_for_s=31.0))
    opened = door.door(closed=False, now_ns=6 * S)
    assert kinds(opened) == ["door.opened"] and opened[0].data == {
        "cause": "fire"
    }  # not forced, not relocked
    assert door.tick(3600 * S) == []  # no timeout, no held-open alarm for an evacuation
    assert door.unlocked

    cleared = door.fire_alarm_changed(active=False, now_ns=3601 * S)
    assert kinds(cleared) == [ev.DOOR_FIRE_ALARM_CLEARED, "door.locked"]
    assert cleared[0].data == {"alarm_for_s": 3600.0}
    assert cleared[1].data == {"cause": "fire_cleared", "unlocked_for_s": 3600.0}
    assert not door.unlocked
    # A door still open after the alarm gets the held-open grace from the clear, not from the opening.
    assert door.tick(3601 * S + 19 * S) == []
    assert kinds(door.tick(3601 * S + 20 * S)) == ["door.held_open_warning"]


def test_a_fire_alarm_during_a_grant_holds_the_door_past_its_unlock_time():
    door = DoorMachine(DoorSettings(unlock_s=5, max_unlock_s=30))
    door.start(0, door_closed=True)
    door.access(granted=True, now_ns=1 * S, credential="c", reason="granted")
    tripped = door.fire_alarm_changed(active=True, now_ns=2 * S)
    assert tripped[1].data["extended"] is True
    assert door.tick(60 * S) == [] and door.unlocked
    cleared = door.fire_alarm_changed(active=False, now_ns=70 * S)
    assert cleared[1].data["unlocked_for_s"] == 69.0  # released since the grant


def test_an_agent_starting_during_a_fire_alarm_starts_released():
    door = DoorMachine(DoorSettings())
    started = door.start(0, door_closed=True, fire=True)
    assert kinds(started) == ["door.locked", ev.DOOR_FIRE_ALARM, "door.unlocked"]
    assert door.unlocked and door.fire_alarm


# -- the door's GPIO -----------------------------------------------------------------------


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


def door_pins(fail_mode: FailMode, **extra: object) -> DoorPins:
    return DoorPins(relay="GPIO17", relay_active_high=False, fail_mode=fail_mode, fire_alarm=FIRE, **extra)


@pytest.mark.parametrize("fail_mode", list(FailMode))
def test_the_hardware_holds_the_lock_released_with_no_door_logic_at_all(factory, fail_mode):
    pins = door_pins(fail_mode)
    hardware = DoorHardware(pins, relay_max_on_s=0.2, pin_factory=factory)
    model = DoorModel(factory, pins)  # the panel's contact closed: no alarm
    try:
        hardware.set_unlocked(False)
        assert not hardware.fire_active and not model.latch_released
        model.set_fire_alarm(True)
        assert hardware.fire_active and model.latch_released  # at once, on the pin's own callback
        assert hardware.set_unlocked(False) is False  # a door logic asking to lock is refused
        assert model.latch_released
        time.sleep(0.6)  # three times the relay watchdog's limit
        assert model.latch_released
        if hardware.watchdog is not None:
            assert hardware.watchdog.cuts == 0
        model.set_fire_alarm(False)
        assert not hardware.fire_active and not model.latch_released  # locked again
        assert hardware.set_unlocked(True) is True and model.latch_released  # and back to normal
    finally:
        hardware.close()


def test_the_fire_input_can_be_active_low(factory):
    pins = door_pins(FailMode.SAFE, fire_alarm_active_high=False)
    hardware = DoorHardware(pins, relay_max_on_s=1, pin_factory=factory)
    model = DoorModel(factory, pins)
    try:
        assert not hardware.fire_active
        factory.pin(FIRE).drive_low()
        assert hardware.fire_active and model.latch_released
    finally:
        hardware.close()


def test_a_cut_fire_wire_reads_as_an_alarm(factory):
    """The default wiring: the panel's normally-closed contact to ground; cut it and the pull-up wins."""
    hardware = DoorHardware(door_pins(FailMode.SAFE), relay_max_on_s=1, pin_factory=factory)
    try:
        factory.pin(FIRE).drive_high()
        assert hardware.fire_active and hardware.unlocked
    finally:
        hardware.close()


# -- the gate agent ------------------------------------------------------------------------


class FireGate:
    def __init__(self, tmp_path: Path) -> None:
        self.factory = MockFactory()
        config = EdgeConfig.model_validate(
            {
                "site": "site1",
                "gate": "lobby",
                "mqtt": {"host": "127.0.0.1", "port": 9},  # the network is down
                "outbox": {"path": str(tmp_path / "outbox.db")},
                "access": {"allow": [f"wiegand26:{RESIDENT[0]}:{RESIDENT[1]}"], "repeat_s": 0},
                "clock": {"trust": "trusted"},
                "gpio": {"pin_factory": "mock"},
                "door": {
                    "pins": {
                        "relay": "GPIO17",
                        "relay_active_high": False,
                        "fail_mode": "fail_safe",
                        "contact": "GPIO27",
                        "exit_button": "GPIO22",
                        "fire_alarm": FIRE,
                    },
                    "behaviour": {
                        "unlock_s": 0.3,
                        "max_unlock_s": 1.0,
                        "prealarm_s": 0.4,
                        "held_open_s": 0.8,
                    },
                },
            }
        )
        self.agent = GateAgent(config, pin_factory=self.factory)
        assert config.door is not None
        self.door = DoorModel(self.factory, config.door.pins)
        self.agent.start()

    def events(self) -> list:
        return [decode_event(row.body) for row in self.agent.outbox.pending(limit=10_000)]

    def types(self) -> list[str]:
        return [event.type for event in self.events()]

    def wait_for(self, event_type: str, count: int = 1) -> list:
        assert wait_until(lambda: self.types().count(event_type) >= count, 5.0), self.types()
        return [event for event in self.events() if event.type == event_type]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[FireGate]:
    gate = FireGate(tmp_path)
    try:
        yield gate
    finally:
        gate.agent.stop(drain_s=0)


def test_a_fire_alarm_releases_the_door_until_it_clears(gate: FireGate):
    assert wait_until(lambda: not gate.door.latch_released, 2.0)  # the maglock holds
    gate.door.set_fire_alarm(True)
    alarm = gate.wait_for(ev.DOOR_FIRE_ALARM)[0]
    assert alarm.data == {"door_open": False}
    assert gate.door.latch_released

    card = f"wiegand26:{RESIDENT[0]}:{RESIDENT[1]}"  # cards and the exit button change nothing
    decision = gate.agent.present(Presented(card, "card", "reader", time.monotonic_ns(), card))
    assert decision is not None and decision.granted
    gate.door.press_exit()
    gate.wait_for("door.exit_pressed")
    assert gate.door.walk_through(wait_s=1.0)
    time.sleep(1.5)  # past unlock_s, max_unlock_s and the held-open alarm
    assert gate.door.latch_released
    since_alarm = gate.types()[gate.types().index(ev.DOOR_FIRE_ALARM) :]
    assert {"door.locked", "door.held_open", "door.forced"}.isdisjoint(since_alarm), since_alarm
    assert gate.agent.door is not None and gate.agent.door.machine.fire_alarm

    gate.door.set_fire_alarm(False)
    gate.wait_for(ev.DOOR_FIRE_ALARM_CLEARED)
    locked = [e for e in gate.events() if e.type == "door.locked" and e.data["cause"] == "fire_cleared"]
    assert locked, gate.types()
    assert wait_until(lambda: not gate.door.latch_released, 2.0)

    # The console raises an operator alarm for it.
    draft = evaluate(AlarmRules(), RuleState(), alarm)
    assert draft is not None and draft.kind is AlarmKind.DOOR_FIRE_ALARM and draft.gate == "lobby"
    assert str(DoorEventType.FIRE_ALARM) == ev.DOOR_FIRE_ALARM
