"""Door benchmark: from a card at the reader to the lock relay, and how far the relay watchdog lets it run.

Everything goes through the real drivers and the real :class:`~edge.agent.GateAgent` on
gpiozero's mock pins, with the network down (the door never waits for it):

1. Wiegand: the end of the frame's last pulse → the lock relay pin energised, for a reader
   sending 100 µs pulses 1.1 ms apart (the 1 ms pulse interval many readers document, made
   10% slower), the agent configured to end a frame after max(3 bit periods, 3 ms) of silence.
2. EM4100: the frame's end byte (0x03) written to the RDM6300's pty → the relay energised.
3. The relay watchdog: the door logic wedged (its lock held, blocked or spinning in Python)
   with the relay on; how long past ``relay_max_on_s`` the watchdog's cut comes.
4. Comparisons, interleaved card by card with the figures above so they share the machine's
   noise: the same agent with the common fixed 25 ms end-of-frame silence, a slower reader
   (2 ms gaps), the same cards with a CPU-bound Python thread in the agent's process (the
   case that could split a frame under a short silence), and the strongest plain
   alternatives that run here (below), with the naive loops of hobby code that look at the
   reader every 50 ms kept as a last row.

Where every figure ends: at the **GPIO write**, the moment gpiozero's pin factory changes the
relay pin's level (``TimedPin._change_state``, stamped before any callback runs).  A relay's
contacts close some milliseconds later (its operate time, from the relay's datasheet), and a
lock's bolt later still; neither is in these figures, and both are the same whichever
software drives the pin.

The strongest plain alternatives, chosen because they are what a careful programmer would
write without gatepost's agent, on the same pin factory and the same stamped edges:

* Wiegand: gpiozero's own edge callbacks collect the bits and the relay is switched **on the
  26th bit**, with no end-of-frame wait at all.  Nothing reacts sooner; it works only when
  every card is known to be 26-bit, and a lost or spurious pulse shifts every later frame,
  which is why the agent waits for silence instead (drivers/wiegand.py).  An edge wait in the
  kernel (lgpio's or libgpiod's blocking read on the GPIO character device) would take the
  same place as these callbacks; it needs a real GPIO chip and does not run here.
* EM4100: a thread **blocked in pyserial's** ``read_until(ETX)`` (a ``select`` on the pty, as
  the agent's reader also waits), switching the relay when the frame's end byte arrives.

Wiegand edges come as they do on a Pi: a separate process (at real-time priority where the
system allows it) keeps the reader's timing and stamps each edge as it happens, as the kernel
stamps GPIO edges, and one thread of this process hands them to the mock pins with those
stamps, as a pin factory's callback thread does (and, like it, needs the GIL).  So the agent's
threads cannot stretch the reader's timing; what a busy process delays is only the delivery,
which the decoder survives by holding a frame that is not yet a card (drivers/wiegand.py,
``DOUBT_SILENCE_NS``).  Frames the source itself sent late are counted apart.  The in-process
:class:`~simulator.wiegand.VirtualWiegandReader`, whose pulses run the pin callbacks inline
and stretch, is measured too, for reference.

Usage: ``python bench/door.py [--quick]``.  Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import serial  # noqa: E402
from gpiozero import DigitalInputDevice, DigitalOutputDevice  # noqa: E402
from gpiozero.pins.mock import MockFactory, MockPin  # noqa: E402
from gpiozero.pins.pi import PiPin  # noqa: E402

from drivers.cards import CardRead  # noqa: E402
from drivers.em4100 import ETX, STX, parse_body  # noqa: E402
from drivers.em4100 import frame as em4100_frame  # noqa: E402
from drivers.wiegand import H10301, decode_bits  # noqa: E402
from edge.agent import GateAgent  # noqa: E402
from edge.config import EdgeConfig  # noqa: E402
from protocol import decode_event  # noqa: E402
from simulator.rdm6300 import VirtualRdm6300  # noqa: E402
from simulator.wiegand import VirtualWiegandReader  # noqa: E402

RELAY, D0, D1 = "GPIO17", "GPIO5", "GPIO6"
FACILITY = 13
FIRST_CARD = 1000
FIRST_TAG = 0x01_0000_0000


@dataclass(frozen=True)
class ReaderTiming:
    pulse_us: float
    gap_us: float

    @property
    def period_ms(self) -> float:
        return (self.pulse_us + self.gap_us) / 1000


FAST_READER = ReaderTiming(pulse_us=100.0, gap_us=1000.0)
"""Readers documenting a 1 ms pulse interval (Nedap uPASS, TDSi, ZKTeco defaults), made 10% slower."""
FAST_SILENCE = {"min_silence_ms": 3.0, "silence_periods": 3}
"""End a frame after max(3 bit periods, 3 ms) of silence: 3.3 ms for this reader, three times its gap."""
SLOW_READER = ReaderTiming(pulse_us=50.0, gap_us=2000.0)
"""Readers documenting 50 µs pulses 2 ms apart."""
SLOW_SILENCE = {"min_silence_ms": 6.0, "silence_periods": 3}
"""The same rule for the 2 ms reader: 6.15 ms of silence (3 periods), 6 ms until the period is known."""
FIXED_SILENCE = {"min_silence_ms": 25.0, "silence_periods": 3}
"""The driver's default and the common fixed end-of-frame timeout."""
NAIVE_POLL_S = 0.050
WIEGAND26_BITS = 26
NAIVE_QUIET_S = 0.025

UNLOCK_S = 0.01
"""Short, so the door relocks itself between cards and every card energises a relay that was off."""
MAX_UNLOCK_S = 0.05
"""The watchdog's limit is this plus the door's 1 s margin."""
TRIAL_TIMEOUT_S = 1.0
RELAY_TIMEOUT_S = 0.3
"""A card that has not energised the relay by then (the slowest path here takes ~80 ms) was lost."""
EVENTS_PER_GRANT = 3
"""access.scan, door.unlocked, door.locked."""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def free_port() -> int:
    """A port nothing listens on: the gate's broker is unreachable for the whole run."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
    return True


# -- pins -----------------------------------------------------------------------------------


class TimedPin(MockPin):
    """A mock pin that keeps the monotonic time of each change: a relay's click, a data line's edge.

    ``MockPin.states`` keeps only the time since the previous change, in float seconds; the
    latency needs absolute times on the same clock as ``time.monotonic_ns``.  The time is
    taken as the level changes, before any callback runs.

    :meth:`drive_stamped` changes the level as a real pin factory reports an edge: with the
    time the edge happened (the kernel's stamp), not the time Python got to it.
    """

    def __init__(self, factory: MockFactory, info: Any) -> None:
        self.changes: list[tuple[int, bool]] = []
        self._changed = threading.Condition()
        self._stamp: float | None = None
        super().__init__(factory, info)

    def _change_state(self, value: bool) -> bool:
        changed = super()._change_state(value)
        if changed:
            at = time.monotonic_ns()
            with self._changed:
                self.changes.append((at, bool(value)))
                self._changed.notify_all()
        return changed

    def drive_stamped(self, high: bool, at_ns: int) -> None:
        self._stamp = at_ns / 1e9
        try:
            if high:
                self.drive_high()
            else:
                self.drive_low()
        finally:
            self._stamp = None

    def _call_when_changed(self) -> None:
        if self._stamp is None:
            super()._call_when_changed()
        else:
            PiPin._call_when_changed(self, self._stamp, self.state)

    def wait_for(self, level: bool, since: int, timeout: float) -> int | None:
        """When the pin first went to ``level`` among the changes from index ``since`` on."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for at, value in self.changes[since:]:
                    if value == level:
                        return at
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)


def data_lines(factory: MockFactory) -> tuple[TimedPin, TimedPin]:
    d0, d1 = factory.pin(D0), factory.pin(D1)
    assert isinstance(d0, TimedPin) and isinstance(d1, TimedPin)
    return d0, d1


# -- Wiegand edges from another process -----------------------------------------------------

EDGE_SOURCE = r"""
import os, struct, sys, time
out = int(sys.argv[1])
record = struct.Struct("<BBBq")
try:  # a reader keeps its timing in hardware; real-time priority is the nearest a process gets
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    margin = 200_000
except (AttributeError, OSError):
    margin = 500_000

def until(t):
    while True:
        left = t - time.monotonic_ns()
        if left <= 0:
            return
        if left > margin + 100_000:
            time.sleep((left - margin) / 1e9)

for command in sys.stdin:
    channel, bits, pulse, gap = command.split()
    channel, pulse, gap = int(channel), int(pulse), int(gap)
    released = time.monotonic_ns() + 300_000 - gap
    for bit in bits:
        until(released + gap)
        pressed = time.monotonic_ns()
        os.write(out, record.pack(channel, int(bit), 0, pressed))
        until(pressed + pulse)
        released = time.monotonic_ns()
        os.write(out, record.pack(channel, int(bit), 1, released))
    os.write(out, record.pack(channel, 2, 1, time.monotonic_ns()))
"""
RECORD = struct.Struct("<BBBq")
END_OF_FRAME = 2


@dataclass
class Channel:
    """The D0/D1 pins of one gate, and the stamped edges of the frame in flight."""

    lines: tuple[TimedPin, TimedPin]
    edges: list[tuple[int, bool, int]] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class EdgeSource:
    """A Wiegand reader in a process of its own, its edges delivered here by one thread.

    The child keeps the reader's timing on absolute deadlines and stamps each edge with
    ``CLOCK_MONOTONIC`` as it happens; the delivery thread drives the mock pins with those
    stamps.  That is a real pin factory's shape: the kernel stamps, a callback thread that
    needs the GIL delivers.
    """

    def __init__(self) -> None:
        self._channels: list[Channel] = []
        read_fd, write_fd = os.pipe()
        self._read_fd = read_fd
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-c", EDGE_SOURCE, str(write_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(write_fd,),
                text=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._thread = threading.Thread(target=self._deliver, name="edge-delivery", daemon=True)
        self._thread.start()

    def add(self, factory: MockFactory) -> int:
        self._channels.append(Channel(data_lines(factory)))
        return len(self._channels) - 1

    def _deliver(self) -> None:
        pending = b""
        while True:
            try:
                data = os.read(self._read_fd, 4096)
            except OSError:
                return
            if not data:
                return
            pending += data
            whole = len(pending) - len(pending) % RECORD.size
            for number, line, level, stamp in RECORD.iter_unpack(pending[:whole]):
                channel = self._channels[number]
                if line == END_OF_FRAME:
                    channel.done.set()
                    continue
                channel.lines[line].drive_stamped(bool(level), stamp)
                channel.lags.append((time.monotonic_ns() - stamp) / 1e6)
                channel.edges.append((line, bool(level), stamp))
            pending = pending[whole:]

    def send(self, number: int, bits: str, timing: ReaderTiming) -> list[tuple[int, bool, int]] | None:
        """Send a frame; return its edges (line, level, stamp) once all were delivered."""
        channel = self._channels[number]
        channel.edges, channel.done = [], threading.Event()
        assert self._child.stdin is not None
        pulse_ns, gap_ns = round(timing.pulse_us * 1000), round(timing.gap_us * 1000)
        self._child.stdin.write(f"{number} {bits} {pulse_ns} {gap_ns}\n")
        self._child.stdin.flush()
        frame_s = len(bits) * timing.period_ms / 1000
        if not channel.done.wait(frame_s + TRIAL_TIMEOUT_S):
            return None
        return channel.edges

    def lags(self, number: int) -> list[float]:
        return self._channels[number].lags

    def close(self) -> None:
        if self._child.stdin is not None:
            with contextlib.suppress(OSError):
                self._child.stdin.close()
        try:
            self._child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait(timeout=5)
        self._thread.join(timeout=2)
        os.close(self._read_fd)


def out_of_spec(edges: list[tuple[int, bool, int]], timing: ReaderTiming, slack: float = 1.2) -> bool:
    """Whether the source itself missed the reader's timing (descheduled on a busy machine).

    Each edge is timed from the one before, so a late edge stretches a pulse or a gap; one
    stretched by more than ``slack`` lengthens the decoder's silence (or splits the frame).
    Such a frame says nothing about the agent: a real reader keeps its timing in hardware.
    """
    stamps = [stamp for _, _, stamp in edges]
    widths = [(b - a) / 1000 for a, b in zip(stamps[0::2], stamps[1::2], strict=False)]
    gaps = [(b - a) / 1000 for a, b in zip(stamps[1::2], stamps[2::2], strict=False)]
    return (
        len(edges) % 2 == 1
        or max(widths, default=0) > timing.pulse_us * slack + 20
        or max(gaps, default=0) > timing.gap_us * slack
    )


# -- gates ----------------------------------------------------------------------------------


class Tally:
    """Counts decisions taken (the agent's ``on_taken``)."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def add(self, *_args: object) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_past(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count > count, timeout)


@dataclass
class Gate:
    """One gate agent on its own mock pins."""

    agent: GateAgent
    factory: MockFactory
    relay: TimedPin
    taken: Tally

    def settle(self, seq_before: int, events: int) -> None:
        """Wait until the trial's events are durable, so no trial runs into the last one's writes."""
        outbox = self.agent.outbox
        wait_until(lambda: outbox.last_seq >= seq_before + events, TRIAL_TIMEOUT_S)

    def rejections(self) -> dict[str, int]:
        """Frames the agent refused, by reason: what a missed card became (never a wrong card)."""
        counts: dict[str, int] = {}
        after = 0
        while batch := self.agent.outbox.pending(after, limit=5000):
            for row in batch:
                event = decode_event(row.body)
                if event.type == "door.card_rejected":
                    key = str(event.data["reason"])
                    counts[key] = counts.get(key, 0) + 1
            after = batch[-1].seq
        return counts

    def close(self) -> None:
        self.agent.stop(drain_s=0)


def card_credential(card: int) -> str:
    return f"wiegand26:{FACILITY}:{card}"


def tag_credential(tag: int) -> str:
    return f"em4100:{tag:010X}"


def build_gate(
    workdir: Path,
    name: str,
    *,
    silence: dict[str, Any] | None,
    rdm6300_url: str | None = None,
    allow: list[str],
) -> Gate:
    factory = MockFactory(pin_class=TimedPin)
    config: dict[str, Any] = {
        "site": "bench",
        "gate": name,
        "mqtt": {"host": "127.0.0.1", "port": free_port()},  # nothing listens: the network is down
        "outbox": {"path": str(workdir / f"{name}.db")},
        "access": {"allow": allow},
        "clock": {"trust": "trusted"},
        "gpio": {"pin_factory": "mock"},
        "door": {
            "pins": {"relay": RELAY},
            "behaviour": {
                "unlock_s": UNLOCK_S,
                "max_unlock_s": MAX_UNLOCK_S,
                "prealarm_s": None,
                "held_open_s": None,
            },
        },
    }
    if silence is not None:
        config["wiegand"] = [{"name": "wiegand", "d0": D0, "d1": D1, **silence}]
    if rdm6300_url is not None:
        config["rdm6300"] = [{"name": "rfid", "url": rdm6300_url}]
    taken = Tally()
    agent = GateAgent(EdgeConfig.model_validate(config), on_taken=taken.add, pin_factory=factory)
    try:
        agent.start()
    except BaseException:
        agent.stop(drain_s=0)
        raise
    relay = factory.pin(RELAY)
    assert isinstance(relay, TimedPin)
    return Gate(agent, factory, relay, taken)


# -- 1. and 4. Wiegand ----------------------------------------------------------------------


@dataclass
class Outcome:
    """One card: the latency in ms, or why there is none."""

    latency_ms: float | None = None
    missed: bool = False
    source_late: bool = False


def gate_trial(gate: Gate, send: Callable[[], int | None]) -> Outcome:
    """Send a card with ``send`` (which returns its last edge) and time the relay."""
    mark, seq = len(gate.relay.changes), gate.agent.outbox.last_seq
    last_edge = send()
    on_at = gate.relay.wait_for(True, mark, RELAY_TIMEOUT_S)
    if on_at is not None:
        gate.relay.wait_for(False, mark, TRIAL_TIMEOUT_S)  # relocked: the next card finds it off
        gate.settle(seq, EVENTS_PER_GRANT)
    if last_edge is None:
        return Outcome(source_late=True)
    return Outcome(missed=True) if on_at is None else Outcome((on_at - last_edge) / 1e6)


def stamped_sender(
    source: EdgeSource, channel: int, card: int, timing: ReaderTiming
) -> Callable[[], int | None]:
    def send() -> int | None:
        edges = source.send(channel, H10301.encode(FACILITY, card), timing)
        if edges is None or out_of_spec(edges, timing):
            return None
        _, level, stamp = edges[-1]
        assert level, "a frame ends with both lines released"
        return stamp

    return send


def inprocess_sender(
    reader: VirtualWiegandReader, lines: tuple[TimedPin, TimedPin], card: int
) -> Callable[[], int | None]:
    """The in-process simulator: pulses on the mock pins from this thread, callbacks inline.

    Its pulses and gaps are stretched by the callbacks they run and by any thread that takes
    the GIL mid-frame; a frame with a gap past twice the reader's is counted as sent late.
    """

    def send() -> int | None:
        marks = [len(line.changes) for line in lines]
        reader.send_bits(H10301.encode(FACILITY, card), pause=False)
        edges = sorted(
            (
                (number, level, at)
                for number, line in enumerate(lines)
                for at, level in line.changes[marks[number] :]
            ),
            key=lambda edge: edge[2],
        )
        if out_of_spec(edges, FAST_READER, slack=2.0):
            return None
        _, level, at = edges[-1]
        assert level, "a frame ends with both lines released"
        return at

    return send


class NaiveWiegand:
    """The loop much hobby code runs: callbacks collect bits, a loop looks every 50 ms and,
    once the lines have been quiet for 25 ms, decodes and switches the relay.  It does less
    than the agent (no repeat filter, no door logic, no event), so it is not slower by work.
    """

    def __init__(self, factory: MockFactory, allowed: set[str]) -> None:
        self._allowed = allowed
        self._bits: list[str] = []
        self._last = 0.0
        self._lock = threading.Lock()
        self._d0 = DigitalInputDevice(D0, pull_up=True, pin_factory=factory)
        self._d1 = DigitalInputDevice(D1, pull_up=True, pin_factory=factory)
        self._d0.when_activated = lambda: self._bit("0")
        self._d1.when_activated = lambda: self._bit("1")
        self.relay_out = DigitalOutputDevice(RELAY, initial_value=False, pin_factory=factory)
        relay = factory.pin(RELAY)
        assert isinstance(relay, TimedPin)
        self.relay = relay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="naive-wiegand", daemon=True)
        self._thread.start()

    def _bit(self, bit: str) -> None:
        with self._lock:
            self._bits.append(bit)
            self._last = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(NAIVE_POLL_S):
            with self._lock:
                if not self._bits or time.monotonic() - self._last < NAIVE_QUIET_S:
                    continue
                bits, self._bits = "".join(self._bits), []
            reading = decode_bits(bits)
            if isinstance(reading, CardRead) and reading.credential in self._allowed:
                self.relay_out.on()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for device in (self._d0, self._d1, self.relay_out):
            device.close()


class CountingWiegand:
    """The strongest plain Wiegand alternative: gpiozero edge callbacks, the relay on at the 26th bit.

    Bits older than 25 ms are dropped before a new one is added, so a frame cut short by a
    lost pulse does not swallow the next card.  No end-of-frame silence, no repeat filter, no
    door logic, no event: the least work between a card and the relay pin.
    """

    def __init__(self, factory: MockFactory, allowed: set[str]) -> None:
        self._allowed = allowed
        self._bits: list[str] = []
        self._last = 0.0
        self._d0 = DigitalInputDevice(D0, pull_up=True, pin_factory=factory)
        self._d1 = DigitalInputDevice(D1, pull_up=True, pin_factory=factory)
        self._d0.when_activated = lambda: self._bit("0")
        self._d1.when_activated = lambda: self._bit("1")
        self.relay_out = DigitalOutputDevice(RELAY, initial_value=False, pin_factory=factory)
        relay = factory.pin(RELAY)
        assert isinstance(relay, TimedPin)
        self.relay = relay

    def _bit(self, bit: str) -> None:
        now = time.monotonic()
        if now - self._last > NAIVE_QUIET_S:
            self._bits = []
        self._last = now
        self._bits.append(bit)
        if len(self._bits) == WIEGAND26_BITS:
            bits, self._bits = "".join(self._bits), []
            reading = decode_bits(bits)
            if isinstance(reading, CardRead) and reading.credential in self._allowed:
                self.relay_out.on()

    def close(self) -> None:
        for device in (self._d0, self._d1, self.relay_out):
            device.close()


class BlockingRdm6300:
    """The strongest plain EM4100 alternative: a thread blocked in ``read_until(ETX)``, the relay on at once."""

    def __init__(self, url: str, factory: MockFactory, allowed: set[str]) -> None:
        self._allowed = allowed
        self._port = serial.serial_for_url(url, baudrate=9600, timeout=0.2)
        self.relay_out = DigitalOutputDevice(RELAY, initial_value=False, pin_factory=factory)
        relay = factory.pin(RELAY)
        assert isinstance(relay, TimedPin)
        self.relay = relay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blocking-rdm6300", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        data = bytearray()
        while not self._stop.is_set():
            data += self._port.read_until(bytes([ETX]))
            if not data or data[-1] != ETX:
                continue  # timed out mid-frame or idle: keep what came, look at the stop flag
            frame, data = bytes(data), bytearray()
            start = frame.rfind(STX)
            reading = parse_body(frame[start + 1 : -1] if start >= 0 else b"")
            if isinstance(reading, CardRead) and reading.credential in self._allowed:
                self.relay_out.on()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._port.close()
        self.relay_out.close()


def alternative_trial(
    relay: TimedPin, relay_out: DigitalOutputDevice, send: Callable[[], int | None]
) -> Outcome:
    """A card to an event-driven alternative: no cycle to land in, so no random wait."""
    mark = len(relay.changes)
    last = send()
    on_at = relay.wait_for(True, mark, RELAY_TIMEOUT_S)
    relay_out.off()
    if last is None:
        return Outcome(source_late=True)
    return Outcome(missed=True) if on_at is None else Outcome((on_at - last) / 1e6)


def naive_trial(relay: TimedPin, relay_out: DigitalOutputDevice, send: Callable[[], int | None]) -> Outcome:
    """A card to a naive loop, at a random moment of its 50 ms cycle (a card never comes in step)."""
    time.sleep(random.uniform(0, NAIVE_POLL_S))
    mark = len(relay.changes)
    last = send()
    on_at = relay.wait_for(True, mark, RELAY_TIMEOUT_S)
    relay_out.off()
    if last is None:
        return Outcome(source_late=True)
    return Outcome(missed=True) if on_at is None else Outcome((on_at - last) / 1e6)


# -- 2. and 4. EM4100 -----------------------------------------------------------------------


def em4100_sender(reader: VirtualRdm6300, tag: int) -> Callable[[], int]:
    """Write a tag's frame as a UART delivers it, the end byte last; return when it was written.

    The body goes first and the end byte 2 ms later (at 9600 baud a byte takes 1.04 ms), so
    what is measured is the end byte's arrival → relay.  The time is taken just before the
    end byte's write, so the write itself counts against the agent.
    """

    def send() -> int:
        data = em4100_frame(tag)
        reader.write(data[:-1])
        time.sleep(0.002)
        at = time.monotonic_ns()
        reader.write(data[-1:])
        return at

    return send


def em4100_warm_up(gate: Gate, reader: VirtualRdm6300, timeout: float = 5.0) -> None:
    """Send a denied tag until the agent has opened the port and read it (pyserial flushes on open)."""
    taken = gate.taken.count
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reader.write(em4100_frame(FIRST_TAG - 1))
        if gate.taken.wait_past(taken, 0.1):
            time.sleep(0.35)  # let the warm-up tag go (CardGone) so every trial tag is new
            return
    raise SystemExit("the agent never read the RDM6300's pty")


class NaiveRdm6300:
    """An RDM6300 loop as hobby code writes it: look at the port every 50 ms, parse what is there."""

    def __init__(self, url: str, factory: MockFactory, allowed: set[str]) -> None:
        self._allowed = allowed
        self._port = serial.serial_for_url(url, baudrate=9600, timeout=0)
        self.relay_out = DigitalOutputDevice(RELAY, initial_value=False, pin_factory=factory)
        relay = factory.pin(RELAY)
        assert isinstance(relay, TimedPin)
        self.relay = relay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="naive-rdm6300", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = bytearray()
        while not self._stop.wait(NAIVE_POLL_S):
            waiting = self._port.in_waiting
            if waiting:
                buffer += self._port.read(waiting)
            while (end := buffer.find(ETX)) >= 0:
                start = buffer.rfind(STX, 0, end)
                body = bytes(buffer[start + 1 : end]) if start >= 0 else b""
                del buffer[: end + 1]
                reading = parse_body(body)
                if isinstance(reading, CardRead) and reading.credential in self._allowed:
                    self.relay_out.on()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._port.close()
        self.relay_out.close()


# -- 3. the relay watchdog ------------------------------------------------------------------


@contextlib.contextmanager
def busy_python_thread() -> Iterator[None]:
    """A thread that never blocks: it holds the GIL except when the interpreter forces a switch."""
    stop = threading.Event()

    def spin() -> None:
        count = 0
        while not stop.is_set():
            count += 1

    thread = threading.Thread(target=spin, name="busy-python", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)


def watchdog_trial(gate: Gate, *, spinning: bool) -> float | None:
    """Energise the relay from inside the door logic's lock and never let go: only the watchdog can cut it.

    ``spinning``: the wedged door logic loops in Python (a stuck loop, competing for the GIL);
    otherwise it is blocked (a deadlock).  Returns how late the cut came, in ms.
    """
    hardware = gate.agent.hardware
    watchdog = hardware.watchdog
    assert watchdog is not None and gate.agent.door is not None
    limit_s = watchdog.max_on_s
    mark = len(gate.relay.changes)
    door_logic_lock = gate.agent.door._lock  # the controller's own lock: holding it wedges the door
    hold_s = limit_s + 2.0

    def wedged() -> None:
        with door_logic_lock:
            hardware.set_unlocked(True)
            if spinning:
                deadline = time.monotonic() + hold_s
                while gate.relay.state and time.monotonic() < deadline:
                    pass
            else:
                gate.relay.wait_for(False, mark, hold_s)

    thread = threading.Thread(target=wedged, name="wedged-door-logic", daemon=True)
    thread.start()
    thread.join(hold_s + 1.0)
    on_at = gate.relay.wait_for(True, mark, 0)
    off_at = gate.relay.wait_for(False, mark, 0)
    # Unwedged, the door logic takes note of the cut (door.relay_watchdog) and unlatches it.
    if not wait_until(lambda: not watchdog.latched, 3.0):
        raise SystemExit("the door logic never acknowledged the watchdog's cut")
    if on_at is None or off_at is None:
        return None
    return (off_at - on_at) / 1e6 - limit_s * 1e3


# -- the run --------------------------------------------------------------------------------


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    ok = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    return {
        "p50": round(statistics.median(ok), 3) if ok else None,
        "p99": round(pct(ok, 99), 3) if ok else None,
        "max": round(max(ok), 3) if ok else None,
        "n": len(ok),
        "missed": sum(o.missed for o in outcomes),
        "source_late": sum(o.source_late for o in outcomes),
    }


def lag_summary(lags: list[float]) -> dict[str, Any]:
    return (
        {"p99": round(pct(lags, 99), 3), "max": round(max(lags), 3)} if lags else {"p99": None, "max": None}
    )


def run(n_cards: int, n_compare: int, n_watchdog: int) -> dict[str, Any]:
    results: dict[str, list[Outcome]] = {
        key: []
        for key in (
            "fast",
            "fixed",
            "slow",
            "naive_w",
            "count_w",
            "inproc",
            "em",
            "naive_em",
            "block_em",
            "busy_fast",
            "busy_fixed",
        )
    }
    # Three pools of cards, so no card comes back within the agent's repeat window.
    cards = [FIRST_CARD + i for i in range(n_cards)]
    inproc_cards = [FIRST_CARD + n_cards + i for i in range(n_compare)]
    busy_cards = [FIRST_CARD + n_cards + n_compare + i for i in range(n_compare)]
    tags = [FIRST_TAG + i for i in range(n_cards)]
    allow = [card_credential(c) for c in cards + inproc_cards + busy_cards] + [
        tag_credential(t) for t in tags
    ]
    out: dict[str, Any] = {}

    # The stack (gates, readers, source) closes before the directory with the outboxes goes.
    with tempfile.TemporaryDirectory(prefix="gatepost-door-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        rdm = stack.enter_context(VirtualRdm6300())
        naive_rdm = stack.enter_context(VirtualRdm6300())
        source = EdgeSource()
        stack.callback(source.close)
        fast = build_gate(workdir, "fast", silence=FAST_SILENCE, rdm6300_url=rdm.port, allow=allow)
        stack.callback(fast.close)
        fixed = build_gate(workdir, "fixed25", silence=FIXED_SILENCE, allow=allow)
        stack.callback(fixed.close)
        slow = build_gate(workdir, "slowreader", silence=SLOW_SILENCE, allow=allow)
        stack.callback(slow.close)
        naive_factory = MockFactory(pin_class=TimedPin)
        naive_w = NaiveWiegand(naive_factory, set(allow))
        stack.callback(naive_w.close)
        naive_em = NaiveRdm6300(naive_rdm.port, MockFactory(pin_class=TimedPin), set(allow))
        stack.callback(naive_em.close)
        count_factory = MockFactory(pin_class=TimedPin)
        count_w = CountingWiegand(count_factory, set(allow))
        stack.callback(count_w.close)
        block_rdm = stack.enter_context(VirtualRdm6300())
        block_em = BlockingRdm6300(block_rdm.port, MockFactory(pin_class=TimedPin), set(allow))
        stack.callback(block_em.close)

        ch_fast, ch_fixed, ch_slow = (source.add(gate.factory) for gate in (fast, fixed, slow))
        ch_naive = source.add(naive_factory)
        ch_count = source.add(count_factory)
        inproc = VirtualWiegandReader(
            fast.factory, D0, D1, pulse_us=FAST_READER.pulse_us, gap_us=FAST_READER.gap_us
        )
        inproc_lines = data_lines(fast.factory)
        em4100_warm_up(fast, rdm)

        for i, (card, tag) in enumerate(zip(cards, tags, strict=True)):
            results["fast"].append(gate_trial(fast, stamped_sender(source, ch_fast, card, FAST_READER)))
            results["em"].append(gate_trial(fast, em4100_sender(rdm, tag)))
            if i < n_compare:
                results["fixed"].append(
                    gate_trial(fixed, stamped_sender(source, ch_fixed, card, FAST_READER))
                )
                results["slow"].append(gate_trial(slow, stamped_sender(source, ch_slow, card, SLOW_READER)))
                results["naive_w"].append(
                    naive_trial(
                        naive_w.relay, naive_w.relay_out, stamped_sender(source, ch_naive, card, FAST_READER)
                    )
                )
                results["naive_em"].append(
                    naive_trial(naive_em.relay, naive_em.relay_out, em4100_sender(naive_rdm, tag))
                )
                results["count_w"].append(
                    alternative_trial(
                        count_w.relay, count_w.relay_out, stamped_sender(source, ch_count, card, FAST_READER)
                    )
                )
                results["block_em"].append(
                    alternative_trial(block_em.relay, block_em.relay_out, em4100_sender(block_rdm, tag))
                )
                results["inproc"].append(
                    gate_trial(fast, inprocess_sender(inproc, inproc_lines, inproc_cards[i]))
                )
        out["lag_idle"] = lag_summary(source.lags(ch_fast))

        lags_before = len(source.lags(ch_fast))
        with busy_python_thread():
            for card in busy_cards:
                results["busy_fast"].append(
                    gate_trial(fast, stamped_sender(source, ch_fast, card, FAST_READER))
                )
                results["busy_fixed"].append(
                    gate_trial(fixed, stamped_sender(source, ch_fixed, card, FAST_READER))
                )
        out["lag_busy"] = lag_summary(source.lags(ch_fast)[lags_before:])

        out["rejections"] = {gate.agent.config.gate: gate.rejections() for gate in (fast, fixed, slow)}
        blocked = [watchdog_trial(fast, spinning=False) for _ in range(n_watchdog)]
        spinning = [watchdog_trial(fast, spinning=True) for _ in range(n_watchdog)]
        watchdog = fast.agent.hardware.watchdog
        out["watchdog_limit_s"] = watchdog.max_on_s
        out["watchdog_cuts"] = watchdog.cuts

    for key, outcomes in results.items():
        out[key] = summary(outcomes)
    out["blocked"] = summary([Outcome(v) for v in blocked])
    out["spinning"] = summary([Outcome(v) for v in spinning])
    return out


def silence_ms(reader: ReaderTiming, silence: dict[str, Any]) -> float:
    return max(silence["min_silence_ms"], silence["silence_periods"] * reader.period_ms)


def num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def fmt(summary_: dict[str, Any]) -> str:
    if summary_["p50"] is None:
        return f"no reads (n=0, {summary_['missed']} missed)"
    notes = [f"n={summary_['n']}"]
    if summary_["missed"]:
        notes.append(f"{summary_['missed']} missed")
    if summary_["source_late"]:
        notes.append(f"{summary_['source_late']} sent late")
    return f"{summary_['p50']:.2f} / {summary_['p99']:.2f} ms ({', '.join(notes)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts; finishes in under a minute")
    parser.add_argument("--cards", type=int, help="cards per reader (default 100 quick, 1000 full)")
    parser.add_argument("--verbose", action="store_true", help="show the agents' logs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL)

    quick = args.quick
    n_cards = max(1, args.cards or (100 if quick else 1000))
    n_compare = min(n_cards, 40 if quick else 300)
    n_watchdog = 3 if quick else 10
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    r = run(n_cards, n_compare, n_watchdog)
    elapsed = time.monotonic() - began
    load_after = os.getloadavg()[0]

    fast_silence = silence_ms(FAST_READER, FAST_SILENCE)
    slow_silence = silence_ms(SLOW_READER, SLOW_SILENCE)
    margin = fast_silence - FAST_READER.gap_us / 1000
    watchdog_max = max(
        (v for v in (r["blocked"]["max"], r["spinning"]["max"]) if v is not None), default=None
    )
    switch_ms = sys.getswitchinterval() * 1e3

    rows = [
        (
            "Wiegand last bit → relay, p50 / p99",
            fmt(r["fast"]),
            f"100 µs pulses, 1 ms gaps; min_silence_ms=3, silence_periods=3 → {fast_silence:.1f} ms silence",
        ),
        ("  same, fixed 25 ms silence", fmt(r["fixed"]), "the driver's default min_silence_ms=25"),
        (
            "  best plain alternative: relay at bit 26",
            fmt(r["count_w"]),
            "gpiozero edge callbacks, no silence wait; 26-bit cards only (from the last release)",
        ),
        (
            "  same, naive 50 ms poll loop",
            fmt(r["naive_w"]),
            f"callbacks + a loop every {NAIVE_POLL_S * 1e3:.0f} ms, {NAIVE_QUIET_S * 1e3:.0f} ms quiet",
        ),
        (
            "  slower reader, 50 µs pulses, 2 ms gaps",
            fmt(r["slow"]),
            f"min_silence_ms=6, silence_periods=3 → {slow_silence:.2f} ms silence",
        ),
        (
            "  in-process VirtualWiegandReader",
            fmt(r["inproc"]),
            "pin callbacks run inside its pulses and stretch them: a longer period, a longer silence",
        ),
        (
            "  CPU-bound Python thread in the agent",
            fmt(r["busy_fast"]),
            f"edges reach Python late (lag p99 {num(r['lag_busy']['p99'])} / max {num(r['lag_busy']['max'])} ms)",
        ),
        ("  same load, fixed 25 ms silence", fmt(r["busy_fixed"]), ""),
        ("EM4100 end byte → relay, p50 / p99", fmt(r["em"]), "RDM6300 on a pty, pyserial, the agent"),
        (
            "  best plain alternative: blocking read",
            fmt(r["block_em"]),
            "a thread in pyserial read_until(0x03), relay on at once",
        ),
        ("  same, naive 50 ms poll loop", fmt(r["naive_em"]), "in_waiting every 50 ms"),
        (
            "Watchdog overshoot, door logic blocked",
            f"max {num(r['blocked']['max'])} ms (n={r['blocked']['n']})",
            f"cut − (energised + relay_max_on_s {r['watchdog_limit_s']:.2f} s)",
        ),
        (
            "Watchdog overshoot, door logic spinning",
            f"max {num(r['spinning']['max'])} ms (n={r['spinning']['n']})",
            f"a Python loop holding the door's lock; the GIL switch interval is {switch_ms:.0f} ms",
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    vwidth = max(len(value) for _, value, _ in rows)
    print(
        f"door benchmark ({'quick' if quick else 'full'}, {n_cards} cards): {os.cpu_count()} CPUs, "
        f"load average {load_before:.2f} → {load_after:.2f}, Python {sys.version.split()[0]}, {elapsed:.0f} s"
    )
    print("Every figure ends at the GPIO write (the relay pin's level set through gpiozero's pin factory),")
    print("not at a relay's contacts closing, which takes the relay's own operate time on top.")
    print(f"{'measure':<{width}}  {'value':<{vwidth}}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<{vwidth}}  {note}".rstrip())
    print(
        f"Why {fast_silence:.1f} ms is safe for this reader: it is 3 of the reader's own bit periods (the rule "
        f"follows the slowest period in each frame) and {fast_silence / (FAST_READER.gap_us / 1000):.1f}× its "
        f"gap, so by the clock a frame can look over only if an edge reaches Python more than {margin:.1f} ms "
        f"late (idle here: max {num(r['lag_idle']['max'])} ms).  A frame that is not yet a card is then held "
        "until 25 ms of silence and continued if its late edges' own timestamps fall within the silence: "
        f"with a CPU-bound Python thread (edges up to {num(r['lag_busy']['max'])} ms late) "
        f"{r['busy_fast']['missed']} of {r['busy_fast']['n'] + r['busy_fast']['missed']} cards were lost, "
        f"against {r['busy_fixed']['missed']} of {r['busy_fixed']['n'] + r['busy_fixed']['missed']} with the "
        "fixed 25 ms.  Rejected frames by reason: "
        + "; ".join(
            f"{gate} {dict(sorted(counts.items())) or '{}'}" for gate, counts in r["rejections"].items()
        )
        + "."
    )
    result = {
        "wiegand_to_relay_p50_ms": r["fast"]["p50"],
        "wiegand_to_relay_p99_ms": r["fast"]["p99"],
        "wiegand_missed": r["fast"]["missed"],
        "wiegand_silence_ms": round(fast_silence, 3),
        "wiegand_reader_pulse_us": FAST_READER.pulse_us,
        "wiegand_reader_gap_us": FAST_READER.gap_us,
        "wiegand_edge_lag_max_ms": r["lag_idle"]["max"],
        "em4100_to_relay_p50_ms": r["em"]["p50"],
        "em4100_to_relay_p99_ms": r["em"]["p99"],
        "em4100_missed": r["em"]["missed"],
        "watchdog_overshoot_max_ms": watchdog_max,
        "watchdog_overshoot_blocked_max_ms": r["blocked"]["max"],
        "watchdog_overshoot_spinning_max_ms": r["spinning"]["max"],
        "watchdog_cuts": r["watchdog_cuts"],
        "fixed25_wiegand_to_relay_p50_ms": r["fixed"]["p50"],
        "fixed25_wiegand_to_relay_p99_ms": r["fixed"]["p99"],
        "figure_ends_at": "gpio_write",
        "alt_count26_wiegand_to_relay_p50_ms": r["count_w"]["p50"],
        "alt_count26_wiegand_to_relay_p99_ms": r["count_w"]["p99"],
        "alt_count26_wiegand_missed": r["count_w"]["missed"],
        "alt_blocking_em4100_to_relay_p50_ms": r["block_em"]["p50"],
        "alt_blocking_em4100_to_relay_p99_ms": r["block_em"]["p99"],
        "naive_poll50_wiegand_to_relay_p50_ms": r["naive_w"]["p50"],
        "naive_poll50_wiegand_to_relay_p99_ms": r["naive_w"]["p99"],
        "slow_reader_wiegand_to_relay_p50_ms": r["slow"]["p50"],
        "slow_reader_wiegand_to_relay_p99_ms": r["slow"]["p99"],
        "inprocess_sim_wiegand_to_relay_p50_ms": r["inproc"]["p50"],
        "inprocess_sim_wiegand_to_relay_p99_ms": r["inproc"]["p99"],
        "busy_wiegand_to_relay_p99_ms": r["busy_fast"]["p99"],
        "busy_wiegand_read": r["busy_fast"]["n"],
        "busy_wiegand_missed": r["busy_fast"]["missed"],
        "busy_fixed25_read": r["busy_fixed"]["n"],
        "busy_fixed25_missed": r["busy_fixed"]["missed"],
        "busy_edge_lag_max_ms": r["lag_busy"]["max"],
        "naive_poll50_em4100_to_relay_p50_ms": r["naive_em"]["p50"],
        "naive_poll50_em4100_to_relay_p99_ms": r["naive_em"]["p99"],
        "cards": n_cards,
        "load_average": round(load_before, 2),
        "quick": quick,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
