"""The signed pass: its fields and its compact binary layout (format version 1).

A pass must fit a QR code that a cheap scanner reads at a glance, and the 64-byte
Ed25519 signature already takes half of the budget, so the layout is packed by hand:
unsigned LEB128 varints, times as minutes since :data:`EPOCH`, the validity window as a
start plus a duration, zones as a bitmask, a 16-byte photo digest.  Layout::

    version      1 byte   (= 1, signed like everything else, so it cannot be downgraded)
    flags        1 byte   bits 0-2 role, 3 dynamic, 4 photo, 5 daily window, 6-7 zero
    kid          varint   which signing key (the trust bundle maps it to a public key)
    site_id      varint
    serial       varint   the holder's credential; re-issuing keeps it
    generation   varint   bumped on every re-issue; revocation can cut older ones
    valid_from   varint   minutes since EPOCH
    duration     varint   minutes, >= 1
    zones        varint   bitmask, bit n = zone n, never 0
    window       3 bytes  start_minute * 1440 + end_minute       (if flag 5)
    holder       varint length + UTF-8
    unit         varint length + UTF-8
    photo        16 bytes                                        (if flag 4)
    signature    64 bytes Ed25519 over SIGNING_CONTEXT + everything above

Decoding is strict (canonical varints, reserved bits zero, exact length) so that one
pass has exactly one byte string; the signature makes any change detectable anyway.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from protocol.passes.errors import PassError, PassRejectReason

FORMAT_VERSION = 1
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
"""Minute zero of every time in a pass; earlier times cannot be encoded."""
SIGNATURE_BYTES = 64
PHOTO_DIGEST_BYTES = 16
MAX_TEXT_BYTES = 64
"""Longest holder or unit, in UTF-8 bytes: room for a long transliterated name, not for a payload."""
MAX_ZONES = 64
MAX_KID = 0xFFFF
MAX_SERIAL = (1 << 63) - 1
"""Fits a signed 64-bit SQLite integer, so the console stores serials as they are."""
MAX_GENERATION = 0xFFFFFFFF
MAX_SITE_ID = 0xFFFFFFFF
MINUTES_PER_DAY = 1440
MAX_MINUTES = (1 << 31) - 1
"""About 4000 years after EPOCH, for both ends of the window: a bound for the parser, not a promise."""
MAX_PASS_BYTES = 320
"""Larger than any valid pass, so anything longer is rejected before it is parsed."""
SIGNING_CONTEXT = b"gatepost/pass/v1\x00"
"""Prepended before signing so a pass signature can never be replayed as another document's."""

_FLAG_ROLE = 0b0000_0111
_FLAG_DYNAMIC = 0b0000_1000
_FLAG_PHOTO = 0b0001_0000
_FLAG_WINDOW = 0b0010_0000
_FLAG_RESERVED = 0b1100_0000


class Role(IntEnum):
    """Who the holder is; values 4-7 are reserved and rejected by this version."""

    RESIDENT = 0
    SERVICE_WORKER = 1
    VISITOR = 2
    STAFF = 3


@dataclass(frozen=True, slots=True)
class DailyWindow:
    """Minutes of the local day during which the pass opens the gate, end exclusive.

    ``start > end`` wraps past midnight (a night shift 22:00-06:00).  Local means the
    site's time zone, which the trust bundle carries, because "06:00" on a printed
    pass means what the guard's wall clock says.
    """

    start: int
    end: int

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if not isinstance(value, int) or not 0 <= value < MINUTES_PER_DAY:
                raise PassError(
                    PassRejectReason.BAD_FIELD, f"daily window {name} must be a minute of the day"
                )
        if self.start == self.end:
            raise PassError(PassRejectReason.BAD_FIELD, "daily window is empty")

    @classmethod
    def from_hours(cls, start: str, end: str) -> DailyWindow:
        """``DailyWindow.from_hours("06:00", "09:00")``."""

        def minute(text: str) -> int:
            hours, _, minutes = text.partition(":")
            return int(hours) * 60 + int(minutes or 0)

        return cls(minute(start), minute(end))

    def contains(self, minute_of_day: int) -> bool:
        if self.start < self.end:
            return self.start <= minute_of_day < self.end
        return minute_of_day >= self.start or minute_of_day < self.end


def _minute_floor(value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise PassError(PassRejectReason.BAD_FIELD, "pass times must be timezone-aware datetimes")
    value = value.astimezone(UTC)
    return value.replace(second=0, microsecond=0)


def _minutes(value: datetime) -> int:
    return (value - EPOCH) // timedelta(minutes=1)


def photo_digest(image: bytes) -> bytes:
    """The photo reference a pass carries: SHA-256 truncated to 16 bytes.

    128 bits is still far beyond what anyone can search for a second image; the gate
    only uses it to check that the photo the console shows belongs to this pass.
    """
    return hashlib.sha256(image).digest()[:PHOTO_DIGEST_BYTES]


@dataclass(frozen=True, slots=True)
class Pass:
    """Everything a pass asserts.  Times are normalised to UTC, floored to the minute.

    Construction validates every field, so an issuer learns about an impossible pass
    (an empty zone set, a name too long to print) when building it, not at the gate.
    """

    kid: int
    site_id: int
    serial: int
    holder: str
    unit: str
    """Unit for residents (``3-2-501``), employer for service workers and staff."""
    role: Role
    zones: frozenset[int]
    valid_from: datetime
    valid_until: datetime
    generation: int = 0
    daily_window: DailyWindow | None = None
    photo_digest: bytes | None = None
    dynamic: bool = False
    version: int = field(default=FORMAT_VERSION)

    def __post_init__(self) -> None:
        _check_int("kid", self.kid, MAX_KID)
        _check_int("site_id", self.site_id, MAX_SITE_ID)
        _check_int("serial", self.serial, MAX_SERIAL)
        _check_int("generation", self.generation, MAX_GENERATION)
        if self.version != FORMAT_VERSION:
            raise PassError(PassRejectReason.UNSUPPORTED_VERSION, f"version {self.version}")
        try:
            object.__setattr__(self, "role", Role(self.role))
        except ValueError:
            raise PassError(PassRejectReason.BAD_FIELD, f"unknown role {self.role!r}") from None
        try:
            zones = frozenset(self.zones)
        except TypeError:
            zones = frozenset()
        if not zones or not all(isinstance(z, int) and 0 <= z < MAX_ZONES for z in zones):
            raise PassError(
                PassRejectReason.BAD_FIELD, f"zones must be a non-empty set of 0..{MAX_ZONES - 1}"
            )
        object.__setattr__(self, "zones", zones)
        for name in ("holder", "unit"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise PassError(PassRejectReason.BAD_FIELD, f"{name} must be text")
            try:
                encoded = value.encode("utf-8")
            except UnicodeEncodeError:
                raise PassError(PassRejectReason.BAD_FIELD, f"{name} is not encodable as UTF-8") from None
            if len(encoded) > MAX_TEXT_BYTES:
                raise PassError(PassRejectReason.BAD_FIELD, f"{name} longer than {MAX_TEXT_BYTES} bytes")
        start, end = _minute_floor(self.valid_from), _minute_floor(self.valid_until)
        if start < EPOCH or _minutes(end) > MAX_MINUTES:
            raise PassError(PassRejectReason.BAD_FIELD, f"validity outside {EPOCH:%Y-%m-%d} + 2**31 minutes")
        if end <= start:
            raise PassError(
                PassRejectReason.BAD_FIELD, "valid_until must be at least a minute after valid_from"
            )
        object.__setattr__(self, "valid_from", start)
        object.__setattr__(self, "valid_until", end)
        if self.photo_digest is not None and (
            not isinstance(self.photo_digest, bytes) or len(self.photo_digest) != PHOTO_DIGEST_BYTES
        ):
            raise PassError(PassRejectReason.BAD_FIELD, f"photo digest must be {PHOTO_DIGEST_BYTES} bytes")
        if self.daily_window is not None and not isinstance(self.daily_window, DailyWindow):
            raise PassError(PassRejectReason.BAD_FIELD, "daily_window must be a DailyWindow")
        object.__setattr__(self, "dynamic", bool(self.dynamic))

    @property
    def zone_mask(self) -> int:
        return sum(1 << z for z in self.zones)


def _check_int(name: str, value: object, limit: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise PassError(PassRejectReason.BAD_FIELD, f"{name} must be an integer in 0..{limit}")


def zones_from_mask(mask: int) -> frozenset[int]:
    return frozenset(i for i in range(MAX_ZONES) if mask >> i & 1)


# -- varints ----------------------------------------------------------------------------


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


class _Reader:
    """A cursor over untrusted bytes whose every read either succeeds or raises PassError."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, end: int) -> None:
        self.data = data
        self.pos = 0
        self.end = end

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > self.end:
            raise PassError(PassRejectReason.TRUNCATED, f"{what} runs past the end")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str, limit: int) -> int:
        value = shift = 0
        while True:
            if self.pos >= self.end:
                raise PassError(PassRejectReason.TRUNCATED, f"{what} runs past the end")
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if b == 0 and shift:
                    raise PassError(PassRejectReason.BAD_FIELD, f"{what} is not minimally encoded")
                break
            shift += 7
            if shift > 63:
                raise PassError(PassRejectReason.BAD_FIELD, f"{what} is too large")
        if value > limit:
            raise PassError(PassRejectReason.BAD_FIELD, f"{what} is out of range")
        return value

    def text(self, what: str) -> str:
        raw = self.take(self.varint(f"{what} length", MAX_TEXT_BYTES), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PassError(PassRejectReason.BAD_FIELD, f"{what} is not UTF-8") from None


# -- encode / decode --------------------------------------------------------------------


def encode_payload(p: Pass) -> bytes:
    """The signed part of a pass: every field, without the signature."""
    out = bytearray((p.version,))
    flags = int(p.role)
    flags |= _FLAG_DYNAMIC if p.dynamic else 0
    flags |= _FLAG_PHOTO if p.photo_digest is not None else 0
    flags |= _FLAG_WINDOW if p.daily_window is not None else 0
    out.append(flags)
    start = _minutes(p.valid_from)
    for value in (
        p.kid,
        p.site_id,
        p.serial,
        p.generation,
        start,
        _minutes(p.valid_until) - start,
        p.zone_mask,
    ):
        _put_varint(out, value)
    if p.daily_window is not None:
        out += (p.daily_window.start * MINUTES_PER_DAY + p.daily_window.end).to_bytes(3, "big")
    for text in (p.holder, p.unit):
        raw = text.encode("utf-8")
        _put_varint(out, len(raw))
        out += raw
    if p.photo_digest is not None:
        out += p.photo_digest
    return bytes(out)


def sign_pass(p: Pass, key: SigningKey) -> bytes:
    """The pass as bytes: payload followed by its 64-byte signature."""
    payload = encode_payload(p)
    return payload + key.sign(SIGNING_CONTEXT + payload).signature


@dataclass(frozen=True, slots=True)
class SignedPass:
    """A parsed pass whose signature has not been checked yet.

    Parsing and verifying are separate steps because the gate must first look the key id
    up in its trust bundle; nothing in ``pass_`` may be acted on before :meth:`verify`.
    """

    pass_: Pass
    payload: bytes
    signature: bytes

    def verify(self, key: VerifyKey) -> bool:
        try:
            key.verify(SIGNING_CONTEXT + self.payload, self.signature)
        except BadSignatureError:
            return False
        return True


def decode_pass(data: bytes) -> SignedPass:
    """Parse pass bytes, or raise :class:`PassError`; never anything else, whatever the bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise PassError(PassRejectReason.NOT_A_PASS, "pass data must be bytes")
    data = bytes(data)
    if len(data) > MAX_PASS_BYTES:
        raise PassError(PassRejectReason.TOO_LONG, f"{len(data)} bytes, at most {MAX_PASS_BYTES}")
    if not data:
        raise PassError(PassRejectReason.TRUNCATED, "empty")
    if data[0] != FORMAT_VERSION:
        raise PassError(PassRejectReason.UNSUPPORTED_VERSION, f"format version {data[0]}")
    if len(data) < 2 + SIGNATURE_BYTES:
        raise PassError(PassRejectReason.TRUNCATED, "shorter than a signature")
    end = len(data) - SIGNATURE_BYTES
    r = _Reader(data, end)
    r.pos = 1
    flags = r.byte("flags")
    if flags & _FLAG_RESERVED:
        raise PassError(PassRejectReason.BAD_FIELD, "reserved flag bits set")
    role = flags & _FLAG_ROLE
    if role > max(Role):
        raise PassError(PassRejectReason.BAD_FIELD, f"reserved role {role}")
    kid = r.varint("kid", MAX_KID)
    site_id = r.varint("site_id", MAX_SITE_ID)
    serial = r.varint("serial", MAX_SERIAL)
    generation = r.varint("generation", MAX_GENERATION)
    start = r.varint("valid_from", MAX_MINUTES)
    duration = r.varint("duration", MAX_MINUTES)
    if duration == 0 or start + duration > MAX_MINUTES:
        raise PassError(PassRejectReason.BAD_FIELD, "duration out of range")
    mask = r.varint("zones", (1 << MAX_ZONES) - 1)
    if mask == 0:
        raise PassError(PassRejectReason.BAD_FIELD, "no zones")
    window = None
    if flags & _FLAG_WINDOW:
        first, last = divmod(int.from_bytes(r.take(3, "daily window"), "big"), MINUTES_PER_DAY)
        window = DailyWindow(first, last)  # validates, raising PassError
    holder = r.text("holder")
    unit = r.text("unit")
    photo = r.take(PHOTO_DIGEST_BYTES, "photo digest") if flags & _FLAG_PHOTO else None
    if r.pos != end:
        raise PassError(PassRejectReason.TRAILING_BYTES, f"{end - r.pos} bytes after the last field")
    valid_from = EPOCH + timedelta(minutes=start)
    p = Pass(
        kid=kid,
        site_id=site_id,
        serial=serial,
        holder=holder,
        unit=unit,
        role=Role(role),
        zones=zones_from_mask(mask),
        valid_from=valid_from,
        valid_until=valid_from + timedelta(minutes=duration),
        generation=generation,
        daily_window=window,
        photo_digest=photo,
        dynamic=bool(flags & _FLAG_DYNAMIC),
    )
    return SignedPass(p, data[:end], data[end:])
