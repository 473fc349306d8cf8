"""The door controller on mock pins, with the door model's people using it in real (short) time."""

from __future__ import annotations

import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.door_io import DoorHardware, DoorPins, FailMode
from edge.door import DoorController, DoorEvent, DoorEventType, DoorSettings
from simulator.door import DoorModel

E = DoorEventType
WAIT_S = 3.0
FAST = DoorSettings(unlock_s=0.3, max_unlock_s=1.0, prealarm_s=0.3, held_open_s=0.6, feedback_s=0.1)
PINS = DoorPins(
    relay="GPIO17",
    contact="GPIO27",
    exit_button="GPIO22",
    tamper="GPIO23",
    green="GPIO24",
    red="GPIO25",
    buzzer="GPIO12",
)


class Sink:
    """Collects door events and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[DoorEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: DoorEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, kind: DoorEventType, count: int = 1, timeout: float = WAIT_S) -> DoorEvent:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.of(kind)) >= count, timeout)
            assert ok, f"no {kind} in {[e.type.value for e in self.events]}"
            return self.of(kind)[count - 1]

    def of(self, kind: DoorEventType) -> list[DoorEvent]:
        return [e for e in self.events if e.type is kind]

    def types(self) -> list[DoorEventType]:
        with self._cond:
            return [e.type for e in self.events]


def build(settings: DoorSettings = FAST, pins: DoorPins = PINS, relay_max_on_s: float | None = None):
    factory = MockFactory()
    hardware = DoorHardware(
        pins, relay_max_on_s=relay_max_on_s or settings.relay_max_on_s, pin_factory=factory
    )
    model = DoorModel(factory, pins)  # after the hardware: it puts the switches where the door has them
    sink = Sink()
    controller = DoorController(settings, hardware, sink)
    return factory, hardware, model, sink, controller


@pytest.fixture
def rig():
    factory, hardware, model, sink, controller = build()
    controller.start()
    try:
        yield model, sink, controller, factory
    finally:
        controller.stop()
        hardware.close()
        factory.reset()


def grant(controller: DoorController) -> None:
    controller.access(granted=True, credential="em4100:01000734E0", reason="granted", reader="r1")


def test_a_resident_with_a_card_walks_through(rig):
    model, sink, controller, factory = rig
    assert sink.wait_for(E.LOCKED).data["cause"] == "start"
    grant(controller)
    assert factory.pin("GPIO24").state  # green light on while unlocked
    assert model.walk_through(walk_s=0.1)
    sink.wait_for(E.CLOSED)
    assert sink.types() == [E.LOCKED, E.ACCESS_GRANTED, E.UNLOCKED, E.OPENED, E.LOCKED, E.CLOSED]
    assert sink.of(E.LOCKED)[1].data["cause"] == "opened"
    assert not model.relay_energised and not factory.pin("GPIO24").state
    assert [h.what for h in model.history] == ["opened", "closed"]


def test_nobody_gets_through_a_locked_door_without_forcing_it(rig):
    model, sink, controller, _ = rig
    assert not model.open()
    assert not model.door_open
    controller.access(granted=False, credential="wiegand26:1:2", reason="unknown")
    assert not model.walk_through(wait_s=0.2)
    assert E.OPENED not in sink.types() and E.FORCED not in sink.types()


def test_forcing_the_door_alarms_until_it_is_closed(rig):
    model, sink, _, factory = rig
    model.force_open()
    sink.wait_for(E.FORCED)
    assert factory.pin("GPIO12").state and factory.pin("GPIO25").state  # buzzer and red light
    model.close()
    closed = sink.wait_for(E.CLOSED)
    assert closed.data["forced"] is True
    assert not factory.pin("GPIO12").state


def test_a_door_held_open_warns_then_alarms(rig):
    model, sink, controller, _ = rig
    grant(controller)
    assert model.walk_through(walk_s=0.1, hold_s=0.8)
    closed = sink.wait_for(E.CLOSED)
    assert closed.data["held_open"] is True
    types = sink.types()
    assert (
        types.index(E.OPENED)
        < types.index(E.HELD_OPEN_WARNING)
        < types.index(E.HELD_OPEN)
        < types.index(E.CLOSED)
    )


def test_leaving_with_the_exit_button(rig):
    model, sink, _, _ = rig
    assert model.leave(walk_s=0.1)
    sink.wait_for(E.CLOSED)
    unlocked = sink.wait_for(E.UNLOCKED)
    assert unlocked.data["cause"] == "exit"
    assert sink.types()[1:] == [E.EXIT_PRESSED, E.UNLOCKED, E.OPENED, E.LOCKED, E.CLOSED]


def test_an_unused_unlock_relocks_on_time(rig):
    model, sink, controller, _ = rig
    started = time.monotonic()
    grant(controller)
    assert model.latch_released
    locked = sink.wait_for(E.LOCKED, count=2)
    assert locked.data["cause"] == "timeout"
    assert 0.3 <= time.monotonic() - started < 1.5
    assert not model.latch_released


def test_tamper_is_reported(rig):
    model, sink, _, _ = rig
    model.set_tamper(True)
    sink.wait_for(E.TAMPER)
    model.set_tamper(False)
    sink.wait_for(E.TAMPER_CLEARED)


def test_the_watchdog_drops_a_relay_the_door_logic_holds_too_long():
    # Misconfigured on purpose: the relay may be on 0.3 s but the door logic wants 1 s.
    settings = DoorSettings(unlock_s=1.0, max_unlock_s=1.0, prealarm_s=None, held_open_s=None)
    _factory, hardware, model, sink, controller = build(settings, relay_max_on_s=0.3)
    controller.start()
    try:
        grant(controller)
        cut = sink.wait_for(E.RELAY_WATCHDOG)
        assert cut.data["on_for_s"] >= 0.3
        assert sink.wait_for(E.LOCKED, count=2).data["cause"] == "watchdog"
        assert not model.relay_energised and not controller.machine.unlocked
        grant(controller)  # acknowledged and unlatched: the next grant works
        assert model.wait_released(1.0)
    finally:
        controller.stop()
        hardware.close()


def test_stopping_locks_the_door():
    _factory, hardware, model, sink, controller = build()
    controller.start()
    grant(controller)
    assert model.relay_energised
    controller.stop()
    assert not model.relay_energised
    assert sink.of(E.LOCKED)[-1].data["cause"] == "shutdown"
    hardware.close()


def test_fail_safe_door_is_free_until_the_controller_locks_it():
    pins = PINS.model_copy(update={"fail_mode": FailMode.SAFE})
    _factory, hardware, model, sink, controller = build(pins=pins)
    assert model.latch_released and not model.relay_energised  # no power: free exit
    controller.start()
    try:
        assert not model.latch_released and model.relay_energised  # powered to hold
        grant(controller)
        assert model.walk_through(walk_s=0.05)
        sink.wait_for(E.CLOSED)
    finally:
        controller.stop()
        hardware.close()
    assert model.latch_released  # released again on the way down
