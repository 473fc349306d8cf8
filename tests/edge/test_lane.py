"""The vehicle lane: the anti-crush rule as a property, the alarms, and the barrier's pins on gpiozero's mock factory."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.barrier import BarrierHardware, BarrierOutput, BarrierPins
from edge.lane import Command, Lane, LaneMachine, LaneSettings
from protocol import events as ev
from tests.waiting import wait_until

S = 1_000_000_000
MS = 1_000_000

ACTIONS = st.one_of(
    st.tuples(st.just("open")),
    st.tuples(st.just("vehicle"), st.booleans()),
    st.tuples(st.just("passed")),
    st.tuples(st.just("arm_up"), st.booleans()),
    st.tuples(st.just("close")),
    st.tuples(st.just("tick")),
)
STEPS = st.lists(st.tuples(st.integers(0, 40_000).map(lambda ms: ms * MS), ACTIONS), max_size=80)
LANE_SETTINGS = st.builds(
    lambda timeout, too_long: LaneSettings(open_timeout_s=timeout, open_too_long_s=too_long),
    st.floats(0.5, 60.0),
    st.floats(1.0, 120.0),
)


def run(machine: LaneMachine, steps):
    """Apply the steps; yield (whether a vehicle is on the loop, the step) after each."""
    now = 0
    for advance, action in steps:
        now += advance
        name, *args = action
        if name == "open":
            step = machine.open("grant", now)
        elif name == "vehicle":
            step = machine.vehicle(args[0], now)
        elif name == "passed":
            step = machine.passed(now)
        elif name == "arm_up":
            step = machine.arm_up(args[0], now)
        elif name == "close":
            step = machine.close("manual", now)
        else:
            step = machine.tick(now)
        yield machine.present, step


@settings(max_examples=400, deadline=None)
@given(LANE_SETTINGS, st.booleans(), STEPS)
def test_the_arm_never_closes_on_a_present_vehicle(lane_settings, has_close, steps):
    """Whatever happens and in whatever order, no close command is given while the loop reads a vehicle."""
    machine = LaneMachine("lane", lane_settings, has_close=has_close)
    for present, step in run(machine, steps):
        if present:
            assert Command.CLOSE not in step.commands
            # the controller lowering the arm by itself is observed, not commanded
            assert not any(e.type == ev.LANE_CLOSED and e.data["cause"] != "controller" for e in step.events)


@settings(max_examples=200, deadline=None)
@given(LANE_SETTINGS, STEPS)
def test_a_held_close_is_given_once_the_loop_clears(lane_settings, steps):
    """Anti-crush holds a close; it does not forget it: the arm never stays up with a due close and a clear loop."""
    machine = LaneMachine("lane", lane_settings, has_close=True)
    for present, _ in run(machine, steps):
        if not present:
            assert machine.close_due is None


def test_the_arm_closes_after_the_vehicle_has_passed():
    m = LaneMachine("lane", LaneSettings(), has_close=True)
    assert m.vehicle(True, 0).commands == []
    step = m.open("grant", 1 * S, credential="plate:BJ-A12345")
    assert step.commands == [Command.OPEN]
    assert m.tick(2 * S).commands == []
    step = m.vehicle(False, 4 * S)
    assert step.commands == [Command.CLOSE]
    assert [e.type for e in step.events] == [ev.LANE_VEHICLE_LEFT, ev.LANE_CLOSED]
    assert step.events[1].data["cause"] == "passed"


def test_an_unused_open_times_out_and_a_second_car_holds_the_close():
    m = LaneMachine("lane", LaneSettings(open_timeout_s=10), has_close=True)
    m.open("grant", 0)
    m.vehicle(True, 12 * S)  # arrives late: the open is used now
    assert m.tick(13 * S).commands == []
    m2 = LaneMachine("lane", LaneSettings(open_timeout_s=10), has_close=True)
    m2.open("grant", 0)
    step = m2.tick(11 * S)
    assert step.commands == [Command.CLOSE]
    assert step.events[0].data["cause"] == "timeout"


def test_open_too_long_and_forced_open_are_alarms():
    m = LaneMachine("lane", LaneSettings(open_too_long_s=20, open_timeout_s=600), has_close=False)
    m.open("grant", 0)
    m.vehicle(True, 1 * S)
    assert [e.type for e in m.tick(21 * S).events] == [ev.LANE_OPEN_TOO_LONG]
    assert m.tick(30 * S).events == []  # once per opening
    forced = LaneMachine("lane", LaneSettings(), has_close=False)
    assert [e.type for e in forced.arm_up(True, 100 * S).events] == [ev.LANE_FORCED_OPEN]
    assert [e.type for e in forced.passed(101 * S).events] == []  # the arm is (forced) up: said once
    unopened = LaneMachine("lane", LaneSettings(), has_close=False)
    assert [e.type for e in unopened.passed(5 * S).events] == [ev.LANE_FORCED_OPEN]
    opened = LaneMachine("lane", LaneSettings(arm_travel_s=6), has_close=False)
    opened.open("grant", 0)
    assert opened.arm_up(True, 3 * S).events == []  # the arm rising after our own pulse


# -- the hardware ------------------------------------------------------------------------


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


PINS = BarrierPins(open="GPIO5", close="GPIO6", loop="GPIO13", passed="GPIO19", pulse_s=0.1)


def test_a_command_is_a_pulse_and_no_relay_is_energised_at_start_or_close(factory):
    hw = BarrierHardware(PINS, pin_factory=factory)
    open_pin = factory.pin("GPIO5")
    assert not open_pin.state
    assert hw.pulse_open()
    assert open_pin.state
    wait_until(lambda: not open_pin.state, timeout=2)
    assert hw.pulses(BarrierOutput.OPEN) == 1
    assert hw.pulse_open()
    hw.close()
    assert not open_pin.state and not factory.pin("GPIO6").state


def test_the_hardware_refuses_to_close_on_a_vehicle_whatever_asks(factory):
    hw = BarrierHardware(PINS, pin_factory=factory)
    loop = factory.pin("GPIO13")
    loop.drive_low()  # the detector's contact closes to ground: a vehicle
    assert hw.vehicle_present
    assert not hw.pulse_close()
    assert not factory.pin("GPIO6").state
    assert hw.refused_closes == 1
    loop.drive_high()
    assert hw.pulse_close()
    hw.close()


def test_a_stuck_pulse_is_cut_by_the_watchdog(factory):
    cuts = []
    hw = BarrierHardware(PINS, pin_factory=factory, on_watchdog=lambda which, s: cuts.append((which, s)))
    relay = hw._relays[BarrierOutput.OPEN]
    relay.pulse_s = 30.0  # the release timer would come far too late: as if its thread were wedged
    assert hw.pulse_open()
    wait_until(lambda: cuts, timeout=3)
    assert not factory.pin("GPIO5").state
    assert cuts[0][0] is BarrierOutput.OPEN
    assert not hw.pulse_open()  # latched until a release
    hw.close()


def test_the_lane_runtime_opens_on_a_grant_and_closes_after_the_car(factory):
    events = []
    hw = BarrierHardware(PINS, pin_factory=factory)
    lane = Lane("north-car", "in", LaneSettings(), hw, lambda t, d: events.append((t, d)))
    lane.start()
    try:
        loop = factory.pin("GPIO13")
        loop.drive_low()
        assert lane.access(True, None, credential="plate:BJ-A12345")
        wait_until(lambda: factory.pin("GPIO5").state or hw.pulses(BarrierOutput.OPEN), timeout=2)
        assert not lane.access(False, None)
        loop.drive_high()
        wait_until(lambda: any(t == ev.LANE_CLOSED for t, _ in events), timeout=3)
        assert hw.pulses(BarrierOutput.CLOSE) == 1
        assert lane.open("visitor's car, list down", operator="guard-1")
        wait_until(lambda: any(t == ev.LANE_MANUAL_OPEN for t, _ in events), timeout=3)
        manual = next(d for t, d in events if t == ev.LANE_MANUAL_OPEN)
        assert manual == {"lane": "north-car", "cause": "visitor's car, list down", "operator": "guard-1"}
        assert not lane.open("  ", operator="guard-1")
    finally:
        lane.close()
    types = [t for t, _ in events]
    assert types[:3] == [ev.LANE_OPENED, ev.LANE_VEHICLE_LEFT, ev.LANE_CLOSED]
    assert ev.LANE_OPEN_REFUSED in types
