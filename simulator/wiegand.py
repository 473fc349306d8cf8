"""A Wiegand reader that pulses gpiozero mock pins with real timing.

It drives the same :class:`~gpiozero.pins.mock.MockPin` objects a
:class:`~drivers.wiegand.WiegandReader` listens to, so the whole path — pin edges,
gpiozero callbacks, the decoder's silence timeout, the reader thread — runs as it would
on a Pi.  Pulse width and gap are configurable, out-of-spec values included, and glitches
can be laid between the bits to show that noise becomes a rejection, never a card.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from gpiozero.pins.mock import MockFactory, MockPin

from drivers.wiegand import H10301, WiegandFormat, encode_key

SPEC_PULSE_US = (20.0, 100.0)
SPEC_GAP_US = (200.0, 20_000.0)
FRAME_PAUSE_NS = 40_000_000
"""Quiet time after a frame: longer than a decoder's 25 ms minimum silence."""


def wait_until(deadline_ns: int) -> None:
    """Sleep most of the way, then spin: ``time.sleep`` alone overshoots µs pulses by far."""
    while True:
        remaining = deadline_ns - time.monotonic_ns()
        if remaining <= 0:
            return
        if remaining > 2_000_000:
            time.sleep((remaining - 1_000_000) / 1e9)


@dataclass(frozen=True, slots=True)
class Pulse:
    """One pulse as sent: which line, when it started and how long it was held low."""

    line: int
    start_ns: int
    width_ns: int
    glitch: bool = False


class VirtualWiegandReader:
    """Sends frames on two mock pins the way a reader's open-collector outputs would."""

    def __init__(
        self,
        factory: MockFactory,
        d0: int | str,
        d1: int | str,
        *,
        pulse_us: float = 50.0,
        gap_us: float = 2_000.0,
        frame_pause_s: float = FRAME_PAUSE_NS / 1e9,
    ) -> None:
        self.frame_pause_ns = round(frame_pause_s * 1e9)
        self._pins: tuple[MockPin, MockPin] = (factory.pin(d0), factory.pin(d1))
        self.pulse_us = pulse_us
        self.gap_us = gap_us
        self.sent: list[Pulse] = []
        self._lock = threading.Lock()

    def _pulse(self, line: int, width_ns: int, *, glitch: bool = False, crosstalk: bool = False) -> int:
        """One pulse; returns when it ended.

        Times are taken after each drive returns, so a thread switch in between (the GIL
        hands over every 5 ms, and a loaded machine deschedules threads) can only lengthen
        a pulse or a gap, never shorten one.  With ``crosstalk`` the other line dips
        while this one is low, as on a cable whose pairs couple.
        """
        pin = self._pins[line]
        pin.drive_low()
        start = time.monotonic_ns()
        if crosstalk:
            other = self._pins[1 - line]
            other.drive_low()
            other.drive_high()
            self.sent.append(Pulse(1 - line, time.monotonic_ns(), 0, True))
        wait_until(start + width_ns)
        pin.drive_high()
        end = time.monotonic_ns()
        self.sent.append(Pulse(line, start, end - start, glitch))
        return end

    def send_bits(
        self,
        bits: str,
        *,
        pulse_us: float | None = None,
        gap_us: float | None = None,
        glitches: Iterable[int] = (),
        glitch_width_us: float = 1.0,
        glitch_line: int = 1,
        crosstalk: Iterable[int] = (),
        pause: bool = True,
    ) -> None:
        """Send ``bits`` first bit first.

        A stray pulse is laid in the gap after each index in ``glitches``, and the other
        line dips during each bit whose index is in ``crosstalk``.  Glitch widths under
        ~50 µs are not reproducible on mock pins (the callbacks a pin edge runs take that
        long in Python), so a gap glitch is noise by width only in the pure decoder tests;
        here it shows up as an extra bit, and crosstalk as both lines low at once.

        With ``pause`` the lines then stay quiet long enough for any decoder to end the
        frame, as a real reader does between cards; without it, the next frame follows
        at once (two frames run together, which a decoder must reject).
        """
        if set(bits) - {"0", "1"}:
            raise ValueError("bits are 0 and 1")
        width_ns = round((self.pulse_us if pulse_us is None else pulse_us) * 1000)
        gap_ns = round((self.gap_us if gap_us is None else gap_us) * 1000)
        glitch_after, crosstalk_at = set(glitches), set(crosstalk)
        with self._lock:
            for index, bit in enumerate(bits):
                end = self._pulse(int(bit), width_ns, crosstalk=index in crosstalk_at)
                if index in glitch_after:
                    wait_until(end + gap_ns // 2)
                    self._pulse(glitch_line, round(glitch_width_us * 1000), glitch=True)
                wait_until(end + gap_ns)
            if pause:
                wait_until(time.monotonic_ns() + max(self.frame_pause_ns, 4 * (width_ns + gap_ns)))

    def send_card(self, facility: int | None, card: int, fmt: WiegandFormat = H10301, **timing: float) -> str:
        """Send one card in ``fmt``; returns the bits sent."""
        bits = fmt.encode(facility, card)
        self.send_bits(bits, **timing)
        return bits

    def send_key(self, key: str, bits: int = 8, **timing: float) -> str:
        frame = encode_key(key, bits)
        self.send_bits(frame, **timing)
        return frame

    def glitch(self, line: int = 0, width_us: float = 1.0) -> None:
        """One stray pulse, as a relay or a long cable picks up."""
        with self._lock:
            self._pulse(line, round(width_us * 1000), glitch=True)

    def hold_low(self, line: int, seconds: float) -> None:
        """A shorted or cut data line: held low far longer than any pulse."""
        with self._lock:
            self._pulse(line, round(seconds * 1e9), glitch=True)
