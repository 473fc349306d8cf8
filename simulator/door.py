"""A door on mock pins: a leaf, a latch the lock relay releases, and the people who use it.

The model reads the relay pin the agent drives and drives the contact, exit-button and
tamper pins the agent reads, through the same wiring rules (:class:`~drivers.door_io.DoorPins`:
pull-ups, normally-open or -closed switches, relay polarity, fail-secure or fail-safe), so
a test exercises the real pin mapping rather than a shortcut.  A locked door does not open
unless forced.  Everything done is recorded in :attr:`DoorModel.history`.

Build the model after :class:`~drivers.door_io.DoorHardware`: setting a pull-up drives a
mock pin, so the model must come second to put the switches where the physical door has them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from gpiozero.pins.mock import MockFactory, MockPin

from drivers.door_io import Contact, DoorPins, FailMode


@dataclass(frozen=True, slots=True)
class Happening:
    at: float
    what: str


class DoorModel:
    """The physical door behind one :class:`~drivers.door_io.DoorPins` wiring."""

    def __init__(self, factory: MockFactory, pins: DoorPins, *, door_open: bool = False) -> None:
        self.pins = pins
        self._relay: MockPin = factory.pin(pins.relay)
        self._contact = factory.pin(pins.contact) if pins.contact is not None else None
        self._exit = factory.pin(pins.exit_button) if pins.exit_button is not None else None
        self._tamper = factory.pin(pins.tamper) if pins.tamper is not None else None
        self._fire = factory.pin(pins.fire_alarm) if pins.fire_alarm is not None else None
        self._lock = threading.RLock()
        self.history: list[Happening] = []
        self.door_open = door_open
        self.tampered = False
        self._drive_switch(self._contact, pins.contact_type, normal=not door_open)
        self._drive_switch(self._exit, pins.exit_type, normal=True)
        self._drive_switch(self._tamper, pins.tamper_type, normal=True)
        self.fire = False
        self._drive_fire(False)

    def _note(self, what: str) -> None:
        self.history.append(Happening(time.monotonic(), what))

    def _drive_switch(self, pin: MockPin | None, kind: Contact, *, normal: bool) -> None:
        if pin is None:
            return
        closed = normal if kind is Contact.NORMALLY_CLOSED else not normal
        # With a pull-up the switch pulls the pin to ground; with a pull-down it pulls it high.
        high = not closed if self.pins.pull_up else closed
        if high:
            pin.drive_high()
        else:
            pin.drive_low()

    @property
    def relay_energised(self) -> bool:
        return bool(self._relay.state) == self.pins.relay_active_high

    @property
    def latch_released(self) -> bool:
        """Whether the lock lets the door open now, as the relay stands."""
        energised = self.relay_energised
        return energised if self.pins.fail_mode is FailMode.SECURE else not energised

    def _set_open(self, door_open: bool) -> None:
        self.door_open = door_open
        self._drive_switch(self._contact, self.pins.contact_type, normal=not door_open)

    def open(self) -> bool:
        """Pull the handle: the door opens only if the latch is released."""
        with self._lock:
            if self.door_open:
                return True
            if not self.latch_released:
                self._note("tried a locked door")
                return False
            self._note("opened")
            self._set_open(True)
            return True

    def force_open(self) -> None:
        with self._lock:
            self._note("forced open")
            self._set_open(True)

    def close(self) -> None:
        with self._lock:
            if self.door_open:
                self._note("closed")
                self._set_open(False)

    def press_exit(self, hold_s: float = 0.05) -> None:
        """Press and release the request-to-exit button."""
        self._note("pressed exit")
        self._drive_switch(self._exit, self.pins.exit_type, normal=False)
        time.sleep(hold_s)
        self._drive_switch(self._exit, self.pins.exit_type, normal=True)

    def _drive_fire(self, active: bool) -> None:
        if self._fire is None:
            return
        if active == self.pins.fire_alarm_active_high:
            self._fire.drive_high()
        else:
            self._fire.drive_low()

    def set_fire_alarm(self, active: bool) -> None:
        """The fire panel's output: in alarm, or back to normal."""
        with self._lock:
            self.fire = active
            self._note("fire alarm" if active else "fire alarm cleared")
            self._drive_fire(active)

    def set_tamper(self, tampered: bool) -> None:
        self.tampered = tampered
        self._note("cover off" if tampered else "cover on")
        self._drive_switch(self._tamper, self.pins.tamper_type, normal=not tampered)

    def wait_released(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.latch_released:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    def walk_through(self, *, wait_s: float = 1.0, walk_s: float = 0.2, hold_s: float = 0.0) -> bool:
        """A person who waits for the click, opens, walks through (holding it ``hold_s``), and closes."""
        if not self.wait_released(wait_s) or not self.open():
            self._note("gave up")
            return False
        time.sleep(walk_s + hold_s)
        self.close()
        return True

    def leave(self, *, wait_s: float = 1.0, walk_s: float = 0.2) -> bool:
        """A person inside who presses the exit button and walks out."""
        self.press_exit()
        return self.walk_through(wait_s=wait_s, walk_s=walk_s)
