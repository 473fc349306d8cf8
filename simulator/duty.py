"""Staff and patrol cards and duty sheets, for tests, the demo and the bench (issue 18, gate side).

A simulated reader presents a staff or patrol card like any card (``VirtualWiegandReader.
send_card``, ``SimulatedOsdpReader.present_card``, ``VirtualRdm6300.present``); what makes
it a duty card is the card list's ``duty:<credential>`` entry, which these helpers write
the way the console does (``protocol.duty``), and the sheet the console would publish.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from protocol.credentials import CardEntry
from protocol.duty import DutyRole, DutySheet, SheetPin, SheetShift, duty_credential, duty_unit

TEST_PIN_N = 2**12
"""scrypt cost for test PINs: cheaper than a real one (2**14), same format."""


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


def load_cards(store_path: Path, registry_path: Path, entries: Iterable[CardEntry]) -> None:
    """Give a gate's card store ``entries`` as the console would: a snapshot of its registry."""
    from console.credentials import CardRegistry
    from edge.credentials import CardStore

    registry = CardRegistry(registry_path)
    registry.put(list(entries))
    store = CardStore(store_path)
    try:
        store.apply_snapshot_chunks(registry.snapshot())
    finally:
        store.close()


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
    pins: dict[str, tuple[str, str]] | None = None,
    *,
    now: datetime | None = None,
    issued_at: datetime | None = None,
    valid_h: float = 24.0,
    n: int = TEST_PIN_N,
) -> DutySheet:
    """A duty sheet as the console publishes it; ``pins`` is ``{person: (name, PIN)}``, hashed here."""
    from edge.guard.pin import hash_pin

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
            SheetPin(person=person, name=name, pin_hash=hash_pin(pin, n=n))
            for person, (name, pin) in (pins or {}).items()
        ],
    )
