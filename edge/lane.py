"""A vehicle lane: the barrier arm, the loop detector, and the rules that keep both safe.

:class:`LaneMachine` is pure, like the door's machine: inputs and an injected monotonic
time in nanoseconds in, the events and barrier commands they cause out.  Its rules:

* a grant or a guard's manual open raises the arm with one **pulse** on the controller's
  open input (never a held level: drivers/barrier.py);
* **anti-crush**: the arm is never told to close while the loop reports a vehicle.  A
  close that is due then (the open timed out, a second car rolled on behind the first)
  is held and given when the loop clears; :class:`~drivers.barrier.BarrierHardware`
  refuses such a close a second time on its own, whatever asked for it;
* the arm closes when the vehicle has left the loop (with a close output; without one the
  controller closes by itself, as most do on their own loop), or when the open was not
  used within ``open_timeout_s``;
* **alarms**: the arm up longer than ``open_too_long_s`` (``lane.open_too_long``), and the
  arm raised or a vehicle passing with no open given (``lane.forced_open``: a limit switch
  on the arm, or the loop detector's *passed* output, tells);
* the relay watchdog and the fail-safe rules are the door's: no relay is energised at
  start or on close, a pulse that does not end is cut (``lane.relay_watchdog``), and
  ``gatepost edge relay-off`` puts the lines off after the agent has gone.

:class:`Lane` is the runtime: hardware callbacks, a tick thread and an event queue, so a
slow disk never holds up the arm.  The agent calls :meth:`Lane.access` after a plate's
decision and :meth:`Lane.open` for a guard's manual open (the contract of issue 19).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from drivers.barrier import BarrierHardware, BarrierInput, BarrierOutput
from protocol import events as ev

log = logging.getLogger("gatepost.edge.lane")

NS = 1_000_000_000


class LaneSettings(BaseModel):
    """How a lane behaves.  Times in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    open_timeout_s: float = Field(
        30.0, gt=0, le=600, title="Close again if no vehicle reaches the loop this long after an open"
    )
    open_too_long_s: float = Field(90.0, gt=0, le=3600, title="Alarm when the arm stays up this long")
    arm_travel_s: float = Field(
        6.0, gt=0, le=60, title="After an open pulse, the arm-up switch may close within this long"
    )


class Command(StrEnum):
    OPEN = "open"
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class LaneEvent:
    type: str
    data: dict[str, Any]


@dataclass
class Step:
    """What one input caused: events to record and commands for the barrier, in order."""

    events: list[LaneEvent] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)


class LaneMachine:
    """The lane's rules on injected time; no threads, no pins."""

    def __init__(
        self, name: str, settings: LaneSettings, *, has_close: bool, has_arm_switch: bool = False
    ) -> None:
        self.name = name
        self.settings = settings
        self.has_close = has_close
        self.has_arm_switch = has_arm_switch
        self.present = False
        self.arm_open = False
        self.opened_at_ns: int | None = None
        self.open_cause: str | None = None
        self.used = False
        """A vehicle reached the loop since the last open."""
        self.close_due: str | None = None
        """A close is wanted (its cause) but held until the loop is clear."""
        self.close_held_said = False
        self.too_long_said = False
        self.last_open_pulse_ns: int | None = None
        self.arrived_at_ns: int | None = None

    def _event(self, step: Step, type_: str, **data: Any) -> None:
        step.events.append(LaneEvent(type_, {"lane": self.name, **data}))

    def open(self, cause: str, now_ns: int, **data: Any) -> Step:
        """Raise the arm (a grant, or a guard's manual open)."""
        step = Step()
        step.commands.append(Command.OPEN)
        if not self.arm_open:
            self.opened_at_ns = now_ns
            self.too_long_said = False
        self.arm_open = True
        self.open_cause = cause
        self.used = self.present  # a car already on the loop uses this open
        self.close_due = None
        self.close_held_said = False
        self.last_open_pulse_ns = now_ns
        self._event(step, ev.LANE_OPENED, cause=cause, **data)
        return step

    def vehicle(self, present: bool, now_ns: int) -> Step:
        """The loop detector's present output changed."""
        step = Step()
        if present == self.present:
            return step
        self.present = present
        if present:
            self.arrived_at_ns = now_ns
            if self.arm_open:
                self.used = True
            return step
        dwell = (now_ns - self.arrived_at_ns) / NS if self.arrived_at_ns is not None else None
        self._event(step, ev.LANE_VEHICLE_LEFT, through=self.arm_open and self.used, dwell_s=_round(dwell))
        if self.arm_open and self.used:
            self._close(step, "passed", now_ns)
        elif self.close_due is not None:
            self._close(step, self.close_due, now_ns)
        return step

    def passed(self, now_ns: int) -> Step:
        """The loop detector's passed pulse: a vehicle went through under the arm."""
        step = Step()
        if not self.arm_open:
            self._event(step, ev.LANE_FORCED_OPEN, detail="a vehicle passed with no open given")
        return step

    def arm_up(self, up: bool, now_ns: int) -> Step:
        """The arm's limit switch: raised with no open pulse in the last ``arm_travel_s`` is forced."""
        step = Step()
        if not up:
            if self.arm_open and not self.has_close:
                self.arm_open = False  # the controller closed it by itself
                self._event(step, ev.LANE_CLOSED, cause="controller", open_for_s=self._open_for(now_ns))
                self.opened_at_ns = None
            return step
        recent = (
            self.last_open_pulse_ns is not None
            and now_ns - self.last_open_pulse_ns <= self.settings.arm_travel_s * NS
        )
        if not recent and not self.arm_open:
            self._event(step, ev.LANE_FORCED_OPEN, detail="the arm went up with no open given")
            self.arm_open = True
            self.opened_at_ns = now_ns
            self.open_cause = "forced"
            self.too_long_said = False
        return step

    def close(self, cause: str, now_ns: int) -> Step:
        """Lower the arm (a guard, or shutdown); held while the loop reads a vehicle."""
        step = Step()
        self._close(step, cause, now_ns)
        return step

    def tick(self, now_ns: int) -> Step:
        step = Step()
        if not self.arm_open or self.opened_at_ns is None:
            return step
        open_for = (now_ns - self.opened_at_ns) / NS
        if open_for >= self.settings.open_too_long_s and not self.too_long_said:
            self.too_long_said = True
            self._event(step, ev.LANE_OPEN_TOO_LONG, open_for_s=_round(open_for), present=self.present)
        if not self.used and self.close_due is None and open_for >= self.settings.open_timeout_s:
            self._close(step, "timeout", now_ns)
        return step

    def _close(self, step: Step, cause: str, now_ns: int) -> None:
        if not self.arm_open:
            return
        if self.present:  # anti-crush: never lower the arm on a vehicle
            self.close_due = cause
            if not self.close_held_said:
                self.close_held_said = True
                self._event(step, ev.LANE_CLOSE_HELD, cause=cause)
            return
        if self.has_close:
            step.commands.append(Command.CLOSE)
        self._event(step, ev.LANE_CLOSED, cause=cause, open_for_s=self._open_for(now_ns))
        self.arm_open = False
        self.opened_at_ns = None
        self.close_due = None
        self.close_held_said = False
        self.used = False

    def _open_for(self, now_ns: int) -> float | None:
        return _round((now_ns - self.opened_at_ns) / NS) if self.opened_at_ns is not None else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


EventSink = Callable[[str, dict[str, Any]], None]
PresenceListener = Callable[[bool, int], None]


class Lane:
    """One lane at run time: its barrier hardware, its machine, and what the agent calls."""

    def __init__(
        self,
        name: str,
        direction: str | None,
        settings: LaneSettings,
        hardware: BarrierHardware,
        sink: EventSink,
        *,
        tick_s: float = 0.1,
    ) -> None:
        self.name = name
        self.direction = direction
        self.settings = settings
        self.hardware = hardware
        self.machine = LaneMachine(
            name,
            settings,
            has_close=hardware.has_close,
            has_arm_switch=hardware.input_active(BarrierInput.ARM_UP) is not None,
        )
        self.sink = sink
        self.presence_listeners: list[PresenceListener] = []
        """Who else hears the loop (the lane's recogniser: it reads plates only while a vehicle is there)."""
        self.last_pulse_ns: int | None = None
        self.last_present_ns: int | None = None
        self._tick_s = tick_s
        self._lock = threading.RLock()
        self._events: queue.SimpleQueue[LaneEvent | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        hardware.on_input = self._input
        hardware.on_watchdog = self._watchdog

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        present = self.hardware.vehicle_present
        if present:
            self._apply(self.machine.vehicle(True, time.monotonic_ns()))
            self._tell_presence(True, time.monotonic_ns())
        for target, label in ((self._deliver, "lane-events"), (self._tick, "lane-tick")):
            thread = threading.Thread(target=target, name=f"{label}:{self.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        self._stop.set()
        self._events.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(2)
        self.hardware.close()

    @property
    def alive(self) -> bool:
        return self._stop.is_set() or all(t.is_alive() for t in self._threads)

    # -- what the agent calls ----------------------------------------------------------

    def access(self, granted: bool, decision: Any = None, *, credential: str | None = None) -> bool:
        """A plate was decided at this lane: pulse the arm open if granted.  Returns whether it opened."""
        if not granted:
            return False
        reason = getattr(getattr(decision, "reason", None), "value", None)
        return self._open("grant", None, credential=credential, reason=reason)

    def open(self, cause: str, operator: str | None = None) -> bool:
        """A guard's manual open: recorded as ``lane.manual_open`` with its cause; False if refused."""
        if not cause.strip():
            self._emit(
                LaneEvent(
                    ev.LANE_OPEN_REFUSED, {"lane": self.name, "reason": "no_cause", "operator": operator}
                )
            )
            return False
        opened = self._open("manual", operator, note=cause)
        if opened:
            self._emit(
                LaneEvent(ev.LANE_MANUAL_OPEN, {"lane": self.name, "cause": cause, "operator": operator})
            )
        return opened

    def close_arm(self, cause: str = "manual") -> None:
        with self._lock:
            self._apply(self.machine.close(cause, time.monotonic_ns()))

    # -- internals ---------------------------------------------------------------------

    def _open(self, kind: str, operator: str | None, **data: Any) -> bool:
        with self._lock:
            if self._stop.is_set():
                reason = "stopped"
            elif not self.hardware.pulse_open():
                reason = "relay_watchdog"
            else:
                self.last_pulse_ns = time.monotonic_ns()
                extra = {k: v for k, v in data.items() if v is not None}
                if operator is not None:
                    extra["operator"] = operator
                step = self.machine.open(kind, self.last_pulse_ns, **extra)
                step.commands.remove(Command.OPEN)  # given above, before anything else
                self._apply(step)
                return True
        log.warning("lane %s: open refused (%s)", self.name, reason)
        self._emit(
            LaneEvent(
                ev.LANE_OPEN_REFUSED, {"lane": self.name, "reason": reason, "operator": operator, **data}
            )
        )
        return False

    def _apply(self, step: Step) -> None:
        for command in step.commands:
            if command is Command.OPEN:
                self.hardware.pulse_open()
                self.last_pulse_ns = time.monotonic_ns()
            elif not self.hardware.pulse_close():
                log.info("lane %s: close not given by the hardware", self.name)
        for event in step.events:
            self._emit(event)

    def _emit(self, event: LaneEvent) -> None:
        self._events.put(event)

    def _input(self, which: BarrierInput, active: bool, at_ns: int) -> None:
        with self._lock:
            if which is BarrierInput.PRESENT:
                if active:
                    self.last_present_ns = at_ns
                self._apply(self.machine.vehicle(active, at_ns))
            elif which is BarrierInput.PASSED:
                if active:
                    self._apply(self.machine.passed(at_ns))
            else:
                self._apply(self.machine.arm_up(active, at_ns))
        if which is BarrierInput.PRESENT:
            self._tell_presence(active, at_ns)

    def vehicle_present(self, present: bool, at_ns: int) -> None:
        """Presence from the picture (a lane with no loop wired: the recogniser's change gate)."""
        with self._lock:
            if present:
                self.last_present_ns = at_ns
            self._apply(self.machine.vehicle(present, at_ns))

    def _tell_presence(self, present: bool, at_ns: int) -> None:
        for listener in self.presence_listeners:
            try:
                listener(present, at_ns)
            except Exception:
                log.exception("lane %s: presence listener failed", self.name)

    def _watchdog(self, which: BarrierOutput, on_for_s: float) -> None:
        self._emit(
            LaneEvent(
                ev.LANE_RELAY_WATCHDOG,
                {"lane": self.name, "output": str(which), "on_for_s": round(on_for_s, 2)},
            )
        )

    def _tick(self) -> None:
        while not self._stop.wait(self._tick_s):
            with self._lock:
                self._apply(self.machine.tick(time.monotonic_ns()))

    def _deliver(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                if self._stop.is_set() and self._events.empty():
                    return
                continue
            try:
                self.sink(event.type, event.data)
            except Exception:
                log.exception("lane %s: event %s not recorded", self.name, event.type)
