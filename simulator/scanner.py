"""A virtual serial pass scanner: a pseudo-terminal that codes are typed into.

It behaves like the USB scanner a gate has: the agent opens ``link_path`` with pyserial,
exactly as it opens ``/dev/ttyACM0``; codes arrive one line at a time at the pace of the
configured baud rate (10 bits a byte, about 1.04 ms a character at 9600), optionally
behind an AIM symbology identifier; the scanner can be unplugged and plugged in again
under the same path; and it produces the garbage real scanners produce.  Everything typed
is recorded in :attr:`VirtualScanner.history`, so a test can compare what went in with
what the console stored.

Typing into an unplugged scanner raises :class:`~simulator.pty.DeviceUnplugged` (a
``ConnectionError``); see :mod:`simulator.pty` for what happens to bytes typed before the
reader opens the port.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from simulator.pty import DeviceBlocked, DeviceUnplugged, PseudoTerminal

__all__ = ["GARBAGE_KINDS", "SETUP_CODES", "DeviceBlocked", "DeviceUnplugged", "Typed", "VirtualScanner"]

GARBAGE_KINDS = ("noise", "control", "oversize", "setup")

SETUP_CODES = ("NLS0006010;", "DEFALT.", "232BAD9.", "@UPAAD50", "$$%^5917069990020010F141")
"""Vendor configuration codes (see :mod:`drivers.setup_codes`) that people do present to scanners."""

_CONTROL = bytes(b for b in range(0x20) if b not in (0x0A, 0x0D)) + b"\x7f"
_NOISE = bytes(b for b in range(0x100) if b not in (0x0A, 0x0D))


@dataclass(frozen=True, slots=True)
class Typed:
    """One line the scanner sent: ``kind`` is ``code`` or a garbage kind; ``at_ns`` is after its terminator."""

    kind: str
    code: str | None
    data: bytes
    at_ns: int


class VirtualScanner:
    """A scanner on a pseudo-terminal, reachable at a stable ``link_path``."""

    def __init__(
        self,
        link_path: Path | str,
        *,
        baudrate: int = 9600,
        terminator: bytes = b"\r",
        prefix: str | None = None,
        pace: bool = True,
        oversize_length: int = 600,
        write_timeout_s: float = 1.0,
    ) -> None:
        if baudrate <= 0:
            raise ValueError("baudrate must be positive")
        self.baudrate = baudrate
        self.terminator = terminator
        self.prefix = prefix
        self.pace = pace
        self.oversize_length = oversize_length
        self.write_timeout_s = write_timeout_s
        self.history: list[Typed] = []
        self._pty = PseudoTerminal(link_path)
        self._typing = threading.Lock()
        self._pty.plug()

    @property
    def link_path(self) -> Path:
        return self._pty.link_path

    @property
    def plugged(self) -> bool:
        return self._pty.plugged

    @property
    def byte_time_s(self) -> float:
        """How long one byte takes on the wire: start bit, 8 data bits, stop bit."""
        return 10 / self.baudrate

    # -- typing ----------------------------------------------------------------------

    def type(self, code: str) -> int:
        """Send one code as a scanner would; return ``monotonic_ns()`` right after its terminator."""
        line = f"{self.prefix or ''}{code}".encode() + self.terminator
        return self._send("code", code, line)

    def type_bytes(self, data: bytes, kind: str = "raw") -> int:
        """Send raw bytes exactly as given (no prefix, no terminator added)."""
        return self._send(kind, None, data)

    def type_garbage(self, rng: random.Random, kind: str | None = None) -> bytes:
        """Send one line of typical garbage and return it.

        Each garbage line is terminated and contains no other terminator, so it is
        exactly one line: a reader with default settings rejects it once and reads the
        next code normally.  ``oversize`` is longer than the default ``max_length`` (512).
        """
        kind = kind or rng.choice(GARBAGE_KINDS)
        if kind == "noise":
            body = bytes(rng.choice(_NOISE) for _ in range(rng.randint(4, 40)))
            body = body[:-1] + bytes([rng.choice(_CONTROL)])  # never accidentally printable
        elif kind == "control":
            body = bytes(rng.choice(_CONTROL) for _ in range(rng.randint(1, 12)))
        elif kind == "oversize":
            body = "".join(rng.choice("0123456789") for _ in range(self.oversize_length)).encode()
        elif kind == "setup":
            body = f"{self.prefix or ''}{rng.choice(SETUP_CODES)}".encode()
        else:
            raise ValueError(f"unknown garbage kind {kind!r}; one of {', '.join(GARBAGE_KINDS)}")
        line = body + self.terminator
        self._send(kind, None, line)
        return line

    def _send(self, kind: str, code: str | None, data: bytes) -> int:
        with self._typing:
            if self.pace and data:
                self._paced_write(data)
            else:
                self._pty.write(data, self.write_timeout_s)
            done = time.monotonic_ns()
            self.history.append(Typed(kind, code, data, done))
            return done

    def _paced_write(self, data: bytes) -> None:
        """Release each byte when it would have finished arriving over the wire.

        The schedule is absolute, so sleep overshoot never accumulates: a late wake-up
        writes every byte that is due in one go.
        """
        byte_ns = int(self.byte_time_s * 1e9)
        start = time.monotonic_ns()
        sent = 0
        while sent < len(data):
            now = time.monotonic_ns()
            due = min(len(data), (now - start) // byte_ns)
            if due > sent:
                self._pty.write(data[sent:due], self.write_timeout_s)
                sent = due
                continue
            wake = start + (sent + 1) * byte_ns
            time.sleep(max(0, wake - now) / 1e9)

    # -- the cable -------------------------------------------------------------------

    def unplug(self) -> None:
        """Pull the cable: the link disappears and the reader's next read fails."""
        with self._typing:
            self._pty.unplug()

    def replug(self) -> None:
        """Plug it back in: a new pty behind the same ``link_path``."""
        with self._typing:
            self._pty.plug()

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> VirtualScanner:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
