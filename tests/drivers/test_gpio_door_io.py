"""Door GPIO on gpiozero's MockFactory: relay safety, polarity, the watchdog, switch inputs."""

from __future__ import annotations

import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory
from pydantic import ValidationError

from drivers.door_io import (
    Contact,
    DoorHardware,
    DoorInput,
    DoorIoError,
    DoorPins,
    FailMode,
    RelayWatchdog,
    make_pin_factory,
)

RELAY = "GPIO17"


def pins(**overrides) -> DoorPins:
    base = dict(
        relay=RELAY, contact="GPIO27", exit_button="GPIO22", tamper="GPIO23", green="GPIO24", red="GPIO25"
    )
    return DoorPins(**(base | overrides))


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


def energised_level(p: DoorPins) -> bool:
    return p.relay_active_high


@pytest.mark.parametrize("active_high", [True, False])
@pytest.mark.parametrize("fail_mode", list(FailMode))
def test_the_relay_is_never_energised_at_start_or_after_close(factory, active_high, fail_mode):
    p = pins(relay_active_high=active_high, fail_mode=fail_mode)
    hw = DoorHardware(p, relay_max_on_s=5, pin_factory=factory)
    relay_pin = factory.pin(RELAY)
    assert relay_pin.function == "output"
    assert relay_pin.state != energised_level(p)
    assert not hw.relay_energised
    # states[0] is the pin as an input before the driver took it; every level written since is "off"
    assert all(s.state != energised_level(p) for s in relay_pin.states[1:])
    assert hw.unlocked is (fail_mode is FailMode.SAFE)  # fail-safe: no power means free
    hw.set_unlocked(fail_mode is FailMode.SECURE)  # energise it...
    assert relay_pin.state == energised_level(p)
    hw.close()  # ...and closing de-energises it first
    assert relay_pin.state != energised_level(p)


def test_fail_secure_energises_to_unlock_and_fail_safe_to_lock(factory):
    secure = DoorHardware(pins(), relay_max_on_s=5, pin_factory=factory)
    secure.set_unlocked(True)
    assert secure.relay_energised and secure.unlocked
    secure.set_unlocked(False)
    assert not secure.relay_energised and not secure.unlocked
    secure.close()
    safe = DoorHardware(pins(fail_mode=FailMode.SAFE), relay_max_on_s=5, pin_factory=factory)
    assert safe.watchdog is None  # cutting a fail-safe relay would only ever unlock
    safe.set_unlocked(False)
    assert safe.relay_energised and not safe.unlocked
    safe.set_unlocked(True)
    assert not safe.relay_energised and safe.unlocked
    safe.close()


def test_watchdog_cuts_the_relay_after_its_maximum_and_stays_latched(factory):
    cuts = []
    cut = threading.Event()
    hw = DoorHardware(
        pins(), relay_max_on_s=0.2, pin_factory=factory, on_watchdog=lambda s: (cuts.append(s), cut.set())
    )
    try:
        started = time.monotonic()
        assert hw.set_unlocked(True)
        assert cut.wait(2)
        assert not hw.relay_energised
        assert 0.2 <= time.monotonic() - started < 1.0
        assert cuts and cuts[0] >= 0.2 and hw.watchdog.cuts == 1
        assert not hw.set_unlocked(True)  # latched: a stuck loop cannot re-energise it
        assert not hw.relay_energised
        hw.set_unlocked(False)  # acknowledged
        assert hw.set_unlocked(True) and hw.relay_energised
    finally:
        hw.close()


def test_watchdog_cuts_even_while_the_door_loop_is_wedged(factory):
    hw = DoorHardware(pins(), relay_max_on_s=0.15, pin_factory=factory)
    try:
        hw.set_unlocked(True)
        with hw._lock:  # the door logic holds its lock and never lets go...
            deadline = time.monotonic() + 2
            while hw.relay_energised and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not hw.relay_energised  # ...and the relay drops anyway
    finally:
        hw.close()


def test_watchdog_counts_continuous_on_time_only():
    off = []
    wd = RelayWatchdog(lambda: off.append(1), 0.5)
    try:
        for _ in range(6):  # on for 0.1 s, off, on again: 0.6 s in all, never 0.5 s in one go
            assert wd.energise(lambda: None)
            time.sleep(0.1)
            wd.release(lambda: None)
        assert off == [] and wd.cuts == 0
    finally:
        wd.close()


def test_switch_inputs_follow_their_wiring(factory):
    seen = []
    hw = DoorHardware(
        pins(exit_type=Contact.NORMALLY_OPEN, tamper_type=Contact.NORMALLY_CLOSED),
        relay_max_on_s=5,
        pin_factory=factory,
        on_input=lambda which, active, at: seen.append((which, active)),
    )
    try:
        contact, exit_button, tamper = factory.pin("GPIO27"), factory.pin("GPIO22"), factory.pin("GPIO23")
        contact.drive_low()  # normally closed reed switch closed: the door is shut
        tamper.drive_low()  # tamper loop intact
        seen.clear()
        assert hw.door_closed is True and not hw.tampered
        contact.drive_high()  # the switch opens: the door opened
        exit_button.drive_low()  # the push button closes to ground
        exit_button.drive_high()
        tamper.drive_high()  # the cover came off
        assert seen == [
            (DoorInput.CONTACT, True),
            (DoorInput.EXIT, True),
            (DoorInput.EXIT, False),
            (DoorInput.TAMPER, True),
        ]
        assert hw.door_closed is False and hw.tampered
    finally:
        hw.close()


def test_normally_open_contact_reads_the_other_way(factory):
    hw = DoorHardware(pins(contact_type=Contact.NORMALLY_OPEN), relay_max_on_s=5, pin_factory=factory)
    try:
        factory.pin("GPIO27").drive_high()
        assert hw.door_closed is True
        factory.pin("GPIO27").drive_low()
        assert hw.door_closed is False
    finally:
        hw.close()


def test_lights_follow_their_polarity(factory):
    hw = DoorHardware(pins(lights_active_high=False), relay_max_on_s=5, pin_factory=factory)
    try:
        assert factory.pin("GPIO24").state is True  # active-low LED off
        hw.set_lights(green=True, red=False)
        assert factory.pin("GPIO24").state is False and factory.pin("GPIO25").state is True
    finally:
        hw.close()


def test_a_pin_used_twice_is_a_configuration_error():
    with pytest.raises(ValidationError, match="own pin"):
        pins(contact=RELAY)
    with pytest.raises(ValidationError):
        DoorPins(relay=RELAY, surprise=1)


def test_pin_factory_by_name():
    assert isinstance(make_pin_factory("mock"), MockFactory)
    assert make_pin_factory(None) is None
    with pytest.raises(DoorIoError, match="unknown pin factory"):
        make_pin_factory("nonesuch")
    assert issubclass(DoorIoError, ValueError)


def test_a_failed_build_releases_the_pins_it_took(factory):
    with pytest.raises(Exception):  # noqa: B017 - gpiozero's own error for a bad pin name
        DoorHardware(pins(red="GPIO99"), relay_max_on_s=5, pin_factory=factory)
    hw = DoorHardware(pins(), relay_max_on_s=5, pin_factory=factory)  # every pin is free again
    hw.close()
