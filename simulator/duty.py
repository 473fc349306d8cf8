"""Staff and patrol cards and duty sheets, for tests, the demo and the bench (issue 18, gate side).

A simulated reader presents a staff or patrol card like any card (``VirtualWiegandReader.
send_card``, ``SimulatedOsdpReader.present_card``, ``VirtualRdm6300.present``); what makes
it a duty card is the card list's ``duty:<credential>`` entry, which these helpers write
the way the console does (``protocol.duty``), and the sheet the console would publish.
Only ``protocol`` is imported: the simulator depends on neither the gate nor the console,
so PINs come in already hashed (``edge/guard/pin.py`` ``hash_pin``, done by the caller).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from protocol.credentials import CardEntry
from protocol.duty import DutyRole, DutySheet, SheetPin, SheetShift, duty_credential, duty_unit


def duty_card(
    role: DutyRole | str,
    credential: str,
    person: str,
    name: str = "",
    *,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    window: tuple[int, int] | None = None,
) -> CardEntry:
    """The card-list entry that makes ``credential`` (``wiegand26:13:5001``…) a staff or patrol card."""
    start, end = window if window is not None else (None, None)
    return CardEntry(
        duty_credential(credential),
        holder=name,
        unit=duty_unit(DutyRole(role), person),
        valid_from=valid_from,
        valid_until=valid_until,
        window_start=start,
        window_end=end,
    )


@dataclass(frozen=True, slots=True)
class Shift:
    """One shift for :func:`duty_sheet`: hours from ``now`` (negative: it began before)."""

    person: str
    name: str
    start_h: float
    hours: float
    team: str = "guard"


def duty_sheet(
    site: str,
    gate: str,
    shifts: Iterable[Shift],
    pin_hashes: dict[str, tuple[str, str]] | None = None,
    *,
    now: datetime | None = None,
    issued_at: datetime | None = None,
    valid_h: float = 24.0,
) -> DutySheet:
    """A duty sheet as the console publishes it; ``pin_hashes`` is ``{person: (name, scrypt hash)}``."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    return DutySheet(
        site=site,
        gate=gate,
        issued_at=issued_at or now,
        valid_until=now + timedelta(hours=valid_h),
        shifts=[
            SheetShift(
                person=s.person,
                name=s.name,
                team=s.team,
                start=now + timedelta(hours=s.start_h),
                end=now + timedelta(hours=s.start_h + s.hours),
            )
            for s in shifts
        ],
        pins=[
            SheetPin(person=person, name=name, pin_hash=pin_hash)
            for person, (name, pin_hash) in (pin_hashes or {}).items()
        ],
    )
