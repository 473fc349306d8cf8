"""EM4100 125 kHz tags through an RDM6300-style serial reader.

The reader sends, at 9600 8N1, ``0x02``, ten ASCII hex digits (a version byte and a
32-bit tag number: the full 40-bit id), two ASCII hex digits that are the XOR of the
five data bytes, and ``0x03`` — and sends it again and again while the tag stays in the
field.  The parser is pure (bytes and times in, readings out), so it is tested by feeding
bytes; :class:`Rdm6300Reader` only adds a serial port and a thread.

A tag is reported once when it arrives and once (:class:`~drivers.cards.CardGone`) when
it has been silent for ``gone_after`` (~300 ms), so the repeats of a tag held at the
reader are not a stream of badge-ins.  Frames that fail are rejections with a reason;
the same rejection repeating while a tag sits at the edge of the field is reported once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import reduce

import serial

from drivers.cards import CardGone, CardRead, CardRejected, CardRejectReason, ReaderKind, Reading
from drivers.reconnect import Backoff, keep_reading

log = logging.getLogger("gatepost.drivers.em4100")

STX = 0x02
ETX = 0x03
BODY_BYTES = 12
"""Ten data digits and two checksum digits between STX and ETX."""
GONE_AFTER_NS = 300_000_000
FRAME_TIMEOUT_NS = 50_000_000
"""A frame takes 15 ms at 9600 baud; one still open after this was cut short."""
_HEX = frozenset(b"0123456789ABCDEFabcdef")


def checksum(data: bytes) -> int:
    """XOR of the five data bytes, as the RDM630 specification defines it."""
    return reduce(lambda acc, b: acc ^ b, data, 0)


def frame(card_id: int) -> bytes:
    """The bytes a reader sends for a 40-bit tag id, framing included."""
    if not 0 <= card_id < 1 << 40:
        raise ValueError("an EM4100 id has 40 bits")
    data = card_id.to_bytes(5, "big")
    return bytes([STX]) + f"{data.hex().upper()}{checksum(data):02X}".encode() + bytes([ETX])


def _printable(body: bytes) -> str:
    text = body.decode("ascii", "replace")
    return text if text.isprintable() and text.isascii() else body.hex(" ")


def parse_body(body: bytes, at_ns: int = 0, *, reader: str = "") -> CardRead | CardRejected:
    """Check the twelve bytes between STX and ETX and return the tag or why not."""

    def reject(reason: CardRejectReason, detail: str) -> CardRejected:
        return CardRejected(ReaderKind.EM4100, reason, detail, len(body) * 4, _printable(body), at_ns, reader)

    if len(body) != BODY_BYTES:
        return reject(
            CardRejectReason.LENGTH, f"{len(body)} characters between start and end, not {BODY_BYTES}"
        )
    if not _HEX.issuperset(body):
        return reject(CardRejectReason.FORMAT, "characters that are not hex digits")
    text = body.decode("ascii").upper()
    data = bytes.fromhex(text[:10])
    sent, computed = int(text[10:], 16), checksum(data)
    if sent != computed:
        return reject(CardRejectReason.CHECKSUM, f"checksum {sent:02X}, data gives {computed:02X}")
    card_id = int.from_bytes(data, "big")
    if card_id == 0:
        return reject(CardRejectReason.ALL_ZERO, "tag id is all zero")
    return CardRead(ReaderKind.EM4100, card_id, 40, text[:10], None, at_ns, reader)


class Em4100Parser:
    """A byte stream from the reader in, readings out.  Pure: the caller supplies the time.

    Call :meth:`feed` with whatever bytes arrived and :meth:`poll` no later than
    :meth:`deadline_ns`, which ends half frames and notices tags that went silent.
    """

    def __init__(
        self,
        *,
        reader: str = "em4100",
        gone_after_ns: int = GONE_AFTER_NS,
        frame_timeout_ns: int = FRAME_TIMEOUT_NS,
    ) -> None:
        self.reader = reader
        self._gone_after_ns = gone_after_ns
        self._frame_timeout_ns = frame_timeout_ns
        self._body: bytearray | None = None
        self._body_ns = 0
        self._junk = 0
        self._junk_ns = 0
        self._last_byte_ns = 0
        self._present: int | None = None
        self._seen_ns = 0
        self._last_reject: tuple[CardRejectReason, str] | None = None
        self._last_reject_ns = 0

    @property
    def present(self) -> int | None:
        """The id of the tag in the field now, if any."""
        return self._present

    def deadline_ns(self) -> int | None:
        deadlines = []
        if self._body is not None or self._junk:
            deadlines.append(self._last_byte_ns + self._frame_timeout_ns)
        if self._present is not None:
            deadlines.append(self._seen_ns + self._gone_after_ns)
        return min(deadlines, default=None)

    def feed(self, data: bytes, now_ns: int) -> list[Reading]:
        out = self.poll(now_ns)
        for byte in data:
            if byte == STX:
                out.extend(self._flush_junk())
                if self._body is not None:
                    out.extend(
                        self._reject(CardRejectReason.TRUNCATED, "frame cut short by the next start byte")
                    )
                self._body, self._body_ns = bytearray(), now_ns
            elif self._body is None:
                if not self._junk:
                    self._junk_ns = now_ns
                self._junk += 1
            elif byte == ETX:
                body, self._body = bytes(self._body), None
                out.extend(self._frame(parse_body(body, self._body_ns, reader=self.reader)))
            else:
                self._body.append(byte)
                if len(self._body) > BODY_BYTES:
                    body, self._body = bytes(self._body), None
                    out.extend(self._reject(CardRejectReason.LENGTH, "no end byte after a full frame", body))
        self._last_byte_ns = now_ns
        return out

    def poll(self, now_ns: int) -> list[Reading]:
        out: list[Reading] = []
        if now_ns - self._last_byte_ns >= self._frame_timeout_ns:
            out.extend(self._flush_junk())
            if self._body is not None:
                body, self._body = bytes(self._body), None
                out.extend(self._reject(CardRejectReason.TRUNCATED, "half a frame, then silence", body))
        if self._present is not None and now_ns - self._seen_ns >= self._gone_after_ns:
            out.append(
                CardGone(ReaderKind.EM4100, self._present, self._seen_ns + self._gone_after_ns, self.reader)
            )
            self._present = None
        return out

    def _frame(self, result: CardRead | CardRejected) -> list[Reading]:
        if isinstance(result, CardRejected):
            return self._reject(result.reason, result.detail, raw=result.raw, at_ns=result.at_ns)
        self._last_reject = None
        out: list[Reading] = []
        if self._present == result.card_id:
            self._seen_ns = result.at_ns
            return out  # the same tag repeating while it stays in the field
        if self._present is not None:
            out.append(CardGone(ReaderKind.EM4100, self._present, result.at_ns, self.reader))
        self._present, self._seen_ns = result.card_id, result.at_ns
        out.append(result)
        return out

    def _flush_junk(self) -> list[Reading]:
        if not self._junk:
            return []
        count, self._junk = self._junk, 0
        detail = f"{count} byte{'s' if count != 1 else ''} outside any frame"
        return [
            CardRejected(
                ReaderKind.EM4100, CardRejectReason.NOISE, detail, count * 8, "", self._junk_ns, self.reader
            )
        ]

    def _reject(
        self,
        reason: CardRejectReason,
        detail: str,
        body: bytes | None = None,
        *,
        raw: str | None = None,
        at_ns: int | None = None,
    ) -> list[Reading]:
        raw = raw if raw is not None else _printable(body if body is not None else bytes(self._body or b""))
        at_ns = self._body_ns if at_ns is None else at_ns
        key = (reason, raw)
        if self._last_reject == key and at_ns - self._last_reject_ns < self._gone_after_ns:
            self._last_reject_ns = at_ns
            return []
        self._last_reject, self._last_reject_ns = key, at_ns
        return [CardRejected(ReaderKind.EM4100, reason, detail, len(raw) * 4, raw, at_ns, self.reader)]


class Rdm6300Reader:
    """An RDM6300 (or any EM4100 reader with the same frame) on a serial port.

    ``url`` is anything pyserial opens (``/dev/serial0``, a pty, ``spy:///dev/ttyUSB0``).
    If the port fails or vanishes the reader keeps trying to reopen it, every ``reopen_s``,
    so unplugging a USB adapter is an outage, not a crash.
    """

    def __init__(
        self,
        url: str,
        on_reading: Callable[[Reading], None],
        *,
        name: str = "em4100",
        baudrate: int = 9600,
        parser: Em4100Parser | None = None,
        reopen_s: float = 1.0,
    ) -> None:
        self.url = url
        self.name = name
        self._baudrate = baudrate
        self._on_reading = on_reading
        self._parser = parser or Em4100Parser(reader=name)
        self._backoff = Backoff(reopen_s, reopen_s, jitter=0.0)
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"em4100-{name}", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def alive(self) -> bool:
        """False only when the reading thread has ended while the reader is open (a bug)."""
        return self._thread.is_alive() or self._stopping.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _deliver(self, readings: list[Reading]) -> None:
        for reading in readings:
            try:
                self._on_reading(reading)
            except Exception:
                log.exception("reader %s: on_reading failed", self.name)

    def _run(self) -> None:
        keep_reading(
            self._open,
            self._pump,
            self._close_port,
            stop=self._stopping,
            backoff=self._backoff,
            on_lost=self._lost,
            errors=(serial.SerialException, OSError, ValueError),
        )

    def _open(self) -> serial.SerialBase:
        return serial.serial_for_url(self.url, baudrate=self._baudrate, timeout=0.01)

    def _pump(self, port: serial.SerialBase) -> None:
        self._connected.set()
        while not self._stopping.is_set():
            data = port.read(max(1, port.in_waiting))
            now = time.monotonic_ns()
            self._deliver(self._parser.feed(data, now) if data else self._parser.poll(now))

    def _close_port(self, port: serial.SerialBase) -> None:
        self._connected.clear()
        port.close()
        # A frame or a tag the port took with it ends now, not at the first byte after a reopen.
        self._deliver(self._parser.poll(time.monotonic_ns() + FRAME_TIMEOUT_NS))

    def _lost(self, error: Exception, opened: bool) -> None:
        if opened:
            log.warning("reader %s: port %s failed: %s", self.name, self.url, error)
        else:
            log.warning("reader %s: cannot open %s: %s", self.name, self.url, error)

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def __enter__(self) -> Rdm6300Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
