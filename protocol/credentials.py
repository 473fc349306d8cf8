"""Door-card credential lists on the wire: a versioned snapshot, deltas, chunked, hash-checked.

A gate decides on a card by itself, so it needs the site's whole card list, and the
list must reach it intact or not at all.  The console numbers every change of the list
(``list_version``, strictly increasing) and sends either a *snapshot* (the whole list)
or a *delta* (upserts and removals from ``base_version`` to ``list_version``).  Both
carry the SHA-256 of the list they produce, so a gate that applied the wrong base, lost
a chunk or holds a corrupted store finds out before it commits anything.

The list hash is taken over the *canonical encoding*: one compact JSON array per card
(:meth:`CardEntry.row`), each ended by ``\\n``, sorted by credential (byte order), so
the console and every gate compute it the same way from their own copies.

A message (a *chunk*) is binary, because 100,000 cards (about 12 MB of rows) must cross
MQTT in messages of at most :data:`~protocol.messages.MAX_MESSAGE_BYTES`::

    magic        4 bytes  b"GPCL"
    format       u8       1
    kind         u8       1 snapshot, 2 delta
    list_version u64      the version this update produces
    base_version u64      the version a delta applies to (0 for a snapshot)
    index        u32      0-based chunk number
    total        u32      chunks in this update, >= 1
    count        u32      cards in the resulting list
    list_hash    32 bytes SHA-256 of the resulting list's canonical encoding
    body         zlib     rows (snapshot) or changes (delta), whole lines only
    digest       32 bytes SHA-256 of everything before it

All integers are big-endian.  The digest makes any damage to one chunk (header included)
a typed rejection on its own, and each chunk's body decompresses by itself, so chunks can
arrive in any order and be held as retained messages.  A delta body line is either a card
row (upsert) or a JSON string (the credential to remove).

Decoding never raises anything but :class:`CredentialListError`, whatever the bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

from protocol.errors import Rejection
from protocol.messages import MAX_MESSAGE_BYTES

MAGIC = b"GPCL"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">4sBBQQIII32s")
_DIGEST_BYTES = 32
MAX_BODY_BYTES = 1024 * 1024
"""Largest decompressed body of one chunk: a bound against zip bombs, far above what the encoder makes."""
MAX_CARDS = 1_000_000
MAX_CHUNKS = 10_000
MAX_VERSION = 2**63 - 1
EMPTY_LIST_HASH = hashlib.sha256(b"").hexdigest()

CREDENTIAL_PATTERN = r"^[a-z][a-z0-9]{0,15}:[0-9A-Za-z:._-]{1,64}$"
_CREDENTIAL = re.compile(CREDENTIAL_PATTERN)
_PHOTO = re.compile(r"^[0-9a-f]{32}$")
MAX_HOLDER = 200
MAX_UNIT = 64
MINUTES_PER_DAY = 1440
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: a bound for the parser, not a promise
_FIELDS = 9


class CredentialRejectReason(StrEnum):
    """Why a chunk or an update was refused.  Stable strings: they appear in logs and events."""

    MALFORMED = "malformed"
    """Not a chunk of this format, or a field or card row out of range."""
    BAD_VERSION = "bad_version"
    """A chunk format this gate does not know."""
    TOO_LARGE = "too_large"
    HASH_MISMATCH = "hash_mismatch"
    """A chunk's digest is wrong (damaged in transit or storage), or the list it produces is not the one announced."""
    CHUNK_MISSING = "chunk_missing"
    CHUNK_MISMATCH = "chunk_mismatch"
    """Chunks of different updates were mixed."""
    WRONG_BASE = "wrong_base"
    """A delta that applies to a version the gate does not hold: the gate must resync."""
    OLDER = "older"
    """An update not newer than what the gate holds; applying it would go back in time."""


class CredentialListError(Rejection[CredentialRejectReason], ValueError):
    """A credential-list message or update that must not be applied.

    ``reason`` is what the gate publishes; ``detail`` is for the operator and never
    contains the raw payload.
    """


def _fail(reason: CredentialRejectReason, detail: str) -> CredentialListError:
    return CredentialListError(reason, detail)


class UpdateKind(IntEnum):
    SNAPSHOT = 1
    DELTA = 2


def _epoch(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise _fail(CredentialRejectReason.MALFORMED, "card times must carry a UTC offset")
    return int(value.timestamp())


def _is_int(value: object) -> bool:
    return type(value) is int


@dataclass(frozen=True, slots=True)
class CardEntry:
    """One door card and what it may do: the unit of the credential list.

    Times are whole seconds in UTC; ``None`` means unbounded.  The daily window is in
    minutes from *local* midnight (the site's time zone), end exclusive, wrapping when
    ``window_start > window_end``, exactly like a pass's :class:`~protocol.passes.DailyWindow`.
    ``zones`` is a bitmask: bit *n* set opens gates of zone *n*.
    """

    credential: str
    holder: str = ""
    unit: str = ""
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    window_start: int | None = None
    window_end: int | None = None
    zones: int = 1
    photo_digest: str | None = None

    def row(self) -> str:
        """The canonical encoding: the same card always gives the same text (the hash depends on it)."""
        return json.dumps(
            [
                self.credential,
                self.holder,
                self.unit,
                _epoch(self.valid_from),
                _epoch(self.valid_until),
                self.window_start,
                self.window_end,
                self.zones,
                self.photo_digest,
            ],
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def line(self) -> bytes:
        """:meth:`row` as it appears in a chunk body and under the list hash, validated first."""
        text = self.row()
        entry_from_row(json.loads(text))  # the encoder refuses what every decoder would refuse
        return text.encode() + b"\n"


def check_row(row: Any) -> str:
    """The credential of a valid decoded JSON row, or :class:`CredentialListError` (malformed).

    Hand-written rather than a pydantic model because it runs once per card, 100,000
    times per snapshot, and builds nothing.
    """
    if type(row) is not list or len(row) != _FIELDS:
        raise _fail(CredentialRejectReason.MALFORMED, "card row must be a list of 9 fields")
    cred, holder, unit, vf, vu, ws, we, zones, photo = row
    if type(cred) is not str or not _CREDENTIAL.match(cred) or cred.endswith("\n"):
        raise _fail(CredentialRejectReason.MALFORMED, "card credential has the wrong form")
    if type(holder) is not str or len(holder) > MAX_HOLDER:
        raise _fail(CredentialRejectReason.MALFORMED, f"holder of {cred} is not a short string")
    if type(unit) is not str or len(unit) > MAX_UNIT:
        raise _fail(CredentialRejectReason.MALFORMED, f"unit of {cred} is not a short string")
    for value in (vf, vu):
        if value is not None and not (_is_int(value) and 0 <= value <= _MAX_TIME):
            raise _fail(CredentialRejectReason.MALFORMED, f"validity of {cred} is not a time")
    if vf is not None and vu is not None and vu <= vf:
        raise _fail(CredentialRejectReason.MALFORMED, f"validity of {cred} ends before it starts")
    if (ws is None) != (we is None):
        raise _fail(CredentialRejectReason.MALFORMED, f"daily window of {cred} needs both ends")
    if ws is not None and not (
        _is_int(ws) and _is_int(we) and 0 <= ws < MINUTES_PER_DAY and 0 <= we < MINUTES_PER_DAY and ws != we
    ):
        raise _fail(CredentialRejectReason.MALFORMED, f"daily window of {cred} is not two distinct minutes")
    if not (_is_int(zones) and 0 <= zones < 2**64):
        raise _fail(CredentialRejectReason.MALFORMED, f"zones of {cred} is not a 64-bit mask")
    if photo is not None and not (type(photo) is str and _PHOTO.match(photo) and not photo.endswith("\n")):
        raise _fail(CredentialRejectReason.MALFORMED, f"photo digest of {cred} is not 32 hex digits")
    return cred


def entry_from_row(row: Any) -> CardEntry:
    """A decoded JSON row to a :class:`CardEntry`, or :class:`CredentialListError` (malformed)."""
    check_row(row)
    cred, holder, unit, vf, vu, ws, we, zones, photo = row
    return CardEntry(
        cred,
        holder,
        unit,
        None if vf is None else datetime.fromtimestamp(vf, UTC),
        None if vu is None else datetime.fromtimestamp(vu, UTC),
        ws,
        we,
        zones,
        photo,
    )


def list_hash(lines: Iterable[bytes]) -> str:
    """SHA-256 over canonical lines (each ending in ``\\n``) already sorted by credential."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Chunk:
    """One decoded, digest-checked message of an update; ``body`` is already decompressed."""

    kind: UpdateKind
    list_version: int
    base_version: int
    index: int
    total: int
    count: int
    list_hash: str
    body: bytes

    @property
    def key(self) -> tuple[int, int, int, int, int, str]:
        """What every chunk of one update shares."""
        return (self.kind, self.list_version, self.base_version, self.total, self.count, self.list_hash)


def _encode_chunk(
    kind: UpdateKind,
    list_version: int,
    base_version: int,
    index: int,
    total: int,
    count: int,
    hash_hex: str,
    packed: bytes,
) -> bytes:
    head = _HEADER.pack(
        MAGIC, FORMAT_VERSION, kind, list_version, base_version, index, total, count, bytes.fromhex(hash_hex)
    )
    return head + packed + hashlib.sha256(head + packed).digest()


def decode_chunk(payload: bytes) -> Chunk:
    """Check and unpack one message; raise :class:`CredentialListError` for anything else."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise _fail(CredentialRejectReason.MALFORMED, "chunk must be bytes")
    data = bytes(payload)
    if len(data) > MAX_MESSAGE_BYTES:
        raise _fail(CredentialRejectReason.TOO_LARGE, f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    if len(data) < _HEADER.size + _DIGEST_BYTES or data[:4] != MAGIC:
        raise _fail(CredentialRejectReason.MALFORMED, "not a credential-list chunk")
    if data[4] != FORMAT_VERSION:
        raise _fail(CredentialRejectReason.BAD_VERSION, f"chunk format {data[4]}")
    if hashlib.sha256(data[:-_DIGEST_BYTES]).digest() != data[-_DIGEST_BYTES:]:
        raise _fail(CredentialRejectReason.HASH_MISMATCH, "chunk digest does not match its content")
    _, _, kind, version, base, index, total, count, hash_bytes = _HEADER.unpack_from(data)
    if kind not in (UpdateKind.SNAPSHOT, UpdateKind.DELTA):
        raise _fail(CredentialRejectReason.MALFORMED, f"unknown update kind {kind}")
    if not 1 <= version <= MAX_VERSION or base > MAX_VERSION:
        raise _fail(CredentialRejectReason.MALFORMED, "list version out of range")
    if kind == UpdateKind.SNAPSHOT and base != 0:
        raise _fail(CredentialRejectReason.MALFORMED, "a snapshot has no base version")
    if kind == UpdateKind.DELTA and base >= version:
        raise _fail(CredentialRejectReason.MALFORMED, "a delta must move the version forward")
    if not (1 <= total <= MAX_CHUNKS and index < total):
        raise _fail(CredentialRejectReason.MALFORMED, f"chunk {index} of {total}")
    if count > MAX_CARDS:
        raise _fail(CredentialRejectReason.TOO_LARGE, f"{count} cards > {MAX_CARDS}")
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(data[_HEADER.size : -_DIGEST_BYTES], MAX_BODY_BYTES)
    except zlib.error as exc:
        raise _fail(CredentialRejectReason.MALFORMED, "chunk body is not zlib data") from exc
    if inflater.unconsumed_tail:
        raise _fail(CredentialRejectReason.TOO_LARGE, f"chunk body inflates beyond {MAX_BODY_BYTES} bytes")
    if not inflater.eof or inflater.unused_data:
        raise _fail(CredentialRejectReason.MALFORMED, "chunk body is truncated or has trailing bytes")
    if body and not body.endswith(b"\n"):
        raise _fail(CredentialRejectReason.MALFORMED, "chunk body must hold whole lines")
    return Chunk(UpdateKind(kind), version, base, index, total, count, hash_bytes.hex(), body)


def _pack(lines: Sequence[bytes], budget: int) -> list[bytes]:
    """Split lines into zlib bodies of at most ``budget`` bytes, as few as possible.

    Compression ratios vary with the data, so the raw size per chunk adapts to the last
    ratio seen, and a body that comes out too big is re-cut smaller (never lost).
    """
    bodies: list[bytes] = []
    target = min(budget * 3, MAX_BODY_BYTES)
    i = 0
    while i < len(lines) or not bodies:
        j, size = i, 0
        while j < len(lines) and (j == i or size + len(lines[j]) <= target):
            size += len(lines[j])
            j += 1
        packed = zlib.compress(b"".join(lines[i:j]), 6)
        if len(packed) > budget:
            if j - i <= 1:
                raise _fail(CredentialRejectReason.TOO_LARGE, "one card row does not fit a message")
            target = max(1, size * budget // len(packed) * 9 // 10)
            continue
        bodies.append(packed)
        i = j
        if size:
            target = min(MAX_BODY_BYTES, max(target, size * budget // len(packed) * 95 // 100))
    return bodies


def _budget(max_message_bytes: int) -> int:
    budget = min(max_message_bytes, MAX_MESSAGE_BYTES) - _HEADER.size - _DIGEST_BYTES
    if budget < 1024:
        raise ValueError("max_message_bytes leaves no room for a body")
    return budget


def encode_snapshot_lines(
    list_version: int, lines: Sequence[bytes], *, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> list[bytes]:
    """Chunks of a snapshot from canonical lines already sorted by credential (the console's fast path)."""
    digest = list_hash(lines)
    bodies = _pack(lines, _budget(max_message_bytes))
    return [
        _encode_chunk(UpdateKind.SNAPSHOT, list_version, 0, i, len(bodies), len(lines), digest, body)
        for i, body in enumerate(bodies)
    ]


def encode_snapshot(
    list_version: int, entries: Iterable[CardEntry], *, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> list[bytes]:
    """Chunks of a snapshot holding ``entries`` (any order; duplicates are an error)."""
    by_cred = {}
    for entry in entries:
        if entry.credential in by_cred:
            raise ValueError(f"credential {entry.credential} appears twice")
        by_cred[entry.credential] = entry
    lines = [by_cred[c].line() for c in sorted(by_cred)]
    return encode_snapshot_lines(list_version, lines, max_message_bytes=max_message_bytes)


def encode_delta_lines(
    base_version: int,
    list_version: int,
    changes: Sequence[bytes],
    *,
    count: int,
    result_hash: str,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> list[bytes]:
    """Chunks of a delta from change lines (rows or JSON strings) sorted by credential.

    ``count`` and ``result_hash`` describe the list *after* the delta, which only the
    sender (holding the whole list) can compute.
    """
    if not 0 <= base_version < list_version:
        raise ValueError("a delta must move the version forward")
    bodies = _pack(changes, _budget(max_message_bytes))
    return [
        _encode_chunk(UpdateKind.DELTA, list_version, base_version, i, len(bodies), count, result_hash, body)
        for i, body in enumerate(bodies)
    ]


def removal_line(credential: str) -> bytes:
    return json.dumps(credential).encode() + b"\n"


def encode_delta(
    base_version: int,
    list_version: int,
    upserts: Iterable[CardEntry],
    removals: Iterable[str],
    *,
    count: int,
    result_hash: str,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> list[bytes]:
    """Chunks of a delta; see :func:`encode_delta_lines`."""
    changes: dict[str, bytes] = {}
    for entry in upserts:
        changes[entry.credential] = entry.line()
    for cred in removals:
        if cred in changes:
            raise ValueError(f"credential {cred} is both upserted and removed")
        changes[cred] = removal_line(cred)
    return encode_delta_lines(
        base_version,
        list_version,
        [changes[c] for c in sorted(changes)],
        count=count,
        result_hash=result_hash,
        max_message_bytes=max_message_bytes,
    )


def _json_lines(body: bytes) -> list[Any]:
    """All lines of a body with one ``json.loads`` call: rows never contain a raw newline."""
    if not body:
        return []
    try:
        values = json.loads(b"[" + body[:-1].replace(b"\n", b",") + b"]")
    except (ValueError, RecursionError) as exc:
        raise _fail(CredentialRejectReason.MALFORMED, "chunk body is not JSON lines") from exc
    if len(values) != body.count(b"\n"):
        raise _fail(CredentialRejectReason.MALFORMED, "chunk body lines do not match its values")
    return values


@dataclass(frozen=True, slots=True)
class DeltaChange:
    """One line of a delta: ``entry`` to upsert, or ``None`` to remove ``credential``."""

    credential: str
    entry: CardEntry | None
    line: bytes


@dataclass(slots=True)
class ListUpdate:
    """A complete, digest-checked update, ready for a store to verify its result and apply."""

    kind: UpdateKind
    list_version: int
    base_version: int
    count: int
    list_hash: str
    bodies: list[bytes]

    def lines(self) -> list[bytes]:
        """Canonical lines of the body, in order (split, not parsed)."""
        out: list[bytes] = []
        for body in self.bodies:
            if body:
                out.extend(body[:-1].split(b"\n"))
        return [line + b"\n" for line in out]

    def snapshot_rows(self) -> list[tuple[str, bytes]]:
        """(credential, canonical line) of a snapshot, validated, strictly sorted, hash-checked.

        Raises :class:`CredentialListError` (malformed or hash_mismatch).  The lines are
        returned as received, so a store keeps the very bytes the console hashed (the
        list hash proves they are the console's canonical rows) and can rehash them later
        without re-encoding.
        """
        if self.kind is not UpdateKind.SNAPSHOT:
            raise ValueError("not a snapshot")
        lines = self.lines()
        if len(lines) != self.count:
            raise _fail(CredentialRejectReason.HASH_MISMATCH, f"{len(lines)} cards, announced {self.count}")
        if list_hash(lines) != self.list_hash:
            raise _fail(CredentialRejectReason.HASH_MISMATCH, "snapshot does not match its list hash")
        values: list[Any] = []
        for body in self.bodies:
            values.extend(_json_lines(body))
        rows: list[tuple[str, bytes]] = []
        previous = ""
        for value, line in zip(values, lines, strict=True):
            cred = check_row(value)
            if cred <= previous and rows:
                raise _fail(CredentialRejectReason.MALFORMED, "snapshot rows are not strictly sorted")
            previous = cred
            rows.append((cred, line))
        return rows

    def delta_changes(self) -> list[DeltaChange]:
        """The changes of a delta, validated and strictly sorted by credential."""
        if self.kind is not UpdateKind.DELTA:
            raise ValueError("not a delta")
        lines = self.lines()
        values: list[Any] = []
        for body in self.bodies:
            values.extend(_json_lines(body))
        changes: list[DeltaChange] = []
        for value, line in zip(values, lines, strict=True):
            if type(value) is str:
                if not _CREDENTIAL.match(value) or value.endswith("\n"):
                    raise _fail(CredentialRejectReason.MALFORMED, "removal names no valid credential")
                change = DeltaChange(value, None, line)
            else:
                entry = entry_from_row(value)
                if line[:-1].decode() != entry.row():
                    raise _fail(
                        CredentialRejectReason.MALFORMED, f"row of {entry.credential} is not canonical"
                    )
                change = DeltaChange(entry.credential, entry, line)
            if changes and change.credential <= changes[-1].credential:
                raise _fail(CredentialRejectReason.MALFORMED, "delta changes are not strictly sorted")
            changes.append(change)
        return changes


@dataclass(slots=True)
class Assembler:
    """Collects the chunks of one update, in any order, until it is complete.

    Chunks of a *newer* update replace an unfinished older one (the console moved on);
    chunks of an older update than the one being collected are refused (``older``).
    """

    _key: tuple[int, int, int, int, int, str] | None = None
    _bodies: dict[int, bytes] = field(default_factory=dict)

    def add(self, chunk: Chunk | bytes) -> ListUpdate | None:
        """Take one chunk; return the update once every chunk of it has arrived."""
        if not isinstance(chunk, Chunk):
            chunk = decode_chunk(chunk)
        if self._key != chunk.key:
            if self._key is not None and chunk.list_version < self._key[1]:
                raise _fail(CredentialRejectReason.OLDER, f"chunk of version {chunk.list_version}")
            self._key, self._bodies = chunk.key, {}
        self._bodies[chunk.index] = chunk.body
        if len(self._bodies) < chunk.total:
            return None
        update = ListUpdate(
            chunk.kind,
            chunk.list_version,
            chunk.base_version,
            chunk.count,
            chunk.list_hash,
            [self._bodies[i] for i in range(chunk.total)],
        )
        self._key, self._bodies = None, {}
        return update

    @property
    def missing(self) -> list[int]:
        """Chunk indices still awaited for the update being collected."""
        if self._key is None:
            return []
        return [i for i in range(self._key[3]) if i not in self._bodies]


def assemble(payloads: Iterable[Chunk | bytes]) -> ListUpdate:
    """All chunks of exactly one update to the update; ``chunk_missing`` or ``chunk_mismatch`` otherwise."""
    chunks = [p if isinstance(p, Chunk) else decode_chunk(p) for p in payloads]
    if not chunks:
        raise _fail(CredentialRejectReason.CHUNK_MISSING, "no chunks")
    key = chunks[0].key
    if any(c.key != key for c in chunks):
        raise _fail(CredentialRejectReason.CHUNK_MISMATCH, "chunks of different updates")
    bodies = {c.index: c.body for c in chunks}
    missing = [i for i in range(chunks[0].total) if i not in bodies]
    if missing:
        raise _fail(
            CredentialRejectReason.CHUNK_MISSING, f"{len(missing)} of {chunks[0].total} chunks missing"
        )
    first = chunks[0]
    return ListUpdate(
        first.kind,
        first.list_version,
        first.base_version,
        first.count,
        first.list_hash,
        [bodies[i] for i in range(first.total)],
    )


def iter_entries(update: ListUpdate) -> Iterator[CardEntry]:
    """Every card of a snapshot, parsed (for tools and tests; stores keep lines)."""
    for body in update.bodies:
        for value in _json_lines(body):
            yield entry_from_row(value)
