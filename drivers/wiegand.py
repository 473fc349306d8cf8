"""Wiegand card readers and PIN pads on two GPIO lines.

A Wiegand reader idles both data lines high and sends each bit as a short low pulse:
on D0 for a 0, on D1 for a 1 (pulses 20–100 µs, gaps 200 µs–20 ms).  There is no
start or stop marker, so a frame ends when the lines fall silent.  The decoder here is a
pure class fed timestamped edges, so its timing rules are tested without pins; the
:class:`WiegandReader` only attaches it to gpiozero inputs.

Bits are kept in the order they arrive, first bit first (the most significant bit of
every field), which is where decoders that shift bits the wrong way produce plausible but
wrong card numbers (ESPEasy#2400, pigpio#30).  Any doubt about a frame — a parity bit,
a glitch between bits, both lines low at once — rejects the whole frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gpiozero import DigitalInputDevice
from gpiozero.pins import Factory

from drivers.cards import CardRead, CardRejected, CardRejectReason, KeyPress, ReaderKind, Reading

log = logging.getLogger("gatepost.drivers.wiegand")

MIN_SILENCE_NS = 25_000_000
"""A frame ends after at least this much silence (longer when the reader's bits are slower)."""
DOUBT_SILENCE_NS = 25_000_000
"""By the clock alone, a frame that is not a card (or a line low) is only final after this much.

Edges reach Python late when the interpreter is busy (a thread holding the GIL, a garbage
collection), so a short silence seen by the clock may be a frame whose next edges are still
on their way.  A frame that already decodes to a card ends on the short silence; anything
else waits this long, and an edge whose own timestamp falls within the silence continues it.
"""
SILENCE_PERIODS = 3
"""...or after this many of the frame's slowest bit periods, whichever is longer."""
MIN_PULSE_NS = 10_000
"""Pulses shorter than this are glitches (the standard's shortest pulse is 20 µs)."""
MIN_INTERVAL_NS = 100_000
"""Pulses starting closer together than this are glitches (the standard's shortest gap is 200 µs)."""
MAX_BITS = 64

KEYPAD_KEYS = "0123456789*#"
"""Key for each 4-bit value 0–11: ``*`` is 10 and ``#`` is 11 (Rosslare AYC-Qx4 manual §4.2.3.9)."""


@dataclass(frozen=True, slots=True)
class WiegandFormat:
    """A card format: where its fields and parity bits sit, as ``[start, stop)`` bit ranges.

    The even parity bit is the first bit and makes the ones in ``even`` (itself included)
    even; the odd parity bit is the last bit and makes the ones in ``odd`` odd.  The ranges
    may overlap (H10304 counts its middle bit twice).
    """

    name: str
    bits: int
    facility: tuple[int, int] | None
    card: tuple[int, int]
    even: tuple[int, int]
    odd: tuple[int, int]

    @property
    def max_facility(self) -> int:
        return 0 if self.facility is None else (1 << (self.facility[1] - self.facility[0])) - 1

    @property
    def max_card(self) -> int:
        return (1 << (self.card[1] - self.card[0])) - 1

    def parity_ok(self, bits: str) -> tuple[bool, bool]:
        """Whether the even and the odd parity bits hold, in that order."""
        even = bits[self.even[0] : self.even[1]].count("1") % 2 == 0
        odd = bits[self.odd[0] : self.odd[1]].count("1") % 2 == 1
        return even, odd

    def encode(self, facility: int | None, card: int) -> str:
        """The frame a reader sends for this card, parity included, first bit first."""
        if self.facility is None:
            if facility not in (None, 0):
                raise ValueError(f"{self.name} has no facility code")
            facility = 0
        if facility is None or not 0 <= facility <= self.max_facility:
            raise ValueError(f"facility must be 0..{self.max_facility} for {self.name}")
        if not 0 <= card <= self.max_card:
            raise ValueError(f"card must be 0..{self.max_card} for {self.name}")
        frame = ["0"] * self.bits
        if self.facility is not None:
            start, stop = self.facility
            frame[start:stop] = format(facility, f"0{stop - start}b")
        start, stop = self.card
        frame[start:stop] = format(card, f"0{stop - start}b")
        if "".join(frame[self.even[0] + 1 : self.even[1]]).count("1") % 2:
            frame[0] = "1"
        if "".join(frame[self.odd[0] : self.odd[1] - 1]).count("1") % 2 == 0:
            frame[-1] = "1"
        return "".join(frame)

    def fields(self, bits: str) -> tuple[int | None, int]:
        facility = None if self.facility is None else int(bits[self.facility[0] : self.facility[1]], 2)
        return facility, int(bits[self.card[0] : self.card[1]], 2)


H10301 = WiegandFormat("H10301", 26, facility=(1, 9), card=(9, 25), even=(0, 13), odd=(13, 26))
"""Standard 26-bit: 8-bit facility, 16-bit card; even parity over bits 1–13, odd over 14–26."""
H10306 = WiegandFormat("H10306", 34, facility=(1, 17), card=(17, 33), even=(0, 17), odd=(17, 34))
"""34-bit: 16-bit facility, 16-bit card; even parity over bits 1–17, odd over 18–34."""
H10304 = WiegandFormat("H10304", 37, facility=(1, 17), card=(17, 36), even=(0, 19), odd=(18, 37))
"""37-bit with facility: 16-bit facility, 19-bit card; even over bits 1–19, odd over 19–37."""

CARD_FORMATS: dict[int, WiegandFormat] = {f.bits: f for f in (H10301, H10306, H10304)}


def encode_key(key: str, bits: int = 4) -> str:
    """A PIN pad's frame for one key: 4 bits, or 8 with the complement nibble first."""
    value = KEYPAD_KEYS.index(key)
    low = format(value, "04b")
    if bits == 4:
        return low
    if bits == 8:
        return format(value ^ 0xF, "04b") + low
    raise ValueError("keypad frames are 4 or 8 bits")


def decode_bits(
    bits: str,
    at_ns: int = 0,
    *,
    reader: str = "",
    formats: dict[int, WiegandFormat] | None = None,
    keypad: bool = True,
) -> CardRead | KeyPress | CardRejected:
    """Turn one complete frame (``"0"``/``"1"`` characters, first bit first) into a reading."""
    formats = CARD_FORMATS if formats is None else formats
    n = len(bits)

    def reject(reason: CardRejectReason, detail: str) -> CardRejected:
        return CardRejected(ReaderKind.WIEGAND, reason, detail, n, bits, at_ns, reader)

    if n == 0 or set(bits) - {"0", "1"}:
        return reject(CardRejectReason.FORMAT, "a frame is made of 0 and 1 bits")
    if keypad and n in (4, 8):
        value = int(bits[-4:], 2)
        if n == 8 and int(bits[:4], 2) != value ^ 0xF:
            return reject(CardRejectReason.PARITY, "high nibble is not the complement of the key")
        if value >= len(KEYPAD_KEYS):
            return reject(CardRejectReason.FORMAT, f"keypad value {value} is no key")
        return KeyPress(KEYPAD_KEYS[value], n, bits, at_ns, reader)
    fmt = formats.get(n)
    if fmt is None:
        known = ", ".join(str(b) for b in sorted(formats))
        return reject(CardRejectReason.LENGTH, f"{n}-bit frame; known card lengths are {known}")
    if "1" not in bits[1:-1]:
        return reject(CardRejectReason.ALL_ZERO, f"{fmt.name}: facility and card are all zero")
    even, odd = fmt.parity_ok(bits)
    if not (even and odd):
        which = " and ".join(name for name, ok in (("even", even), ("odd", odd)) if not ok)
        return reject(CardRejectReason.PARITY, f"{fmt.name}: {which} parity wrong")
    facility, card = fmt.fields(bits)
    return CardRead(ReaderKind.WIEGAND, card, n, bits, facility, at_ns, reader)


class WiegandDecoder:
    """Frames from timestamped edges.  Pure: no pins, no threads, no clock of its own.

    Feed every edge with :meth:`edge` (``active`` is true when the line is pulled low,
    the start of a pulse) and call :meth:`poll` no later than :meth:`deadline_ns` so a
    frame ends on silence.  Both return the readings that became complete.  Without
    release edges (``active=False``) pulse widths cannot be checked, but everything else
    still holds.
    """

    def __init__(
        self,
        *,
        reader: str = "wiegand",
        formats: dict[int, WiegandFormat] | None = None,
        keypad: bool = True,
        min_silence_ns: int = MIN_SILENCE_NS,
        silence_periods: int = SILENCE_PERIODS,
        doubt_silence_ns: int = DOUBT_SILENCE_NS,
        min_pulse_ns: int = MIN_PULSE_NS,
        min_interval_ns: int = MIN_INTERVAL_NS,
        max_bits: int = MAX_BITS,
    ) -> None:
        self.reader = reader
        self._formats = CARD_FORMATS if formats is None else formats
        self._keypad = keypad
        self._min_silence_ns = min_silence_ns
        self._silence_periods = silence_periods
        self._doubt_silence_ns = doubt_silence_ns
        self._min_pulse_ns = min_pulse_ns
        self._min_interval_ns = min_interval_ns
        self._max_bits = max_bits
        self._low = [False, False]
        self._low_since = [0, 0]
        self._stuck = [False, False]
        self._suspect = [False, False]
        self._reset()

    def _reset(self) -> None:
        self._bits: list[str] = []
        self._count = 0
        self._first_ns: int | None = None
        self._last_start_ns = 0
        self._last_activity_ns = 0
        self._period_ns = 0
        self._noise: str | None = None
        self._held = False

    def _mark_noise(self, detail: str) -> None:
        if self._noise is None:
            self._noise = detail

    def _silence_ns(self) -> int:
        return max(self._min_silence_ns, self._silence_periods * self._period_ns)

    def _doubt_ns(self) -> int:
        return max(self._silence_ns(), self._doubt_silence_ns)

    @property
    def held(self) -> bool:
        """A frame fell silent but is no card: it is kept a while in case the rest of it is late."""
        return self._held

    def deadline_ns(self) -> int | None:
        """When :meth:`poll` must next run, or ``None`` while nothing is pending."""
        silence, doubt = self._silence_ns(), self._doubt_ns()
        deadlines = [
            self._low_since[line] + (doubt if self._suspect[line] else silence)
            for line in (0, 1)
            if self._low[line] and not self._stuck[line]
        ]
        if self._first_ns is not None and not any(self._low):
            deadlines.append(self._last_activity_ns + (doubt if self._held else silence))
        return min(deadlines, default=None)

    def edge(self, line: int, active: bool, t_ns: int) -> list[Reading]:
        """One edge on D0 (``line=0``) or D1 (``line=1``) at monotonic time ``t_ns``.

        The edge's own time settles what came before it: edges arrive in order, so nothing
        happened between the last one and this one.
        """
        out = self._expire(t_ns, settled=True)
        if line not in (0, 1):
            return out
        other = 1 - line
        if active:
            if self._low[line]:
                return out  # a repeated edge: the line was already low
            self._low[line], self._low_since[line] = True, t_ns
            if self._first_ns is None:
                self._first_ns = t_ns
            elif t_ns - self._last_start_ns < self._min_interval_ns:
                self._mark_noise(f"pulses {(t_ns - self._last_start_ns) / 1000:.0f} µs apart")
            else:
                self._period_ns = max(self._period_ns, t_ns - self._last_start_ns)
            if self._low[other]:
                self._mark_noise("D0 and D1 low at the same time")
            self._count += 1
            if len(self._bits) < self._max_bits:
                self._bits.append(str(line))
            self._last_start_ns = self._last_activity_ns = t_ns
            self._held = False
        elif self._low[line]:
            self._low[line] = False
            self._suspect[line] = False
            if self._stuck[line]:
                self._stuck[line] = False
                return out  # a stuck line let go: not part of any frame
            width = t_ns - self._low_since[line]
            if width < self._min_pulse_ns and self._first_ns is not None:
                self._mark_noise(f"D{line} pulse {width / 1000:.1f} µs wide")
            self._last_activity_ns = max(self._last_activity_ns, t_ns)
        return out

    def poll(self, now_ns: int) -> list[Reading]:
        """End a frame whose silence has lasted long enough; report a line held low.

        ``now_ns`` is the clock, and edges may still be on their way: a frame that decodes
        to a card ends after the silence, anything else only after the doubt silence
        (the same unless the silence is shorter than :data:`DOUBT_SILENCE_NS`).
        """
        return self._expire(now_ns, settled=False)

    def _expire(self, now_ns: int, *, settled: bool) -> list[Reading]:
        out: list[Reading] = []
        silence, doubt = self._silence_ns(), self._doubt_ns()
        for line in (0, 1):
            if not self._low[line] or self._stuck[line] or now_ns - self._low_since[line] < silence:
                continue
            if settled or now_ns - self._low_since[line] >= doubt:
                self._stuck[line] = True
                self._suspect[line] = False
                self._mark_noise(f"D{line} held low for {(now_ns - self._low_since[line]) / 1e6:.0f} ms")
                out.extend(self._finish())
            else:
                self._suspect[line] = True  # or its release is late: wait for the doubt silence
        if self._first_ns is not None and not any(self._low):
            quiet = now_ns - self._last_activity_ns
            if quiet >= silence:
                if settled or quiet >= doubt or self._is_card():
                    out.extend(self._finish())
                else:
                    self._held = True
        return out

    def _is_card(self) -> bool:
        if self._noise is not None or self._count > self._max_bits:
            return False
        bits = "".join(self._bits)
        return isinstance(decode_bits(bits, formats=self._formats, keypad=self._keypad), CardRead)

    def _finish(self) -> list[Reading]:
        if self._first_ns is None:
            return []
        bits, count, at_ns, noise = "".join(self._bits), self._count, self._first_ns, self._noise
        self._reset()
        if noise is not None:
            return [
                CardRejected(
                    ReaderKind.WIEGAND, CardRejectReason.NOISE, noise, count, bits, at_ns, self.reader
                )
            ]
        if count > self._max_bits:
            detail = f"{count} bits, more than any format ({self._max_bits})"
            return [
                CardRejected(
                    ReaderKind.WIEGAND, CardRejectReason.LENGTH, detail, count, bits, at_ns, self.reader
                )
            ]
        return [decode_bits(bits, at_ns, reader=self.reader, formats=self._formats, keypad=self._keypad)]


class WiegandLine(DigitalInputDevice):
    """One Wiegand data line: a pulled-up input whose every edge goes to ``sink`` with its time.

    ``when_activated`` callbacks carry no timestamp, so this hooks gpiozero's documented
    extension point :meth:`_fire_events`, which receives the pin factory's ticks for the
    edge (the kernel's event time with lgpio, not the time Python got round to it).
    """

    def __init__(
        self,
        pin: int | str,
        *,
        line: int,
        sink: Callable[[int, bool, float], None],
        pin_factory: Factory | None = None,
    ) -> None:
        self._line = line
        self._sink = sink
        super().__init__(pin, pull_up=True, pin_factory=pin_factory)

    def _fire_events(self, ticks: float, new_active: bool) -> None:
        old = self._last_active
        super()._fire_events(ticks, new_active)
        if old is not None and old != new_active:
            self._sink(self._line, new_active, ticks)


class WiegandReader:
    """A Wiegand reader on two GPIO inputs, delivering readings to ``on_reading``.

    Edges arrive on gpiozero's callback thread (on the caller's thread with the mock
    factory); readings are delivered from this reader's own thread, which also ends
    frames on silence, so a slow ``on_reading`` never delays edge capture.
    """

    def __init__(
        self,
        d0: int | str,
        d1: int | str,
        on_reading: Callable[[Reading], None],
        *,
        name: str = "wiegand",
        pin_factory: Factory | None = None,
        decoder: WiegandDecoder | None = None,
    ) -> None:
        self.name = name
        self._on_reading = on_reading
        self._decoder = decoder or WiegandDecoder(reader=name)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pending: list[Reading] = []
        self._d0 = WiegandLine(d0, line=0, sink=self._edge, pin_factory=pin_factory)
        try:
            self._d1 = WiegandLine(d1, line=1, sink=self._edge, pin_factory=pin_factory)
        except Exception:
            self._d0.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"wiegand-{name}", daemon=True)
        self._thread.start()

    def _edge(self, line: int, active: bool, ticks: float) -> None:
        with self._lock:
            before = self._decoder.deadline_ns()
            ready = self._decoder.edge(line, active, round(ticks * 1e9))
            after = self._decoder.deadline_ns()
            self._pending.extend(ready)
        # Later edges mostly push the deadline back, which the thread finds when it wakes;
        # waking it on every edge would only compete with edge capture for the GIL.  It is
        # woken when the deadline comes forward: a held frame that late edges continued.
        if before is None or ready or (after is not None and after < before):
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                deadline = self._decoder.deadline_ns()
            timeout = None if deadline is None else max(0.0, (deadline - time.monotonic_ns()) / 1e9)
            self._wake.wait(timeout)
            self._wake.clear()
            with self._lock:
                ready = self._pending + self._decoder.poll(time.monotonic_ns())
                self._pending = []
            for reading in ready:
                try:
                    self._on_reading(reading)
                except Exception:
                    log.exception("reader %s: on_reading failed", self.name)

    @property
    def alive(self) -> bool:
        """False only when the delivering thread has ended while the reader is open (a bug)."""
        return self._thread.is_alive() or self._stopping.is_set()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._d0.close()
        self._d1.close()

    def __enter__(self) -> WiegandReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
