"""What card readers hand to the agent: a card, a key, a tag leaving, or a typed rejection.

Every reader (Wiegand pins, an RDM6300 on a serial port, a USB reader in keyboard mode)
produces these values and nothing else.  A reader never raises for bad input and never
guesses: a frame that fails its parity, checksum or length is a :class:`CardRejected`
with an enumerated reason, because a wrong card number that looks right is worse than no
number at all.  The raw bits or characters ride along so a field engineer can see what
the wire actually carried.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from protocol.errors import GatepostError


class ReaderKind(StrEnum):
    """The wire a reading came over; stable strings, they appear in events."""

    WIEGAND = "wiegand"
    EM4100 = "em4100"
    KEYBOARD = "keyboard"
    OSDP = "osdp"


class CardRejectReason(StrEnum):
    """Why a frame was not turned into a card.  Stable strings: they appear in events and logs."""

    PARITY = "parity"
    """A Wiegand parity bit (or a keypad byte's complement nibble) does not match."""
    CHECKSUM = "checksum"
    """An EM4100 frame's XOR checksum does not match its data."""
    LENGTH = "length"
    """A frame of a length no known format has."""
    TRUNCATED = "truncated"
    """A frame that started and then stopped: cut short by silence or by the next frame."""
    FORMAT = "format"
    """Characters that cannot be part of a frame (not hex digits, not digits)."""
    ALL_ZERO = "all_zero"
    """An all-zero id: what a reader sends with no card, or a shorted data line."""
    NOISE = "noise"
    """Pulses out of spec, both lines low at once, a stuck line, bytes outside any frame."""
    INSECURE = "insecure"
    """A read that arrived outside the secure channel the reader is configured to use."""


class ReaderUnavailableError(GatepostError, OSError):
    """A reader backend cannot run here (a missing optional package, no such device)."""


@dataclass(frozen=True, slots=True)
class CardRead:
    """A card (or tag) read and checked.

    ``card_id`` is the card number field for Wiegand formats with a facility code and
    the full 40-bit id for EM4100; ``raw`` is the frame as sent (bits as ``0``/``1`` for
    Wiegand, ten upper-case hex digits for EM4100, the typed characters for keyboards).
    ``bits`` is the frame length in bits, 0 where the wire does not say (keyboard mode).
    ``at_ns`` is the monotonic time of the frame's first edge or byte.
    """

    kind: ReaderKind
    card_id: int
    bits: int
    raw: str
    facility: int | None
    at_ns: int
    reader: str = ""

    @property
    def credential(self) -> str:
        """One string per card, unambiguous across readers, for allow-lists and events."""
        if self.kind is ReaderKind.EM4100:
            return f"em4100:{self.raw}"
        if self.kind is ReaderKind.OSDP:
            # A Wiegand format decoded from OSDP's raw bits is the same card as on a Wiegand reader.
            if self.facility is not None:
                return f"wiegand{self.bits}:{self.facility}:{self.card_id}"
            return f"osdp{self.bits}:{self.card_id}" if self.card_id else f"osdp:{self.raw}"
        if self.kind is ReaderKind.WIEGAND:
            facility = "" if self.facility is None else f"{self.facility}:"
            return f"wiegand{self.bits}:{facility}{self.card_id}"
        return f"{self.kind.value}:{self.raw}"


@dataclass(frozen=True, slots=True)
class KeyPress:
    """One key from a PIN pad that sends each key as its own 4- or 8-bit Wiegand frame."""

    key: str
    bits: int
    raw: str
    at_ns: int
    reader: str = ""
    kind: ReaderKind = ReaderKind.WIEGAND


@dataclass(frozen=True, slots=True)
class CardGone:
    """A tag that had been repeating went silent: it left the reader's field."""

    kind: ReaderKind
    card_id: int
    at_ns: int
    reader: str = ""


@dataclass(frozen=True, slots=True)
class CardRejected:
    """Input that was not a card, and why.  ``raw`` is what arrived, made printable."""

    kind: ReaderKind
    reason: CardRejectReason
    detail: str
    bits: int
    raw: str
    at_ns: int
    reader: str = ""


Reading = CardRead | KeyPress | CardGone | CardRejected
