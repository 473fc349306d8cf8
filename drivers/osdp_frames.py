"""OSDP packets as they cross the RS-485 wire: enough of the framing to tell who answered.

libosdp parses and answers the bus itself; it silently drops what it cannot use.  The
gate still wants to know two things libosdp does not say: *which* reader answered (a
reader that answers but never completes the secure channel has the wrong key, one that
does not answer at all has a cut cable), and how much of what arrived was no packet at
all (noise, a second controller, someone on the wire).  :class:`FrameScanner` watches the
bytes the control panel reads and sorts them into whole packets, checked by their CRC or
checksum, and junk.

Framing (IEC 60839-11-5 / SIA OSDP 2.2 §5.7, as libosdp's ``src/osdp_phy.c`` builds it):
an optional mark byte ``0xFF``, then ``SOM 0x53``, the address (bit 7 set in a reply),
a 16-bit little-endian length counting every byte from SOM to the end of the check, a
control byte whose bit 2 says a 16-bit CRC (else an 8-bit checksum) closes the packet and
bit 3 says a security block follows, then the body.  The CRC is CRC-16/ITU-T (polynomial
0x1021, not reflected) seeded with 0x1D0F, sent low byte first.
"""

from __future__ import annotations

from dataclasses import dataclass

SOM = 0x53
MARK = 0xFF
CTRL_CRC = 0x04
CTRL_SCB = 0x08
REPLY_BIT = 0x80
BROADCAST = 0x7F
HEADER = 5
"""SOM, address, two length bytes, control."""
MAX_PACKET = 1440
"""A packet longer than this is no packet: libosdp's own receive limit (OSDP_PACKET_BUF_SIZE)."""

REPLY_RAW = 0x50
"""osdp_RAW: a card read, raw bits."""
REPLY_KEYPAD = 0x53
REPLY_LSTATR = 0x48
"""osdp_LSTATR: local status (tamper and power)."""


def crc16(data: bytes, seed: int = 0x1D0F) -> int:
    crc = seed
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def checksum(data: bytes) -> int:
    return (-sum(data)) & 0xFF


@dataclass(frozen=True, slots=True)
class Packet:
    """One whole packet whose check held."""

    address: int
    """The reader's address, bit 7 cleared."""
    reply: bool
    secure: bool
    """A security block follows the control byte (the secure channel or its handshake)."""
    code: int
    """The command or reply code, or -1 where the security block hides it (never: it is in clear)."""
    body: bytes
    """Everything after the control byte (security block, code, data, MAC), without the check."""


def encode(address: int, code: int, data: bytes = b"", *, reply: bool = True, sequence: int = 0) -> bytes:
    """A plain (no secure channel) packet with a CRC: what a reader sends in clear."""
    ctrl = (sequence & 0x03) | CTRL_CRC
    length = HEADER + 1 + len(data) + 2
    head = bytes(
        [SOM, (address & 0x7F) | (REPLY_BIT if reply else 0), length & 0xFF, length >> 8, ctrl, code]
    )
    packet = head + data
    crc = crc16(packet)
    return packet + bytes([crc & 0xFF, crc >> 8])


class FrameScanner:
    """Bytes in, packets and a count of junk bytes out.  Pure: no port, no clock.

    A byte that cannot start a packet, and a would-be packet whose check fails, count as
    junk; the scanner then resynchronises on the next SOM, as a receiver on a noisy line must.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.junk = 0
        """Junk bytes since the caller last took them (:meth:`take_junk`)."""
        self.bad_checks = 0
        """Would-be packets whose CRC or checksum failed, since :meth:`take_junk`."""

    def feed(self, data: bytes) -> list[Packet]:
        self._buffer += data
        out: list[Packet] = []
        while self._buffer:
            start = self._buffer.find(SOM)
            if start < 0:
                self._skip(len(self._buffer))
                break
            if start:
                self._skip(start)
            if len(self._buffer) < HEADER:
                break
            length = self._buffer[2] | self._buffer[3] << 8
            ctrl = self._buffer[4]
            check = 2 if ctrl & CTRL_CRC else 1
            if length < HEADER + 1 + check or length > MAX_PACKET:
                self._skip(1)
                continue
            if len(self._buffer) < length:
                break
            packet = bytes(self._buffer[:length])
            if check == 2:
                ok = crc16(packet[:-2]) == packet[-2] | packet[-1] << 8
            else:
                ok = checksum(packet[:-1]) == packet[-1]
            if not ok:
                self.bad_checks += 1
                self._skip(1)
                continue
            del self._buffer[:length]
            body = packet[HEADER:-check]
            secure = bool(ctrl & CTRL_SCB)
            code = body[body[0]] if secure and body and 0 < body[0] < len(body) else body[0]
            out.append(Packet(packet[1] & 0x7F, bool(packet[1] & REPLY_BIT), secure, code, body))
        return out

    def _skip(self, count: int) -> None:
        # Mark bytes before a SOM are part of the framing, not junk.
        self.junk += sum(1 for byte in self._buffer[:count] if byte != MARK)
        del self._buffer[:count]

    def take_junk(self) -> tuple[int, int]:
        """Junk bytes and failed checks seen since the last call, and reset both."""
        junk, bad, self.junk, self.bad_checks = self.junk, self.bad_checks, 0, 0
        return junk, bad

    def reset(self) -> None:
        self._buffer.clear()
