"""On duty at the gate: staff and patrol credentials, the duty sheet, attendance and patrol events.

Issue 18 closes the loop from the console's roster to the gate and back.  Three pieces
cross the wire, and all three are defined here so that the gate and the console read
them the same way:

**Duty credentials** ride in the site's door-card list (``protocol.credentials``), as
the blacklist does: an entry whose credential is ``duty:`` + the credential a reader
produces (``duty:card:00123456``, ``duty:osdp:…``, ``duty:plate:…`` would parse too)
marks that credential as a person's *staff* or *patrol* credential.  The entry's
``holder`` is the person's name as printed on the roster and its ``unit`` is
``<role>:<person id>`` (:func:`duty_unit`, :func:`parse_duty_unit`).  Validity and the
daily window apply as for any card.  A duty credential never opens a door: presenting
it records a check-in, so a patrol guard's round cannot be used to let someone through,
and a staff card lost in the street opens nothing.  The card list reaches every gate
with its hash checked, so a gate decides on a duty credential offline, like any card.

**The duty sheet** (:class:`DutySheet`) is a retained JSON document per gate on
``gatepost/v1/<site>/<gate>/duty``, written by the console only (broker ACL): who is
rostered at this post from now to about a day ahead (the guard screen's "on duty now
and next"), and the personal PINs, as scrypt hashes in the guard PIN's own format
(``edge/guard/pin.py``), of the people rostered here, so staff can check in on the guard
screen without a card.  Only this gate may read its sheet.  A gate without a sheet, or
with a stale one, still records every check-in by credential; a PIN check-in needs a
sheet naming the person.

**Events**, in the gate's outbox like any other (so zero loss applies):
:data:`DUTY_CHECK_IN`, :data:`DUTY_CHECK_OUT`, :data:`DUTY_REFUSED` and
:data:`PATROL_CHECKIN`, with the payloads :class:`DutyCheck`, :class:`DutyRefusal` and
:class:`PatrolCheck` (``model_dump(mode="json")`` is the event's ``data``).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.messages import Name, UtcTime, _decode, _Message

DUTY_PREFIX: Final = "duty:"
"""A card-list entry ``duty:<credential>`` makes ``<credential>`` a duty credential."""

PERSON_ID_PATTERN: Final = r"^[A-Za-z0-9._-]{1,40}$"
"""A person's id, as the roster's people CSV allows it (console/roster/people.py)."""
_PERSON_ID = re.compile(PERSON_ID_PATTERN)

DUTY_CHECK_IN: Final = "duty.check_in"
"""A person came on duty at this gate (their post): :class:`DutyCheck`."""
DUTY_CHECK_OUT: Final = "duty.check_out"
"""A person went off duty at this gate: :class:`DutyCheck` (``on_duty_s``: how long since their check-in here)."""
DUTY_REFUSED: Final = "duty.refused"
"""A check-in or check-out that was not taken: :class:`DutyRefusal`."""
PATROL_CHECKIN: Final = "patrol.checkin"
"""A patrol guard presented their patrol credential at a station (a reader of this gate): :class:`PatrolCheck`.
The door stayed shut."""

EVENT_TYPES: Final = (DUTY_CHECK_IN, DUTY_CHECK_OUT, DUTY_REFUSED, PATROL_CHECKIN)

MAX_SHEET_SHIFTS: Final = 500
MAX_SHEET_PINS: Final = 500


class DutyRole(StrEnum):
    """What a duty credential does when presented."""

    STAFF = "staff"
    """Checks its holder in at this post, or out if they are checked in here."""
    PATROL = "patrol"
    """Records a patrol station check-in at the reader it was presented to."""


class DutyMethod(StrEnum):
    """How a person identified themselves for a check-in."""

    CREDENTIAL = "credential"
    """Their own staff or patrol credential at a reader (card, OSDP, Wiegand, scanner)."""
    PIN = "pin"
    """Their personal PIN on the guard screen."""
    GUARD = "guard"
    """The guard on the screen checked them in or out by hand (a forgotten card); the guard is named."""


class DutyRefusalReason(StrEnum):
    """Why a check-in or check-out was not taken.  Stable strings: events and labels use them."""

    NOT_VALID_NOW = "not_valid_now"
    """The duty credential is outside its validity or daily window."""
    WRONG_PIN = "wrong_pin"
    """No person on this gate's duty sheet has that PIN."""
    PIN_LOCKOUT = "pin_lockout"
    """Too many wrong PINs from this screen; PIN check-ins wait."""
    NO_SHEET = "no_sheet"
    """A PIN check-in, but the gate holds no duty sheet (the console has not sent one)."""
    BAD_UNIT = "bad_unit"
    """A ``duty:`` entry whose unit is not ``<role>:<person id>``: the list is wrong, not the person."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


PersonId = Annotated[str, Field(pattern=PERSON_ID_PATTERN)]
ShortText = Annotated[str, Field(max_length=200)]


class DutyCheck(_Model):
    """The data of a ``duty.check_in`` or ``duty.check_out`` event.  The gate is the post."""

    person: PersonId
    name: ShortText = ""
    method: DutyMethod
    reader: Annotated[str, Field(max_length=64)] | None = None
    """The reader (``[[osdp]]`` name, ``card``, ``scanner``) for a credential; ``None`` for a PIN."""
    rostered: bool | None = None
    """Whether the gate's duty sheet has this person on shift here now; ``None`` without a sheet."""
    on_duty_s: float | None = Field(default=None, ge=0)
    """For a check-out: seconds since this person's check-in at this gate, when the gate saw it."""
    guard: Annotated[str, Field(max_length=64)] | None = None
    """For :attr:`DutyMethod.GUARD`: the guard who did it."""


class DutyRefusal(_Model):
    """The data of a ``duty.refused`` event."""

    reason: DutyRefusalReason
    person: PersonId | None = None
    reader: Annotated[str, Field(max_length=64)] | None = None
    detail: Annotated[str, Field(max_length=300)] = ""


class PatrolCheck(_Model):
    """The data of a ``patrol.checkin`` event: the station is ``<gate>/<reader>`` of the event's gate."""

    person: PersonId
    name: ShortText = ""
    reader: Annotated[str, Field(max_length=64)]
    method: Literal[DutyMethod.CREDENTIAL] = DutyMethod.CREDENTIAL


class SheetShift(_Model):
    """One rostered shift at this post: ``start`` inclusive, ``end`` exclusive, UTC."""

    person: PersonId
    name: ShortText
    team: Annotated[str, Field(max_length=20)]
    start: UtcTime
    end: UtcTime
    trained: bool = False


class SheetPin(_Model):
    """A person's personal PIN at this post, as ``scrypt$n$r$p$salt$hash$digits`` (edge/guard/pin.py)."""

    person: PersonId
    name: ShortText
    pin_hash: Annotated[str, Field(max_length=200)]


class DutySheet(_Message):
    """Who stands at this post from now to about a day ahead, and their PINs.

    ``issued_at`` orders sheets: a gate keeps the newest it has seen and ignores an older
    one (a retained message from before a console restart).  ``valid_until`` is the end
    of the last hour the console rostered; past it the gate shows "no roster" rather
    than a stale name.
    """

    site: Name
    gate: Name
    issued_at: UtcTime
    valid_until: UtcTime
    shifts: list[SheetShift] = Field(default_factory=list, max_length=MAX_SHEET_SHIFTS)
    pins: list[SheetPin] = Field(default_factory=list, max_length=MAX_SHEET_PINS)

    def on_shift(self, at: datetime) -> list[SheetShift]:
        """The shifts under way at ``at``, earliest start first."""
        return sorted((s for s in self.shifts if s.start <= at < s.end), key=lambda s: (s.start, s.person))

    def next_shifts(self, at: datetime, *, limit: int = 5) -> list[SheetShift]:
        """The next shifts to begin after ``at``, earliest first."""
        later = sorted((s for s in self.shifts if s.start > at), key=lambda s: (s.start, s.person))
        return later[:limit]


def duty_credential(credential: str) -> str:
    """The card-list credential that marks ``credential`` as a duty credential."""
    return DUTY_PREFIX + credential


def duty_unit(role: DutyRole, person: str) -> str:
    """The ``unit`` of a duty entry: ``<role>:<person id>``."""
    if not _PERSON_ID.match(person):
        raise ValueError(f"person id {person!r} must be 1-40 letters, digits, '.', '_' or '-'")
    return f"{DutyRole(role).value}:{person}"


def parse_duty_unit(unit: str) -> tuple[DutyRole, str] | None:
    """``(role, person id)`` from a duty entry's unit, or ``None`` when it is not one."""
    role, sep, person = unit.partition(":")
    if not sep or not _PERSON_ID.match(person):
        return None
    try:
        return DutyRole(role), person
    except ValueError:
        return None


def decode_sheet(raw: bytes | str) -> DutySheet:
    """A duty sheet from its payload, or :class:`~protocol.errors.ProtocolError` with a typed reason."""
    return _decode(DutySheet, raw)


def encode_sheet(sheet: DutySheet) -> bytes:
    return sheet.model_dump_json().encode()
