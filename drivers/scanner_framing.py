"""Turning a serial scanner's byte stream into codes, without any I/O.

A scanner sends each code as one line.  What arrives in practice is messier: CR, LF or
CRLF depending on the model, an optional AIM symbology identifier (``]Q1`` for QR), and
now and then noise -- half a line from a code held at an angle, line garbage when a cable
is plugged in, or someone waving a scanner's own setup barcode at it.  The framer turns
every byte into exactly one of two outcomes: a :class:`Scan` or a :class:`ScanRejected`
with an enumerated reason.  It never raises on input and never emits part of a line.

It is pure (bytes and timestamps in, results out), so it is tested by feeding bytes;
the result is the same however the stream is cut into chunks, as it is by the kernel.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Flag, StrEnum, auto

from drivers.setup_codes import setup_code_kind, setup_code_kind_of_bytes

CR = 0x0D
LF = 0x0A

_AIM_PREFIX = re.compile(r"\][A-Za-z][0-9A-Za-z]")
"""AIM symbology identifier (ISO/IEC 15424): ``]``, a code letter, a modifier character."""

_PREVIEW_BYTES = 8


class Terminator(Flag):
    """Which bytes end a line.  With both, a LF right after a CR is part of the same terminator."""

    CR = auto()
    LF = auto()
    CRLF = CR | LF


class ScanRejectReason(StrEnum):
    """Why a line from a scanner is not a code.  Stable strings: they appear in events."""

    TOO_LONG = "too_long"
    """The line grew past ``max_length``; the rest of it up to its terminator was discarded."""
    UNPRINTABLE = "unprintable"
    """Control characters, DEL, non-ASCII (unless allowed) or invalid UTF-8."""
    SETUP_CODE = "setup_code"
    """Looks like a scanner configuration command (see :mod:`drivers.setup_codes`)."""
    EMPTY_AFTER_PREFIX = "empty_after_prefix"
    """Nothing but an AIM symbology identifier."""
    TIMEOUT = "timeout"
    """An unterminated line on which no byte arrived for ``line_timeout_s``."""
    TRUNCATED = "truncated"
    """The stream ended (port lost or closed) in the middle of a line."""


@dataclass(frozen=True, slots=True)
class Scan:
    """One code read by a scanner.

    ``at_ns`` is ``time.monotonic_ns()`` when the terminator byte was read, so latency
    from the glass to the door's answer can be measured end to end.
    """

    code: str
    raw: bytes
    symbology: str | None
    at_ns: int


@dataclass(frozen=True, slots=True)
class ScanRejected:
    """A line that is not a code.  ``detail`` never quotes the input: at most a short hex preview."""

    reason: ScanRejectReason
    detail: str
    length: int
    at_ns: int


ScanResult = Scan | ScanRejected


def hex_preview(data: bytes, limit: int = _PREVIEW_BYTES) -> str:
    """A few bytes as hex: enough to recognise garbage in a log, too short to carry a payload."""
    text = data[:limit].hex(" ")
    return text + (" …" if len(data) > limit else "")


class ScanFramer:
    """Splits a byte stream into lines and judges each one.

    ``feed()`` first expires a stale partial line (so noise from minutes ago never joins
    the next code), then consumes the bytes.  ``expire()`` should also be called when a
    read times out, so an unterminated line is reported promptly rather than when the
    next byte happens to come.
    """

    def __init__(
        self,
        max_length: int = 512,
        terminators: Terminator = Terminator.CRLF,
        *,
        line_timeout_s: float = 0.5,
        allow_unicode: bool = False,
    ) -> None:
        if max_length < 1:
            raise ValueError("max_length must be at least 1")
        if not terminators:
            raise ValueError("at least one terminator is needed")
        if line_timeout_s <= 0:
            raise ValueError("line_timeout_s must be positive")
        self.max_length = max_length
        self.terminators = terminators
        self.line_timeout_ns = int(line_timeout_s * 1e9)
        self.allow_unicode = allow_unicode
        self._ends = bytes(b for b, flag in ((CR, Terminator.CR), (LF, Terminator.LF)) if flag in terminators)
        self._swallow_lf = Terminator.CRLF in terminators
        self._buffer = bytearray()
        self._discarding = False
        self._after_cr = False
        self._last_ns: int | None = None

    @property
    def pending(self) -> int:
        """Bytes of an unterminated line held right now (0 while discarding an oversize one)."""
        return len(self._buffer)

    def feed(self, data: bytes, at_ns: int, *, waited: bool = False) -> list[ScanResult]:
        """Consume bytes that arrived at ``at_ns``; return what they completed, in order.

        ``waited``: the bytes were already waiting when the reader came to read them, so
        when they arrived is not known; a gap since the partial line's last byte may be the
        reader's own delay (a busy machine, a slow commit), not the scanner's, and the line
        is not expired for it.  Expiring it tore one code in two under load: its head
        refused, its tail taken as a code of its own.
        """
        out = [] if waited else self.expire(at_ns)
        if not data:
            return out
        self._last_ns = at_ns
        i, n = 0, len(data)
        while i < n:
            if self._after_cr:
                self._after_cr = False
                if data[i] == LF:
                    i += 1
                    continue
            j = self._next_end(data, i)
            self._append(data[i:j], at_ns, out)
            if j == n:
                break
            self._end_line(at_ns, out)
            self._after_cr = self._swallow_lf and data[j] == CR
            i = j + 1
        return out

    def expire(self, now_ns: int) -> list[ScanResult]:
        """Drop a partial line on which nothing arrived for ``line_timeout_s``."""
        if self._last_ns is None or now_ns - self._last_ns < self.line_timeout_ns:
            return []
        self._after_cr = False
        self._last_ns = None
        self._discarding = False
        if not self._buffer:
            return []
        return [self._drop_partial(ScanRejectReason.TIMEOUT, "no terminator", now_ns)]

    def flush(self, at_ns: int) -> list[ScanResult]:
        """The stream ended: reject a partial line as ``truncated`` and start afresh."""
        self._after_cr = False
        self._last_ns = None
        self._discarding = False
        if not self._buffer:
            return []
        return [self._drop_partial(ScanRejectReason.TRUNCATED, "stream ended", at_ns)]

    # -- internals -------------------------------------------------------------------

    def _next_end(self, data: bytes, start: int) -> int:
        end = len(data)
        for byte in self._ends:
            found = data.find(byte, start, end)
            if found != -1:
                end = found
        return end

    def _append(self, segment: bytes, at_ns: int, out: list[ScanResult]) -> None:
        if self._discarding or not segment:
            return
        self._buffer += segment
        if len(self._buffer) > self.max_length:
            out.append(
                ScanRejected(
                    ScanRejectReason.TOO_LONG,
                    f"line longer than {self.max_length} bytes, starts {hex_preview(self._buffer[: self.max_length + 1])}",
                    self.max_length + 1,
                    at_ns,
                )
            )
            self._buffer.clear()
            self._discarding = True

    def _end_line(self, at_ns: int, out: list[ScanResult]) -> None:
        if self._discarding:
            self._discarding = False
            return
        if not self._buffer:
            return  # an empty line: the LF of a CR LF on a CR-only setup, or a stray terminator
        line = bytes(self._buffer)
        self._buffer.clear()
        out.append(self.judge(line, at_ns))

    def _drop_partial(self, reason: ScanRejectReason, why: str, at_ns: int) -> ScanRejected:
        partial = bytes(self._buffer)
        self._buffer.clear()
        return ScanRejected(
            reason, f"{why} after {len(partial)} bytes, starts {hex_preview(partial)}", len(partial), at_ns
        )

    def judge(self, line: bytes, at_ns: int) -> ScanResult:
        """Decide what one complete line (without terminator) is."""
        length = len(line)
        kind = setup_code_kind_of_bytes(line)
        if kind is not None:
            return ScanRejected(
                ScanRejectReason.SETUP_CODE, f"looks like a scanner setup code ({kind})", length, at_ns
            )
        text = self._decode(line, at_ns)
        if isinstance(text, ScanRejected):
            return text
        symbology: str | None = None
        code = text
        match = _AIM_PREFIX.match(code)
        if match:
            symbology = match.group()
            code = code[match.end() :]
            if not code:
                return ScanRejected(
                    ScanRejectReason.EMPTY_AFTER_PREFIX,
                    f"only the symbology identifier {symbology}",
                    length,
                    at_ns,
                )
        kind = setup_code_kind(code)
        if kind is not None:
            return ScanRejected(
                ScanRejectReason.SETUP_CODE, f"looks like a scanner setup code ({kind})", length, at_ns
            )
        return Scan(code, line, symbology, at_ns)

    def _decode(self, line: bytes, at_ns: int) -> str | ScanRejected:
        problem: str | None = None
        if not self.allow_unicode:
            for offset, byte in enumerate(line):
                if not 0x20 <= byte <= 0x7E:
                    problem = f"byte 0x{byte:02x} at offset {offset} of {len(line)}"
                    break
            else:
                return line.decode("ascii")
        else:
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem = f"invalid UTF-8 at offset {exc.start} of {len(line)}"
            else:
                for offset, char in enumerate(text):
                    if unicodedata.category(char).startswith("C"):
                        problem = f"character U+{ord(char):04X} at offset {offset} of {len(text)}"
                        break
                else:
                    return text
        return ScanRejected(ScanRejectReason.UNPRINTABLE, problem or "unprintable", len(line), at_ns)
