"""The door: a state machine with the behaviour of a commercial access controller.

It unlocks for a configured time on a grant, an exit-button press or a remote command;
relocks as soon as the door opens (configurable); warns and then alarms when the door is
held open; reports a door that opens while locked as forced; reports tamper.  Every
happening is a :class:`DoorEvent`, so the console can tell an authorised opening from a
forced one and count how long doors stand open.

:class:`DoorMachine` is pure: it is driven by inputs and an injected monotonic time in
nanoseconds, returns the events each input caused and exposes the outputs it wants
(:class:`DoorOutputs`).  Timers are deadlines checked on every call and by :meth:`tick`,
so a late tick never changes what happened: a door that opens after the unlock time ran
out is forced, however long ago the last tick was.  :class:`DoorController` is the thin
runtime around it: one timer thread, the GPIO from :mod:`drivers.door_io`, and a delivery
thread so a slow event sink never holds up the door.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.cards import CardRead, CardRejected, Reading
from drivers.door_io import DoorHardware, DoorInput
from protocol import events as ev
from protocol.errors import Rejection
from protocol.messages import Command

log = logging.getLogger("gatepost.edge.door")

NS = 1_000_000_000
WATCHDOG_MARGIN_S = 1.0
"""The relay watchdog trips this long after the door logic's own limit, so it only ever
catches a door logic that failed, never races one that relocks on time."""


class DoorSettings(BaseModel):
    """How the door behaves.  Times in seconds; ``None`` turns a held-open stage off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unlock_s: float = Field(5.0, gt=0, le=600, title="Unlock time after a grant, exit press or remote unlock")
    max_unlock_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        title="Longest the lock may stay released in one go; the relay watchdog enforces it",
    )
    relock_on_open: bool = Field(True, title="Relock as soon as the door opens")
    prealarm_s: float | None = Field(20.0, gt=0, title="Held-open warning this long after opening")
    held_open_s: float | None = Field(30.0, gt=0, title="Held-open alarm this long after opening")
    feedback_s: float = Field(1.0, gt=0, le=10, title="Red light and buzzer after a denial")
    remote_max_ttl_s: float = Field(
        120.0, gt=0, le=3600, title="A remote unlock must expire within this long"
    )

    @property
    def relay_max_on_s(self) -> float:
        """What to give :class:`~drivers.door_io.DoorHardware` as its watchdog limit."""
        return self.max_unlock_s + WATCHDOG_MARGIN_S

    @model_validator(mode="after")
    def _consistent(self) -> DoorSettings:
        if self.unlock_s > self.max_unlock_s:
            raise ValueError("unlock_s must not exceed max_unlock_s")
        if (
            self.prealarm_s is not None
            and self.held_open_s is not None
            and self.prealarm_s >= self.held_open_s
        ):
            raise ValueError("prealarm_s must come before held_open_s")
        return self


class DoorEventType(StrEnum):
    """Event types, valid as :attr:`protocol.messages.Event.type` as they stand."""

    UNLOCKED = "door.unlocked"
    """``{"cause", "seconds", "extended", ...}``: cause is grant, exit or remote."""
    LOCKED = "door.locked"
    """``{"cause", "unlocked_for_s"}``: cause is timeout, opened, remote, watchdog, start or shutdown."""
    OPENED = "door.opened"
    """An authorised opening: ``{"cause"}`` (what unlocked it; ``start`` if open when the agent started)."""
    FORCED = "door.forced"
    """The door opened while locked: ``{}``."""
    CLOSED = "door.closed"
    """``{"open_for_s", "forced", "held_open"}``."""
    HELD_OPEN_WARNING = "door.held_open_warning"
    """Pre-alarm: ``{"open_for_s"}``."""
    HELD_OPEN = "door.held_open"
    """Alarm: ``{"open_for_s"}``."""
    TAMPER = "door.tamper"
    TAMPER_CLEARED = "door.tamper_cleared"
    EXIT_PRESSED = "door.exit_pressed"
    RELAY_WATCHDOG = "door.relay_watchdog"
    """The watchdog cut the relay (or refused it) because it was on too long: ``{"on_for_s"}``."""
    CARD_READ = "door.card_read"
    """``{"credential", "reader", "kind", "bits"}``."""
    CARD_REJECTED = "door.card_rejected"
    """``{"reason", "detail", "reader", "kind", "bits", "raw"}``."""
    ACCESS_GRANTED = "door.access_granted"
    ACCESS_DENIED = "door.access_denied"
    """``{"credential", "reason", "reader"}``."""
    FIRE_ALARM = ev.DOOR_FIRE_ALARM
    FIRE_ALARM_CLEARED = ev.DOOR_FIRE_ALARM_CLEARED


class UnlockCause(StrEnum):
    GRANT = "grant"
    EXIT = "exit"
    REMOTE = "remote"
    FIRE = "fire"


class LockCause(StrEnum):
    TIMEOUT = "timeout"
    OPENED = "opened"
    REMOTE = "remote"
    WATCHDOG = "watchdog"
    START = "start"
    SHUTDOWN = "shutdown"
    FIRE_CLEARED = "fire_cleared"


@dataclass(frozen=True, slots=True)
class DoorEvent:
    """One door happening at monotonic time ``at_ns``; ``data`` is JSON-ready."""

    type: DoorEventType
    at_ns: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DoorOutputs:
    """What the door wants its actuators to do now."""

    unlocked: bool = False
    green: bool = False
    red: bool = False
    buzzer: bool = False


class RemoteRefusal(StrEnum):
    RETAINED = "retained"
    CLOCK_UNTRUSTED = "clock_untrusted"
    EXPIRED = "expired"
    EXPIRY_TOO_FAR = "expiry_too_far"
    BAD_DURATION = "bad_duration"
    FIRE_ALARM = "fire_alarm"


class DoorCommandError(Rejection[RemoteRefusal], ValueError):
    """A remote door command refused, with an enumerated reason for the response."""


def remote_unlock_seconds(
    command: Command,
    *,
    retained: bool,
    now: datetime,
    clock_trusted: bool,
    settings: DoorSettings,
    error_s: float | None = None,
) -> float:
    """How long a remote unlock may hold the door, or :class:`DoorCommandError` saying why not.

    A retained command would replay on every reconnect (esp-rfid#343) and an expired one
    was queued during an outage for an operator who has long gone; an expiry further off
    than ``remote_max_ttl_s`` would make a captured command useful for too long.  An
    untrusted clock that is an estimate (``error_s``: ``edge.clock.Clock.estimate``)
    checks the expiry at both ends of its error: not expired even at the latest the time
    may be, not too far off even at the earliest.  A lower bound only (``error_s`` None)
    cannot check an expiry, so no command is accepted.  ``args.seconds`` (optional) must
    lie in ``(0, max_unlock_s]``.
    """
    if retained:
        raise DoorCommandError(RemoteRefusal.RETAINED, "retained commands are never acted on")
    if not clock_trusted and error_s is None:
        raise DoorCommandError(RemoteRefusal.CLOCK_UNTRUSTED, "the gate's clock cannot check the expiry")
    spread = timedelta(seconds=0.0 if clock_trusted or error_s is None else error_s)
    if now + spread >= command.expires_at:
        raise DoorCommandError(RemoteRefusal.EXPIRED, f"expired at {command.expires_at.isoformat()}")
    if (command.expires_at - (now - spread)).total_seconds() > settings.remote_max_ttl_s:
        raise DoorCommandError(
            RemoteRefusal.EXPIRY_TOO_FAR, f"expiry more than {settings.remote_max_ttl_s:g} s ahead"
        )
    seconds = command.args.get("seconds", settings.unlock_s)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 < seconds <= settings.max_unlock_s
    ):
        raise DoorCommandError(
            RemoteRefusal.BAD_DURATION, f"seconds must be a number in (0, {settings.max_unlock_s:g}]"
        )
    return float(seconds)


def _s(ns: int) -> float:
    return round(ns / NS, 3)


class DoorMachine:
    """The door's logic.  Every input takes ``now_ns`` (monotonic) and returns the events it caused."""

    def __init__(self, settings: DoorSettings) -> None:
        self.settings = settings
        self._now = 0
        self._unlock_cause: UnlockCause | None = None
        self._unlocked_since = 0
        self._unlock_until: int | None = None
        self._open: bool | None = None
        self._opened_at = 0
        self._forced = False
        self._prealarm_sent = False
        self._alarm_sent = False
        self._tampered = False
        self._feedback_until: int | None = None
        self._fire = False
        self._fire_since = 0

    # -- state -------------------------------------------------------------------------

    @property
    def unlocked(self) -> bool:
        return self._unlock_until is not None or self._fire

    @property
    def fire_alarm(self) -> bool:
        """The fire alarm is on: the door is released and stays released until it clears."""
        return self._fire

    @property
    def door_open(self) -> bool | None:
        """``None`` while the door has no contact (or before it reported)."""
        return self._open

    @property
    def tampered(self) -> bool:
        return self._tampered

    @property
    def outputs(self) -> DoorOutputs:
        feedback = self._feedback_until is not None
        alarm = bool(self._open) and (self._forced or self._alarm_sent)
        warning = bool(self._open) and self._prealarm_sent
        return DoorOutputs(
            unlocked=self.unlocked,
            green=self.unlocked,
            red=feedback or alarm or self._tampered,
            buzzer=feedback or alarm or warning,
        )

    def _timers(self) -> list[tuple[int, Callable[[int], list[DoorEvent]]]]:
        timers: list[tuple[int, Callable[[int], list[DoorEvent]]]] = []
        if self._unlock_until is not None:
            timers.append((self._unlock_until, self._unlock_expired))
        if self._open and not self._fire:  # during a fire an open door is the point
            if self.settings.prealarm_s is not None and not self._prealarm_sent:
                timers.append((self._opened_at + round(self.settings.prealarm_s * NS), self._prealarm))
            if self.settings.held_open_s is not None and not self._alarm_sent:
                timers.append((self._opened_at + round(self.settings.held_open_s * NS), self._held_open))
        if self._feedback_until is not None:
            timers.append((self._feedback_until, self._feedback_over))
        return timers

    def next_deadline_ns(self) -> int | None:
        """When :meth:`tick` must next run, or ``None`` when no timer is pending."""
        return min((deadline for deadline, _ in self._timers()), default=None)

    # -- time ----------------------------------------------------------------------------

    def _advance(self, now_ns: int) -> tuple[int, list[DoorEvent]]:
        """Fire every timer due by ``now_ns`` in time order; time never runs backwards here."""
        now = max(now_ns, self._now)
        events: list[DoorEvent] = []
        while True:
            due = [(deadline, fire) for deadline, fire in self._timers() if deadline <= now]
            if not due:
                break
            deadline, fire = min(due, key=lambda item: item[0])
            events.extend(fire(deadline))
        self._now = now
        return now, events

    def tick(self, now_ns: int) -> list[DoorEvent]:
        return self._advance(now_ns)[1]

    def _unlock_expired(self, at: int) -> list[DoorEvent]:
        return self._lock(LockCause.TIMEOUT, at)

    def _prealarm(self, at: int) -> list[DoorEvent]:
        self._prealarm_sent = True
        return [DoorEvent(DoorEventType.HELD_OPEN_WARNING, at, {"open_for_s": _s(at - self._opened_at)})]

    def _held_open(self, at: int) -> list[DoorEvent]:
        self._alarm_sent = self._prealarm_sent = True
        return [DoorEvent(DoorEventType.HELD_OPEN, at, {"open_for_s": _s(at - self._opened_at)})]

    def _feedback_over(self, at: int) -> list[DoorEvent]:
        self._feedback_until = None
        return []

    # -- lock ----------------------------------------------------------------------------

    def _unlock(self, cause: UnlockCause, seconds: float, now: int, **data: Any) -> list[DoorEvent]:
        """Release the lock for ``seconds``, never past ``max_unlock_s`` of continuous release."""
        if self._fire:
            return []  # released already, with no time limit: nothing to add
        extended = self.unlocked
        if not extended:
            self._unlocked_since = now
        limit = self._unlocked_since + round(self.settings.max_unlock_s * NS)
        until = min(now + round(seconds * NS), limit)
        if self._unlock_until is not None:
            until = max(until, self._unlock_until)
        self._unlock_until = until
        self._unlock_cause = cause
        payload = {"cause": cause.value, "seconds": _s(until - now), "extended": extended, **data}
        return [DoorEvent(DoorEventType.UNLOCKED, now, payload)]

    def _lock(self, cause: LockCause, at: int) -> list[DoorEvent]:
        if self._unlock_until is None:
            return []
        self._unlock_until = None
        self._unlock_cause = None
        payload = {"cause": cause.value, "unlocked_for_s": _s(at - self._unlocked_since)}
        return [DoorEvent(DoorEventType.LOCKED, at, payload)]

    # -- inputs --------------------------------------------------------------------------

    def start(
        self, now_ns: int, *, door_closed: bool | None, tampered: bool = False, fire: bool = False
    ) -> list[DoorEvent]:
        """The agent came up: the lock is engaged, the inputs read as given (a fire alarm releases it)."""
        now, events = self._advance(now_ns)
        events.append(
            DoorEvent(DoorEventType.LOCKED, now, {"cause": LockCause.START.value, "unlocked_for_s": 0.0})
        )
        if door_closed is not None:
            self._open = not door_closed
            if self._open:
                self._opened_at = now
                events.append(DoorEvent(DoorEventType.OPENED, now, {"cause": LockCause.START.value}))
        if tampered:
            self._tampered = True
            events.append(DoorEvent(DoorEventType.TAMPER, now))
        if fire:
            events.extend(self.fire_alarm_changed(active=True, now_ns=now))
        return events

    def stop(self, now_ns: int) -> list[DoorEvent]:
        now, events = self._advance(now_ns)
        return events + self._lock(LockCause.SHUTDOWN, now)

    def door(self, *, closed: bool, now_ns: int) -> list[DoorEvent]:
        """The door contact changed."""
        now, events = self._advance(now_ns)
        is_open = not closed
        if self._open == is_open:
            return events
        self._open = is_open
        if is_open:
            self._opened_at = now
            self._prealarm_sent = self._alarm_sent = False
            if self.unlocked:
                self._forced = False
                cause = UnlockCause.FIRE.value if self._fire else ""
                cause = self._unlock_cause.value if self._unlock_cause else cause
                events.append(DoorEvent(DoorEventType.OPENED, now, {"cause": cause}))
                if self.settings.relock_on_open:
                    events.extend(self._lock(LockCause.OPENED, now))
            else:
                self._forced = True
                events.append(DoorEvent(DoorEventType.FORCED, now))
        else:
            payload = {
                "open_for_s": _s(now - self._opened_at),
                "forced": self._forced,
                "held_open": self._alarm_sent,
            }
            self._forced = self._prealarm_sent = self._alarm_sent = False
            events.append(DoorEvent(DoorEventType.CLOSED, now, payload))
        return events

    def exit_pressed(self, now_ns: int) -> list[DoorEvent]:
        now, events = self._advance(now_ns)
        events.append(DoorEvent(DoorEventType.EXIT_PRESSED, now))
        return events + self._unlock(UnlockCause.EXIT, self.settings.unlock_s, now)

    def tamper(self, *, active: bool, now_ns: int) -> list[DoorEvent]:
        now, events = self._advance(now_ns)
        if active != self._tampered:
            self._tampered = active
            kind = DoorEventType.TAMPER if active else DoorEventType.TAMPER_CLEARED
            events.append(DoorEvent(kind, now))
        return events

    def access(
        self, *, granted: bool, now_ns: int, credential: str, reason: str, reader: str = ""
    ) -> list[DoorEvent]:
        """The gate's decision on a credential presented at this door."""
        now, events = self._advance(now_ns)
        data = {"credential": credential, "reason": reason, "reader": reader}
        if granted:
            events.append(DoorEvent(DoorEventType.ACCESS_GRANTED, now, data))
            return events + self._unlock(
                UnlockCause.GRANT, self.settings.unlock_s, now, credential=credential
            )
        events.append(DoorEvent(DoorEventType.ACCESS_DENIED, now, data))
        self._feedback_until = now + round(self.settings.feedback_s * NS)
        return events

    def remote_unlock(self, *, seconds: float, now_ns: int, command_id: str = "") -> list[DoorEvent]:
        """A remote unlock already checked by :func:`remote_unlock_seconds`."""
        if not (math.isfinite(seconds) and 0 < seconds <= self.settings.max_unlock_s):
            raise DoorCommandError(RemoteRefusal.BAD_DURATION, f"{seconds!r} s is not a usable unlock time")
        now, events = self._advance(now_ns)
        return events + self._unlock(UnlockCause.REMOTE, seconds, now, command_id=command_id)

    def remote_lock(self, *, now_ns: int) -> list[DoorEvent]:
        if self._fire:
            raise DoorCommandError(RemoteRefusal.FIRE_ALARM, "the fire alarm holds the door released")
        now, events = self._advance(now_ns)
        return events + self._lock(LockCause.REMOTE, now)

    def fire_alarm_changed(self, *, active: bool, now_ns: int) -> list[DoorEvent]:
        """The fire alarm input tripped or cleared.

        Tripped: the door is released with no time limit, and cards, the exit button,
        remote commands, an opening and the relay watchdog cannot lock it.  Cleared: it
        locks, and an open door gets the held-open grace again from now.
        """
        now, events = self._advance(now_ns)
        if active == self._fire:
            return events
        if active:
            extended = self.unlocked
            if not extended:
                self._unlocked_since = now
            self._fire, self._fire_since = True, now
            self._unlock_until = self._unlock_cause = None  # no timer may relock it
            events.append(DoorEvent(DoorEventType.FIRE_ALARM, now, {"door_open": self._open}))
            payload = {"cause": UnlockCause.FIRE.value, "seconds": None, "extended": extended}
            events.append(DoorEvent(DoorEventType.UNLOCKED, now, payload))
            return events
        self._fire = False
        events.append(
            DoorEvent(DoorEventType.FIRE_ALARM_CLEARED, now, {"alarm_for_s": _s(now - self._fire_since)})
        )
        payload = {"cause": LockCause.FIRE_CLEARED.value, "unlocked_for_s": _s(now - self._unlocked_since)}
        events.append(DoorEvent(DoorEventType.LOCKED, now, payload))
        if self._open:
            self._opened_at = now
            self._prealarm_sent = self._alarm_sent = False
        return events

    def relay_cut(self, *, now_ns: int, on_for_s: float | None = None) -> list[DoorEvent]:
        """The relay watchdog cut (or refused) the relay: believe it, lock, and say so."""
        now, events = self._advance(now_ns)
        data = {} if on_for_s is None else {"on_for_s": round(on_for_s, 3)}
        events.append(DoorEvent(DoorEventType.RELAY_WATCHDOG, now, data))
        return events + self._lock(LockCause.WATCHDOG, now)

    def reading(self, reading: Reading, *, now_ns: int) -> list[DoorEvent]:
        """A card reader's output.  Keys from a PIN pad are never events: they would log PINs."""
        now, events = self._advance(now_ns)
        if isinstance(reading, CardRead):
            data = {
                "credential": reading.credential,
                "reader": reading.reader,
                "kind": reading.kind.value,
                "bits": reading.bits,
            }
            events.append(DoorEvent(DoorEventType.CARD_READ, now, data))
        elif isinstance(reading, CardRejected):
            data = {
                "reason": reading.reason.value,
                "detail": reading.detail,
                "reader": reading.reader,
                "kind": reading.kind.value,
                "bits": reading.bits,
                "raw": reading.raw[:128],
            }
            events.append(DoorEvent(DoorEventType.CARD_REJECTED, now, data))
        return events


class DoorController:
    """A :class:`DoorMachine` wired to :class:`~drivers.door_io.DoorHardware`, with its own threads.

    Every input and every timer runs under one lock, then the machine's outputs are written
    to the hardware.  Events go to ``emit`` from a separate delivery thread in the order
    they happened, so an outbox that stalls (a busy SQLite, a full disk) never delays the
    lock.  The public methods are thread-safe.
    """

    def __init__(
        self,
        settings: DoorSettings,
        hardware: DoorHardware,
        emit: Callable[[DoorEvent], None],
        *,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.settings = settings
        self.machine = DoorMachine(settings)
        self.hardware = hardware
        self._emit = emit
        self._clock_ns = clock_ns
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._events: queue.SimpleQueue[DoorEvent | None] = queue.SimpleQueue()
        self._stopping = False
        self._timer = threading.Thread(target=self._run_timer, name="door-timer", daemon=True)
        self._delivery = threading.Thread(target=self._run_delivery, name="door-events", daemon=True)

    def start(self) -> None:
        with self._lock:
            self.hardware.on_input = self._input
            self.hardware.on_watchdog = self._watchdog_cut
            self._delivery.start()
            self._step(
                lambda now: self.machine.start(
                    now,
                    door_closed=self.hardware.door_closed,
                    tampered=self.hardware.tampered,
                    fire=self.hardware.fire_active,
                )
            )
            self._timer.start()

    def stop(self) -> None:
        """Lock the door, deliver what is pending and stop the threads; the hardware stays open."""
        with self._lock:
            if self._stopping:
                return
            self._step(self.machine.stop)
            self._stopping = True
            self.hardware.on_input = None
            self.hardware.on_watchdog = None
            self._wake.notify_all()
        self._events.put(None)
        for thread in (self._timer, self._delivery):
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout=5)

    def __enter__(self) -> DoorController:
        self.start()
        return self

    def responsive(self, timeout: float) -> bool:
        """Whether the timer and delivery threads run and the door's lock can be taken (for liveness)."""
        if not (self._timer.is_alive() and self._delivery.is_alive()):
            return False
        if not self._lock.acquire(timeout=timeout):
            return False
        self._lock.release()
        return True

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inputs --------------------------------------------------------------------------

    def access(self, *, granted: bool, credential: str, reason: str, reader: str = "") -> None:
        self._step(
            lambda now: self.machine.access(
                granted=granted, now_ns=now, credential=credential, reason=reason, reader=reader
            )
        )

    def exit_request(self) -> None:
        """A request to exit from somewhere other than the button (a guard's console)."""
        self._step(self.machine.exit_pressed)

    def remote_unlock(self, seconds: float, *, command_id: str = "") -> None:
        self._step(lambda now: self.machine.remote_unlock(seconds=seconds, now_ns=now, command_id=command_id))

    def remote_lock(self) -> None:
        self._step(lambda now: self.machine.remote_lock(now_ns=now))

    def reading(self, reading: Reading) -> None:
        self._step(lambda now: self.machine.reading(reading, now_ns=now))

    def _input(self, which: DoorInput, active: bool, at_ns: int) -> None:
        if which is DoorInput.CONTACT:
            self._step(lambda now: self.machine.door(closed=not active, now_ns=now))
        elif which is DoorInput.TAMPER:
            self._step(lambda now: self.machine.tamper(active=active, now_ns=now))
        elif which is DoorInput.EXIT and active:
            self._step(self.machine.exit_pressed)
        elif which is DoorInput.FIRE:
            self._step(lambda now: self.machine.fire_alarm_changed(active=active, now_ns=now))

    def _watchdog_cut(self, on_for_s: float) -> None:
        self._step(lambda now: self.machine.relay_cut(now_ns=now, on_for_s=on_for_s))

    # -- machinery -----------------------------------------------------------------------

    def _step(self, action: Callable[[int], list[DoorEvent]]) -> None:
        with self._lock:
            if self._stopping:
                return
            events = action(self._clock_ns())
            events.extend(self._apply())
            for event in events:
                self._events.put(event)
            self._wake.notify_all()

    def _apply(self) -> list[DoorEvent]:
        wanted = self.machine.outputs
        events: list[DoorEvent] = []
        if not wanted.unlocked:
            self.hardware.set_unlocked(False)  # also acknowledges a watchdog cut, unlatching it
        elif not self.hardware.unlocked and not self.hardware.set_unlocked(True):
            # The watchdog is latched: it cut the relay and has not been acknowledged yet.
            events.extend(self.machine.relay_cut(now_ns=self._clock_ns()))
            wanted = self.machine.outputs
            self.hardware.set_unlocked(False)
        self.hardware.set_lights(green=wanted.green, red=wanted.red)
        self.hardware.set_buzzer(wanted.buzzer)
        return events

    def _run_timer(self) -> None:
        with self._lock:
            while not self._stopping:
                deadline = self.machine.next_deadline_ns()
                if deadline is None:
                    self._wake.wait()
                    continue
                remaining = (deadline - self._clock_ns()) / NS
                if remaining > 0:
                    self._wake.wait(remaining)
                    continue
                try:
                    self._step(self.machine.tick)
                except Exception:
                    # Keep the timers alive; the relay watchdog still bounds the relay.
                    log.exception("door timer step failed")
                    self._wake.wait(0.1)

    def _run_delivery(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            try:
                self._emit(event)
            except Exception:
                log.exception("door event sink failed on %s", event.type)
