"""A vehicle lane's GPIO: the barrier controller's open (and close) inputs and the loop detector.

A barrier arm is not a door lock.  Its controller (the motor box at the arm) holds the
arm up or down by itself and takes *commands*: a dry contact closed for a moment on its
"open" input raises the arm, one on "close" (where the controller has it) lowers it.
So the relay here gives a **pulse**, never a held level: a held "open" on most
controllers means "stay open" (a fire or maintenance mode), which a crashed agent must
never leave behind.  Every pulse goes through the door's :class:`~drivers.door_io.RelayWatchdog`:
if the pulse's own release fails (a wedged thread), the watchdog cuts the relay just
after the pulse length and refuses further pulses until a release.

The loop detector (an inductive loop in the road and its detector card) gives relay
outputs too: *present* while a vehicle is over the loop, and on many cards a short
*passed* pulse when it leaves.  The optional *arm up* input is a limit switch on the arm,
for the forced-open alarm.  Inputs are reported as ``on_input(which, active, at_ns)``
with *active* meaning "vehicle present", "vehicle passed", "arm up".

Anti-crush lives here as well as in the lane logic: :meth:`BarrierHardware.pulse_close`
refuses while the loop input reads a vehicle, whatever asked for it.  This module knows
nothing of plates or policy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

from gpiozero import Device, DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins import Factory
from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.door_io import Contact, Pin, RelayWatchdog

__all__ = ["BarrierHardware", "BarrierInput", "BarrierOutput", "BarrierPins"]

log = logging.getLogger("gatepost.drivers.barrier")

PULSE_MARGIN_S = 0.5
"""The watchdog cuts a pulse relay this long after the pulse should have ended."""


class BarrierInput(StrEnum):
    PRESENT = "present"
    PASSED = "passed"
    ARM_UP = "arm_up"


class BarrierOutput(StrEnum):
    OPEN = "open"
    CLOSE = "close"


class BarrierPins(BaseModel):
    """Where a lane's barrier controller and loop detector are wired (BCM numbers or names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    open: Pin = Field(title="Relay to the barrier controller's open input (pulsed)")
    close: Pin | None = Field(None, title="Relay to the controller's close input, where it has one (pulsed)")
    relay_active_high: bool = Field(
        True, title="Relay board energises on a high pin (false: active-low board)"
    )
    pulse_s: float = Field(0.5, gt=0.05, le=5, title="How long each command pulse lasts")
    loop: Pin | None = Field(None, title="Loop detector's vehicle-present output")
    loop_type: Contact = Field(
        Contact.NORMALLY_OPEN, title="no: the detector's contact closes while a vehicle is present"
    )
    passed: Pin | None = Field(None, title="Loop detector's vehicle-passed pulse output, if it has one")
    passed_type: Contact = Field(Contact.NORMALLY_OPEN)
    arm_up: Pin | None = Field(
        None, title="Limit switch that reads the arm raised (for the forced-open alarm)"
    )
    arm_up_type: Contact = Field(Contact.NORMALLY_OPEN, title="no: the switch closes while the arm is up")
    pull_up: bool = Field(True, title="Inputs use the Pi's pull-up and switch to ground")
    bounce_s: float | None = Field(0.02, ge=0, le=1)

    @model_validator(mode="after")
    def _distinct(self) -> BarrierPins:
        used = [p for p in (self.open, self.close, self.loop, self.passed, self.arm_up) if p is not None]
        if len({str(p).upper() for p in used}) != len(used):
            raise ValueError("each barrier and loop device needs its own pin")
        return self

    def used(self) -> list[int | str]:
        return [p for p in (self.open, self.close, self.loop, self.passed, self.arm_up) if p is not None]


class _PulseRelay:
    """One command output: pulses through a watchdog, released by a timer."""

    def __init__(self, relay: DigitalOutputDevice, pulse_s: float, on_cut: Callable[[float], None]) -> None:
        self.relay = relay
        self.pulse_s = pulse_s
        self.watchdog = RelayWatchdog(relay.off, pulse_s + PULSE_MARGIN_S, on_cut=on_cut)
        self.pulses = 0
        self.last_pulse_ns: int | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def pulse(self) -> bool:
        with self._lock:
            if not self.watchdog.energise(self.relay.on):
                return False
            self.pulses += 1
            self.last_pulse_ns = time.monotonic_ns()
            if self._timer is not None:
                self._timer.cancel()  # a second command during a pulse extends it, as a held button would
            self._timer = threading.Timer(self.pulse_s, self.release)
            self._timer.daemon = True
            self._timer.start()
            return True

    def release(self) -> None:
        self.watchdog.release(self.relay.off)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self.watchdog.close()
        try:
            self.relay.off()
        except Exception:
            log.exception("could not de-energise a barrier relay on close")


class BarrierHardware:
    """The devices of one lane, built from :class:`BarrierPins` on a chosen pin factory.

    Building it never energises a relay; :meth:`close` de-energises them first.
    """

    def __init__(
        self,
        pins: BarrierPins,
        *,
        pin_factory: Factory | None = None,
        on_input: Callable[[BarrierInput, bool, int], None] | None = None,
        on_watchdog: Callable[[BarrierOutput, float], None] | None = None,
    ) -> None:
        self.pins = pins
        self.on_input = on_input
        self.on_watchdog = on_watchdog
        self._devices: list[Device] = []
        self._inputs: dict[BarrierInput, tuple[DigitalInputDevice, Contact]] = {}
        self.refused_closes = 0
        """Close pulses refused here because the loop read a vehicle (anti-crush, last line)."""
        self._relays: dict[BarrierOutput, _PulseRelay] = {}
        try:
            for output, pin in ((BarrierOutput.OPEN, pins.open), (BarrierOutput.CLOSE, pins.close)):
                if pin is None:
                    continue
                device = self._add(
                    DigitalOutputDevice(
                        pin, active_high=pins.relay_active_high, initial_value=False, pin_factory=pin_factory
                    )
                )
                self._relays[output] = _PulseRelay(
                    device, pins.pulse_s, lambda on_for, which=output: self._watchdog_fired(which, on_for)
                )
            for which, pin, kind in (
                (BarrierInput.PRESENT, pins.loop, pins.loop_type),
                (BarrierInput.PASSED, pins.passed, pins.passed_type),
                (BarrierInput.ARM_UP, pins.arm_up, pins.arm_up_type),
            ):
                if pin is None:
                    continue
                switch = self._add(
                    DigitalInputDevice(
                        pin, pull_up=pins.pull_up, bounce_time=pins.bounce_s or None, pin_factory=pin_factory
                    )
                )
                switch.when_activated = lambda which=which: self._changed(which)
                switch.when_deactivated = lambda which=which: self._changed(which)
                self._inputs[which] = (switch, kind)
        except Exception:
            self.close()
            raise

    def _add(self, device: Device) -> Device:
        self._devices.append(device)
        return device

    @property
    def has_close(self) -> bool:
        return BarrierOutput.CLOSE in self._relays

    def input_active(self, which: BarrierInput) -> bool | None:
        """Whether an input reads active now; ``None`` if it is not wired."""
        entry = self._inputs.get(which)
        if entry is None:
            return None
        switch, kind = entry
        closed = bool(switch.is_active)
        return closed if kind is Contact.NORMALLY_OPEN else not closed

    @property
    def vehicle_present(self) -> bool | None:
        return self.input_active(BarrierInput.PRESENT)

    def relay_energised(self, which: BarrierOutput) -> bool:
        relay = self._relays.get(which)
        return relay is not None and bool(relay.relay.value)

    def pulses(self, which: BarrierOutput) -> int:
        relay = self._relays.get(which)
        return 0 if relay is None else relay.pulses

    def pulse_open(self) -> bool:
        """Raise the arm: one pulse on the open input.  False if the watchdog refused it."""
        return self._relays[BarrierOutput.OPEN].pulse()

    def pulse_close(self) -> bool:
        """Lower the arm, unless the loop reads a vehicle under it (then False, and nothing moves)."""
        relay = self._relays.get(BarrierOutput.CLOSE)
        if relay is None:
            return False
        if self.vehicle_present:
            self.refused_closes += 1
            log.warning("close refused: the loop reads a vehicle under the arm")
            return False
        return relay.pulse()

    def _changed(self, which: BarrierInput) -> None:
        active = self.input_active(which)
        callback = self.on_input
        if active is not None and callback is not None:
            callback(which, active, time.monotonic_ns())

    def _watchdog_fired(self, which: BarrierOutput, on_for_s: float) -> None:
        if self.on_watchdog is not None:
            self.on_watchdog(which, on_for_s)

    def close(self) -> None:
        """De-energise the relays first, then release every pin."""
        self.on_input = None
        self.on_watchdog = None
        for relay in self._relays.values():
            relay.close()
        for device in reversed(self._devices):
            try:
                device.close()
            except Exception:
                log.exception("could not close %r", device)
        self._devices.clear()

    def __enter__(self) -> BarrierHardware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
