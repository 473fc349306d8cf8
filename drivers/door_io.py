"""A door's GPIO: lock relay, door contact, exit button, tamper switch, lights and buzzer.

Pins and polarities come from the configuration and the pin factory is chosen at run time
(``mock`` in tests and in the simulator, ``lgpio`` on a Raspberry Pi 5), so the same code
drives a real door and a simulated one.  This module knows nothing of access policy: it
reports input changes and sets outputs, and it alone decides what "unlocked" means for the
relay, because that is where a wiring mistake opens a door.

The relay is never energised at start-up, on close or by the watchdog.  With the default
``fail_secure`` lock (an electric strike) energised means unlocked, so a crash or a power
cut leaves the door locked.  ``fail_safe`` (a maglock a fire code wants released when the
controller dies) inverts this: energised means locked and de-energised means free.  The
:class:`RelayWatchdog` runs on its own thread and cuts an energised unlock relay after its
maximum on-time whatever the rest of the program is doing.

A fire-alarm input, when wired, overrides all of that from this layer: while the fire
panel's output is active the relay is held at its released level — whatever the door
logic asks, and past the watchdog's limit — so a door on an escape route opens for
everyone even if the door logic is wedged.  When it clears, the relay locks again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from importlib.metadata import entry_points
from typing import Annotated, TypeVar

from gpiozero import LED, Buzzer, Device, DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins import Factory
from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocol.errors import GatepostError

log = logging.getLogger("gatepost.drivers.door_io")

_D = TypeVar("_D", bound=Device)

Pin = Annotated[int | str, Field(title="GPIO pin: a BCM number or a name such as GPIO17 or BOARD11")]


class DoorIoError(GatepostError, ValueError):
    """A door I/O configuration that cannot work (a pin used twice, an unknown pin factory)."""


class FailMode(StrEnum):
    SECURE = "fail_secure"
    """Energise to unlock (electric strike): no power, no entry."""
    SAFE = "fail_safe"
    """Energise to lock (maglock): no power, free exit.  An explicit choice, for fire code."""


class Contact(StrEnum):
    """How a switch reads in its normal state (door closed, button released, tamper intact)."""

    NORMALLY_CLOSED = "nc"
    NORMALLY_OPEN = "no"


class DoorInput(StrEnum):
    CONTACT = "contact"
    EXIT = "exit"
    TAMPER = "tamper"
    FIRE = "fire"


class DoorPins(BaseModel):
    """Where a door's devices are wired.  Every input switches to ground against a pull-up by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    relay: Pin = Field(title="Lock relay output")
    relay_active_high: bool = Field(
        True, title="Relay board energises on a high pin (false: active-low board)"
    )
    fail_mode: FailMode = FailMode.SECURE
    contact: Pin | None = Field(None, title="Door contact (reed switch)")
    contact_type: Contact = Field(Contact.NORMALLY_CLOSED, title="nc: switch closed while the door is closed")
    exit_button: Pin | None = Field(None, title="Request-to-exit button")
    exit_type: Contact = Field(Contact.NORMALLY_OPEN, title="no: switch closes when pressed")
    tamper: Pin | None = Field(None, title="Tamper switch of the reader or enclosure")
    tamper_type: Contact = Field(Contact.NORMALLY_CLOSED, title="nc: switch closed while the cover is on")
    fire_alarm: Pin | None = Field(
        None, title="The fire panel's alarm output: while active the door is released and stays released"
    )
    fire_alarm_active_high: bool = Field(
        True,
        title="The fire input reads high during an alarm (the default: the panel's normally-closed "
        "contact to ground opens, or its wire is cut, and the pull-up takes the pin high)",
    )
    pull_up: bool = Field(True, title="Inputs use the Pi's pull-up and switch to ground")
    bounce_s: float | None = Field(0.02, ge=0, le=1, title="Debounce time for the switches")
    green: Pin | None = None
    red: Pin | None = None
    lights_active_high: bool = True
    buzzer: Pin | None = None
    buzzer_active_high: bool = True

    @model_validator(mode="after")
    def _distinct(self) -> DoorPins:
        used = [
            p
            for p in (
                self.relay,
                self.contact,
                self.exit_button,
                self.tamper,
                self.fire_alarm,
                self.green,
                self.red,
                self.buzzer,
            )
            if p is not None
        ]
        if len({str(p).upper() for p in used}) != len(used):
            raise ValueError("each door device needs its own pin")
        return self


def make_pin_factory(name: str | None) -> Factory | None:
    """The gpiozero pin factory called ``name`` (``mock``, ``lgpio``, ``rpigpio``, ``native``).

    ``None`` leaves the choice to gpiozero (``$GPIOZERO_PIN_FACTORY``, else the best it
    finds).  Factories are found through gpiozero's own entry points, so a factory
    package installed later is usable by name.
    """
    if name is None:
        return None
    factories = entry_points(group="gpiozero_pin_factories")
    matches = [ep for ep in factories if ep.name == name.lower()]
    if not matches:
        known = ", ".join(sorted(ep.name for ep in factories))
        raise DoorIoError(f"unknown pin factory {name!r}; known: {known}")
    try:
        return matches[0].load()()
    except Exception as exc:
        raise DoorIoError(f"pin factory {name!r} cannot start here: {exc}") from exc


class RelayWatchdog:
    """Cuts the relay after ``max_on_s`` of continuous on-time, on its own thread.

    Independent of the door logic by design: the door loop may be blocked, wedged or wrong
    and the relay still drops.  After a cut the watchdog stays latched — further requests
    to energise are refused — until the relay has been asked to turn off, so a stuck loop
    re-energising the relay cannot hold a door open one maximum at a time.
    """

    def __init__(
        self,
        cut: Callable[[], None],
        max_on_s: float,
        *,
        on_cut: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_on_s <= 0:
            raise DoorIoError("the relay's maximum on-time must be positive")
        self.max_on_s = max_on_s
        self._cut = cut
        self._on_cut = on_cut
        self._clock = clock
        self._cond = threading.Condition()
        self._on_since: float | None = None
        self._latched = False
        self._stopping = False
        self._cuts = 0
        self._thread = threading.Thread(target=self._run, name="relay-watchdog", daemon=True)
        self._thread.start()

    @property
    def latched(self) -> bool:
        return self._latched

    @property
    def cuts(self) -> int:
        return self._cuts

    def energise(self, action: Callable[[], None]) -> bool:
        """Run ``action`` (which energises the relay) unless latched, and start counting.

        The check, the action and the start of the count happen under one lock that the
        cut also takes, so a cut can never fall between them.
        """
        with self._cond:
            if self._latched or self._stopping:
                return False
            action()
            if self._on_since is None:
                self._on_since = self._clock()
                self._cond.notify()
            return True

    def release(self, action: Callable[[], None]) -> None:
        """Run ``action`` (which de-energises the relay), stop counting and unlatch."""
        with self._cond:
            action()
            self._on_since = None
            self._latched = False
            self._cond.notify()

    def exempt(self, action: Callable[[], None]) -> None:
        """Run ``action`` (which energises the relay for the fire alarm) without counting, and unlatch.

        The limit exists to catch a door logic that failed; a fire alarm is the one reason
        to hold a fail-secure lock released for as long as it lasts.
        """
        self.release(action)

    def responsive(self, timeout: float) -> bool:
        """Whether the watchdog's thread runs and is not stuck holding its lock (for liveness)."""
        if not self._thread.is_alive():
            return False
        if not self._cond.acquire(timeout=timeout):
            return False
        self._cond.release()
        return True

    def _run(self) -> None:
        with self._cond:
            while not self._stopping:
                if self._on_since is None:
                    self._cond.wait()
                    continue
                remaining = self._on_since + self.max_on_s - self._clock()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                on_for = self._clock() - self._on_since
                self._on_since = None
                self._latched = True
                self._cuts += 1
                try:
                    self._cut()
                except Exception:
                    log.exception("watchdog could not cut the relay")
                log.error("relay on for %.2f s, past its maximum of %.2f s: cut", on_for, self.max_on_s)
                if self._on_cut is not None:
                    threading.Thread(target=self._on_cut, args=(on_for,), daemon=True).start()

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)


class DoorHardware:
    """The devices of one door, built from :class:`DoorPins` on a chosen pin factory.

    Inputs are reported through ``on_input(which, active, at_ns)`` where *active* means
    the abnormal state: the door open, the exit button pressed, the tamper switch open.
    Outputs are set with :meth:`set_unlocked`, :meth:`set_lights` and :meth:`set_buzzer`.
    ``relay_max_on_s`` arms the watchdog (fail-secure only: in fail-safe mode de-energising
    is the unlock, so there is nothing a watchdog could safely cut).
    Building it never energises the relay; :meth:`close` de-energises it first.
    """

    def __init__(
        self,
        pins: DoorPins,
        *,
        relay_max_on_s: float,
        pin_factory: Factory | None = None,
        on_input: Callable[[DoorInput, bool, int], None] | None = None,
        on_watchdog: Callable[[float], None] | None = None,
    ) -> None:
        self.pins = pins
        self.on_input = on_input
        self.on_watchdog = on_watchdog
        self._lock = threading.RLock()
        self._closed = False
        self._devices: list[Device] = []
        self._inputs: dict[DoorInput, tuple[DigitalInputDevice, Contact]] = {}
        try:
            # The relay's "on" is energised; initial_value=False writes the de-energised
            # level before anything else can run, whatever the board's polarity.  In
            # fail-safe mode that leaves the door free until the door logic locks it.
            self._relay = self._add(
                DigitalOutputDevice(
                    pins.relay,
                    active_high=pins.relay_active_high,
                    initial_value=False,
                    pin_factory=pin_factory,
                )
            )
            for which, pin, kind in (
                (DoorInput.CONTACT, pins.contact, pins.contact_type),
                (DoorInput.EXIT, pins.exit_button, pins.exit_type),
                (DoorInput.TAMPER, pins.tamper, pins.tamper_type),
            ):
                if pin is not None:
                    self._inputs[which] = (self._add_input(which, pin, pins, pin_factory), kind)
            self._fire: DigitalInputDevice | None = None
            if pins.fire_alarm is not None:
                self._fire = self._add(
                    DigitalInputDevice(
                        pins.fire_alarm,
                        pull_up=pins.pull_up,
                        bounce_time=pins.bounce_s or None,
                        pin_factory=pin_factory,
                    )
                )
            self._green = self._optional(LED, pins.green, pins.lights_active_high, pin_factory)
            self._red = self._optional(LED, pins.red, pins.lights_active_high, pin_factory)
            self._buzzer = self._optional(Buzzer, pins.buzzer, pins.buzzer_active_high, pin_factory)
            self.watchdog: RelayWatchdog | None = None
            if pins.fail_mode is FailMode.SECURE:
                self.watchdog = RelayWatchdog(self._cut_relay, relay_max_on_s, on_cut=self._watchdog_fired)
            if self._fire is not None:  # after the watchdog, which the fire override goes through
                self._fire.when_activated = self._fire_changed
                self._fire.when_deactivated = self._fire_changed
                with self._lock:
                    if self.fire_active:
                        self._release_for_fire()
        except Exception:
            self._close_devices()
            raise

    def _add(self, device: _D) -> _D:
        self._devices.append(device)
        return device

    def _optional(
        self, cls: type[LED | Buzzer], pin: int | str | None, active_high: bool, factory: Factory | None
    ) -> LED | Buzzer | None:
        if pin is None:
            return None
        return self._add(cls(pin, active_high=active_high, initial_value=False, pin_factory=factory))

    def _add_input(
        self, which: DoorInput, pin: int | str, pins: DoorPins, factory: Factory | None
    ) -> DigitalInputDevice:
        # DigitalInputDevice rather than Button: no hold thread, and "active" is simply
        # "switch closed" (pulled to ground against the pull-up, or up against a pull-down).
        switch = self._add(
            DigitalInputDevice(
                pin, pull_up=pins.pull_up, bounce_time=pins.bounce_s or None, pin_factory=factory
            )
        )
        switch.when_activated = lambda: self._changed(which)
        switch.when_deactivated = lambda: self._changed(which)
        return switch

    def _energise_for(self, unlocked: bool) -> bool:
        return unlocked if self.pins.fail_mode is FailMode.SECURE else not unlocked

    def _changed(self, which: DoorInput) -> None:
        active = self.input_active(which)
        if active is not None and self.on_input is not None:
            self.on_input(which, active, time.monotonic_ns())

    def input_active(self, which: DoorInput) -> bool | None:
        """Whether an input is in its abnormal state now; ``None`` if it is not wired."""
        entry = self._inputs.get(which)
        if entry is None:
            return None
        switch, kind = entry
        switch_closed = bool(switch.is_active)
        return switch_closed if kind is Contact.NORMALLY_OPEN else not switch_closed

    @property
    def fire_active(self) -> bool:
        """Whether the fire alarm input is in alarm now (False when none is wired)."""
        if self._fire is None:
            return False
        # With the pull-up an active DigitalInputDevice is a low pin; with a pull-down, a high one.
        level_high = bool(self._fire.is_active) != self.pins.pull_up
        return level_high == self.pins.fire_alarm_active_high

    def _fire_changed(self) -> None:
        """Hold the lock released while the alarm lasts, here, before the door logic hears of it."""
        with self._lock:
            if self._closed:
                return
            active = self.fire_active
            if active:
                self._release_for_fire()
                log.warning("fire alarm: door released until the alarm clears")
            else:
                self._lock_after_fire()
                log.warning("fire alarm cleared: door locked")
        if self.on_input is not None:
            self.on_input(DoorInput.FIRE, active, time.monotonic_ns())

    def _release_for_fire(self) -> None:
        if self.watchdog is not None:  # fail-secure: energised is released
            self.watchdog.exempt(self._relay.on)
        else:
            self._relay.value = self._energise_for(True)

    def _lock_after_fire(self) -> None:
        if self.watchdog is not None:
            self.watchdog.release(self._relay.off)
        else:
            self._relay.value = self._energise_for(False)

    @property
    def door_closed(self) -> bool | None:
        active = self.input_active(DoorInput.CONTACT)
        return None if active is None else not active

    @property
    def tampered(self) -> bool:
        return bool(self.input_active(DoorInput.TAMPER))

    @property
    def relay_energised(self) -> bool:
        return bool(self._relay.value)

    @property
    def unlocked(self) -> bool:
        """Whether the lock is released, as the relay stands now (the watchdog may have cut it)."""
        with self._lock:
            energised = self.relay_energised
            return energised if self.pins.fail_mode is FailMode.SECURE else not energised

    def set_unlocked(self, unlocked: bool) -> bool:
        """Release or engage the lock; returns whether the lock now is as asked.

        While the fire alarm is active the lock stays released whatever is asked.
        """
        with self._lock:
            if self.fire_active:
                self._release_for_fire()
                return unlocked
            energise = self._energise_for(unlocked)
            if self.watchdog is None:
                self._relay.value = energise
                return True
            if energise:
                return self.watchdog.energise(self._relay.on)
            self.watchdog.release(self._relay.off)
            return True

    def _cut_relay(self) -> None:
        if self.fire_active:
            return  # the fire alarm holds it released; exempt() already stopped the count
        self._relay.off()

    def _watchdog_fired(self, on_for_s: float) -> None:
        if self.on_watchdog is not None:
            self.on_watchdog(on_for_s)

    def set_lights(self, *, green: bool, red: bool) -> None:
        for led, on in ((self._green, green), (self._red, red)):
            if led is not None:
                led.value = on

    def set_buzzer(self, on: bool) -> None:
        if self._buzzer is not None:
            self._buzzer.value = on

    def _close_devices(self) -> None:
        relay = getattr(self, "_relay", None)
        if relay is not None:
            try:
                relay.off()
            except Exception:
                log.exception("could not de-energise the relay on close")
        for device in reversed(self._devices):
            try:
                device.close()
            except Exception:
                log.exception("could not close %r", device)
        self._devices.clear()

    def close(self) -> None:
        """De-energise the relay first, then release every pin."""
        self.on_input = None
        self.on_watchdog = None
        watchdog = getattr(self, "watchdog", None)
        if watchdog is not None:
            watchdog.close()
        with self._lock:
            self._closed = True
            self._close_devices()

    def __enter__(self) -> DoorHardware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
