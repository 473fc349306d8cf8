"""Message schemas: the event envelope, acknowledgements, commands, responses and status.

Every message is a JSON object with ``"v": 1``.  Models are strict (unknown keys are an
error, types are not coerced) because a gate must never act on a message it only half
understood.  ``decode_*`` functions turn raw MQTT payload bytes into a model or raise
:class:`~protocol.errors.ProtocolError` with an enumerated reason; they never raise
anything else, whatever the bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from protocol.errors import ProtocolError, RejectReason
from protocol.topics import NAME_PATTERN

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
"""Largest payload any side accepts; the broker's ``message_size_limit`` matches it."""

MAX_ACK_RANGES = 4096


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("time must carry a UTC offset")
    return value.astimezone(UTC)


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
"""A site or gate name, checked by pydantic-core's own regex engine (no Python call per field)."""
UtcTime = Annotated[datetime, AfterValidator(_aware)]
Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
EventType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", max_length=64)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    v: Literal[1] = PROTOCOL_VERSION


class Event(_Message):
    """One thing that happened at a gate, as recorded in its outbox.

    ``id`` is the event's identity everywhere: the console stores each id once however
    often the gate resends it.  ``seq`` counts the gate's events from 1 without gaps and
    survives restarts, so the console can prove nothing is missing; ``boot`` tells which
    run of the agent took the event.  ``clock_trusted`` is false while the gate's wall
    clock has not been synchronised (a Raspberry Pi has no real-time clock) or after it
    was seen to go backwards: such a ``time`` is the gate's best guess, not evidence.
    """

    id: Hex32
    site: Name
    gate: Name
    boot: Hex32
    seq: int = Field(ge=1)
    time: UtcTime
    clock_trusted: bool
    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)


class Ack(_Message):
    """The console's word that it has committed these sequence numbers of one gate.

    Only this, not the broker's PUBACK, lets a gate delete events from its outbox.
    Ranges are inclusive ``[first, last]`` pairs so that a batch of thousands stays small.
    """

    boot: Hex32 | None = None
    seqs: list[tuple[int, int]] = Field(max_length=MAX_ACK_RANGES)

    def iter_ranges(self) -> Iterator[tuple[int, int]]:
        for first, last in self.seqs:
            if 1 <= first <= last:
                yield first, last


class Command(_Message):
    """A request from the console to one gate.  ``id`` correlates the response.

    A command past ``expires_at`` is refused, so a command queued in the broker during an
    outage cannot act long after the operator gave it; gates also ignore retained
    commands, which would otherwise replay on every reconnect.
    """

    id: Hex32
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    args: dict[str, Any] = Field(default_factory=dict)
    issued_at: UtcTime
    expires_at: UtcTime
    operator: Annotated[str, Field(max_length=64)] | None = None


class CommandResponse(_Message):
    id: Hex32
    site: Name
    gate: Name
    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)
    error: Annotated[str, Field(max_length=500)] | None = None
    time: UtcTime


class GateState(StrEnum):
    ONLINE = "online"
    DEGRADED = "degraded"
    STOPPED = "stopped"
    OFFLINE = "offline"


class GateStatus(_Message):
    """Retained availability of a gate: ``online`` while connected, ``stopped`` after a
    clean shutdown, ``offline`` when the broker published its last will.  ``degraded``
    is ``online`` with a disk that refuses the outbox's writes: the gate still decides
    and sends its events, holding them in memory (``held``; ``outbox_error`` says why).
    Added to v1 after its first release: a console must be upgraded before its gates.

    An ``offline`` will's ``time`` is when the lost connection was being made (the gate
    writes a will before each connect): with ``boot`` it names the outage, so a console
    can tell a new one from the broker re-sending the retained will of an old one."""

    state: GateState
    site: Name
    gate: Name
    boot: Hex32
    time: UtcTime | None = None
    version: Annotated[str, Field(max_length=32)] = ""
    backlog: int | None = Field(default=None, ge=0)
    clock_trusted: bool | None = None
    trust_version: int | None = Field(default=None, ge=0)
    revocation_version: int | None = Field(default=None, ge=0)
    revocation_stale: bool | None = None
    """True while the gate's revocation list is older than its limit (or missing)."""
    revocation_issued_at: UtcTime | None = None
    """When the office signed the list the gate holds: its age is what the operator watches."""
    cards_version: int | None = Field(default=None, ge=0)
    cards_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    cards_count: int | None = Field(default=None, ge=0)
    """The door-card list the gate holds, so the console can see which gates lag behind."""
    held: int | None = Field(default=None, ge=0)
    """Events held in memory because the outbox's disk refused them (``degraded``)."""
    outbox_error: Annotated[str, Field(max_length=200)] | None = None
    """The disk's refusal, e.g. ``OperationalError: database or disk is full``."""
    cert_not_after: UtcTime | None = None
    """When the gate's TLS client certificate expires (protocol v1, optional: absent from
    gates that log in with a password, and ``null`` in a will).  The console raises
    ``tls.cert_expiring`` 30 days ahead, because an expired certificate is refused by the
    broker and the gate then reaches nobody."""


class GateHealth(_Message):
    """A gate's vital signs, retained on its ``health`` topic: sent every minute and on a change.

    What the engineer on call looks at before driving out: is the card filling up, is
    the backlog growing, is the clock trusted, is the outbox degraded.  ``None`` is "not
    known on this platform" (no ``/proc/meminfo``, say), never zero.
    """

    site: Name
    gate: Name
    boot: Hex32
    time: UtcTime
    version: Annotated[str, Field(max_length=32)] = ""
    state: GateState
    load_1m: float | None = Field(default=None, ge=0)
    memory_available_bytes: int | None = Field(default=None, ge=0)
    memory_total_bytes: int | None = Field(default=None, ge=0)
    disk_free_bytes: int | None = Field(default=None, ge=0)
    """Free space on the outbox's filesystem, for the gate's own user."""
    disk_total_bytes: int | None = Field(default=None, ge=0)
    backlog: int = Field(ge=0)
    """Events taken and not yet acknowledged by the console (held ones included)."""
    oldest_unacked_s: float | None = Field(default=None, ge=0)
    resends: int = Field(ge=0)
    clock_trusted: bool
    degraded: bool
    held: int = Field(default=0, ge=0)
    outbox_error: Annotated[str, Field(max_length=200)] | None = None
    readers: dict[Annotated[str, Field(max_length=32)], Annotated[str, Field(max_length=32)]] = Field(
        default_factory=dict, max_length=64
    )


class ConsoleStatus(_Message):
    """Retained availability of the console, so gates and operators can tell whether the
    store is taking events (Sparkplug's "primary host" idea)."""

    state: GateState
    name: Annotated[str, Field(max_length=64)]
    time: UtcTime | None = None


_M = TypeVar("_M", bound=_Message)


def _classify(exc: ValidationError, raw: bytes) -> ProtocolError:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0] if errors else {"loc": (), "msg": "invalid", "type": ""}
    kind = first.get("type", "")
    if kind in ("json_invalid", "json_type"):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return ProtocolError(RejectReason.NOT_UTF8, "payload is not UTF-8")
        return ProtocolError(RejectReason.NOT_JSON, "payload is not JSON")
    if kind == "model_type" or (kind == "model_attributes_type"):
        return ProtocolError(RejectReason.NOT_OBJECT, "payload is not a JSON object")
    loc = ".".join(str(part) for part in first.get("loc", ())) or "<root>"
    if loc == "v":
        return ProtocolError(
            RejectReason.BAD_VERSION, f"unsupported protocol version (want {PROTOCOL_VERSION})"
        )
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ProtocolError(RejectReason.SCHEMA, f"{loc}: {first.get('msg', 'invalid')}{more}")


def _decode(model: type[_M], raw: bytes | bytearray | memoryview | str) -> _M:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    raw = bytes(raw)
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(RejectReason.TOO_LARGE, f"{len(raw)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _classify(exc, raw) from None
    except (RecursionError, ValueError) as exc:  # pathological nesting and the like
        raise ProtocolError(
            RejectReason.NOT_JSON, f"payload could not be parsed: {type(exc).__name__}"
        ) from None


def decode_event(raw: bytes | str) -> Event:
    return _decode(Event, raw)


def decode_ack(raw: bytes | str) -> Ack:
    return _decode(Ack, raw)


def decode_command(raw: bytes | str) -> Command:
    return _decode(Command, raw)


def decode_response(raw: bytes | str) -> CommandResponse:
    return _decode(CommandResponse, raw)


def decode_status(raw: bytes | str) -> GateStatus:
    return _decode(GateStatus, raw)


def decode_health(raw: bytes | str) -> GateHealth:
    return _decode(GateHealth, raw)


def decode_console_status(raw: bytes | str) -> ConsoleStatus:
    return _decode(ConsoleStatus, raw)


def encode(message: _Message) -> bytes:
    """Serialise any protocol message to its wire form (compact UTF-8 JSON)."""
    return message.model_dump_json(exclude_none=False).encode("utf-8")


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Collapse sequence numbers into sorted inclusive ranges: ``[1,2,3,7] -> [(1,3),(7,7)]``."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def utcnow() -> datetime:
    return datetime.now(UTC)


def dumps_compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
