"""On duty at this gate: staff and patrol credentials, staff PINs, the duty sheet (issue 18, gate side).

The contract is :mod:`protocol.duty`.  Three ways in, one desk:

- **a duty credential at any reader** that yields a card-list credential (serial card
  reader, Wiegand, EM4100, keyboard-mode, OSDP, a scanner whose code is in the card
  list).  The agent asks :meth:`DutyDesk.take` *before* the door's decision: the card
  list's ``duty:<credential>`` entry is looked up first, so a credential that is both a
  duty credential and a door card is treated as a duty credential and never opens.
  Validity and the daily window apply as for a card (``edge/credentials.py``'s
  :func:`~edge.credentials.check`, no zone: a patrol round crosses zones).  A staff
  credential checks its holder in here, or out if they are checked in here; a patrol
  credential records ``patrol.checkin`` at that reader.  The door, relay and barrier are
  never touched; the guard's lights, buzzer and the OSDP reader's LED show their own
  acknowledgement (:data:`ON_DUTY`, :data:`OFF_DUTY`, :data:`PATROL`).
- **a personal PIN on the guard screen** (:meth:`DutyDesk.pin`): matched against the
  sheet's scrypt hashes, with the guard PIN's per-source lockout (edge/guard/pin.py).
- **the duty sheet** (:mod:`edge.duty_sheet`): who is rostered now and next, shown on
  the screen, and ``rostered`` in every check event.

Every outcome is an event through the outbox (zero loss applies).  Who is checked in is
kept in :mod:`edge.duty_state`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.credentials import check as check_card
from edge.duty_sheet import SheetKeeper
from edge.duty_state import DutyState
from edge.feedback import LOOK_AT_IT, WRONG_TIME_OR_PLACE, Light, Pattern
from protocol.credentials import CardEntry
from protocol.duty import (
    DUTY_CHECK_IN,
    DUTY_CHECK_OUT,
    DUTY_REFUSED,
    PATROL_CHECKIN,
    DutyCheck,
    DutyMethod,
    DutyRefusal,
    DutyRefusalReason,
    DutyRole,
    DutySheet,
    PatrolCheck,
    SheetPin,
    duty_credential,
    parse_duty_unit,
)
from protocol.passes import UntrustedClockPolicy
from protocol.passes.decision import clock_error

if TYPE_CHECKING:
    from edge.guard.pin import PinCheck

log = logging.getLogger("gatepost.edge.duty")

ON_DUTY = Pattern(Light.GREEN, 0.6, beeps=3, beep_s=0.05)
"""Checked in: a short green and three quick chirps — not a grant's long green, so nobody walks on."""
OFF_DUTY = Pattern(Light.GREEN, 0.6, beeps=2, beep_s=0.3)
"""Checked out: a short green and two long-ish beeps."""
PATROL = Pattern(Light.GREEN, 0.6, beeps=3, beep_s=0.05)
"""A patrol station taken: as a check-in (the guard on the round hears that the station counted)."""

Record = Callable[[str, dict[str, Any], Any], Any]
"""``GateAgent.record(event_type, data, reading)``: returns once the event is durable."""


@dataclass(frozen=True, slots=True)
class DutyOutcome:
    """What a duty credential or PIN did: the event taken and the pattern shown."""

    event_type: str
    data: dict[str, Any]
    pattern: Pattern
    name: str = ""
    event_id: str | None = None

    @property
    def taken(self) -> bool:
        """Whether a check-in, check-out or patrol station was recorded (not a refusal)."""
        return self.event_type != DUTY_REFUSED


class DutyPinError(Exception):
    """A PIN check-in refused; ``code`` is a key of the guard screen's ``error`` section."""

    def __init__(
        self, code: str, status: int, *, seconds: float | None = None, event: str | None = None
    ) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.seconds = seconds
        self.event = event


class DutyDesk:
    """This gate's side of issue 18: the duty sheet, who is checked in, and each check."""

    def __init__(
        self,
        *,
        site: str,
        gate: str,
        state_path: Path,
        sheet_path: Path,
        record: Record,
        cards: Any,
        cards_lock: threading.Lock,
        timezone: tzinfo,
        untrusted_clock: UntrustedClockPolicy = UntrustedClockPolicy.GRANT_AND_FLAG,
        pin_attempts: int = 5,
        pin_lockout_s: float = 60.0,
        pin_lockout_max_s: float = 86400.0,
    ) -> None:
        self.site, self.gate = site, gate
        self.sheets = SheetKeeper(sheet_path, site=site, gate=gate)
        self.state = DutyState(state_path)
        self._record = record
        self._cards = cards
        self._cards_lock = cards_lock
        self._timezone = timezone
        self._untrusted_clock = untrusted_clock
        self._toggle = threading.Lock()  # a check-in and a check-out of one person never interleave
        # Imported here: edge.guard's package pulls in the web server, which a gate without
        # a screen never loads.
        from edge.guard.pin import PinGate

        self.pins = PinGate(
            None, attempts=pin_attempts, lockout_s=pin_lockout_s, max_lockout_s=pin_lockout_max_s
        )

    @property
    def sheet(self) -> DutySheet | None:
        return self.sheets.sheet

    def close(self) -> None:
        self.state.close()

    # -- the duty sheet --------------------------------------------------------------

    def subscriptions(self, topic: str) -> list[tuple[str, Callable[[str, bytes], None]]]:
        return [(topic, self.on_sheet)]

    def on_sheet(self, _topic: str, payload: bytes) -> None:
        """The link's network thread: keep a newer sheet; refuse garbage with its reason.  Never raises."""
        try:
            self.sheets.offer(payload)  # logs what became of it; garbage is a typed rejection there
        except Exception:  # the network thread must live; the reason is logged
            log.exception("duty sheet not handled")

    def current_sheet(self, now: datetime) -> DutySheet | None:
        """The held sheet while it is valid; ``None`` past its ``valid_until`` (the screen says "no roster")."""
        sheet = self.sheets.sheet
        return sheet if sheet is not None and now < sheet.valid_until else None

    def rostered(self, person: str, now: datetime) -> bool | None:
        """Whether ``person`` is on shift here at ``now``; ``None`` without a current sheet."""
        sheet = self.current_sheet(now)
        if sheet is None:
            return None
        return any(shift.person == person for shift in sheet.on_shift(now))

    # -- a duty credential at a reader ---------------------------------------------------

    def entry_for(self, credential: str) -> CardEntry | None:
        """The card list's ``duty:<credential>`` entry, or ``None``: one primary-key probe."""
        if self._cards is None or credential.startswith("plate:"):
            return None
        with self._cards_lock:
            return self._cards.lookup(duty_credential(credential))

    def take(self, entry: CardEntry, *, reader: str, reading: Any) -> DutyOutcome:
        """Record what ``entry`` (a duty entry, found by :meth:`entry_for`) does at ``reader``, now."""
        parsed = parse_duty_unit(entry.unit)
        if parsed is None:
            log.warning(
                "duty entry %s has unit %r: not <role>:<person id>", entry.credential, entry.unit[:60]
            )
            refusal = DutyRefusal(
                reason=DutyRefusalReason.BAD_UNIT, reader=reader, detail=f"unit {entry.unit[:80]!r}"
            )
            return self._refuse(refusal, LOOK_AT_IT, reading)
        role, person = parsed
        result = check_card(
            entry,
            reading.wall,
            reading.trusted,
            self._timezone,
            zone=None,
            untrusted_clock=self._untrusted_clock,
            time_bounded=clock_error(reading) is not None,  # as edge/decision.py judges a card
        )
        if not result.granted:
            refusal = DutyRefusal(
                reason=DutyRefusalReason.NOT_VALID_NOW,
                person=person,
                reader=reader,
                detail=f"{result.reason.value} {result.detail}".strip(),
            )
            return self._refuse(refusal, WRONG_TIME_OR_PLACE, reading, name=entry.holder)
        name = entry.holder[:200]
        if role is DutyRole.PATROL:
            data = PatrolCheck(person=person, name=name, reader=reader[:64]).model_dump(mode="json")
            event = self._record(PATROL_CHECKIN, data, reading)
            log.info("patrol station %s/%s: %s", self.gate, reader, person)
            return DutyOutcome(PATROL_CHECKIN, data, PATROL, name, _id(event))
        return self._toggle_duty(person, name, DutyMethod.CREDENTIAL, reader[:64], reading)

    # -- a personal PIN on the guard screen ----------------------------------------------

    def pin(self, pin: object, address: str, reading: Any, *, person: object = None) -> DutyOutcome:
        """Check in or out by personal PIN; :class:`DutyPinError` says why not (and its event is taken).

        ``person`` (optional, picked from the sheet's names on the screen) limits the match
        to that person's hash: one scrypt instead of one per PIN on the sheet.
        """
        from edge.guard.pin import PinFormatError, PinOutcome, verify_pin

        sheet = self.current_sheet(reading.wall) or self.sheets.sheet
        if sheet is None or not sheet.pins:
            self._refuse(
                DutyRefusal(reason=DutyRefusalReason.NO_SHEET, detail="no duty sheet"), None, reading
            )
            raise DutyPinError("no_sheet", 409, event=DUTY_REFUSED)
        found: list[SheetPin] = []
        candidates = _likely_first(sheet, reading.wall)
        if isinstance(person, str) and person:
            candidates = [entry for entry in candidates if entry.person == person]

        def matches(candidate: str) -> bool:
            for entry in candidates:
                try:
                    if verify_pin(candidate, entry.pin_hash):
                        found.append(entry)
                        return True
                except PinFormatError:
                    continue  # one damaged hash must not hide everyone else's
            return False

        check = self.pins.check_with(pin, address, matches)
        if check.outcome is PinOutcome.OK:
            entry = found[0]
            return self._toggle_duty(entry.person, entry.name, DutyMethod.PIN, None, reading)
        if check.outcome is PinOutcome.TOO_SHORT:
            raise DutyPinError("duty_pin_too_short", 400)
        return self._pin_refused(check, reading)

    def _pin_refused(self, check: PinCheck, reading: Any) -> DutyOutcome:
        from edge.guard.pin import PinOutcome

        detail = f"{check.failures} in a row from {check.source.value} {check.address}"[:300]
        if check.outcome is PinOutcome.WRONG or check.lockout_started:
            self._refuse(DutyRefusal(reason=DutyRefusalReason.WRONG_PIN, detail=detail), None, reading)
        if check.outcome is PinOutcome.LOCKED:
            if check.lockout_started:  # once per pause: the waits that follow are not events
                refusal = DutyRefusal(
                    reason=DutyRefusalReason.PIN_LOCKOUT,
                    detail=f"{detail}; paused {check.locked_for_s:.0f} s",
                )
                self._refuse(refusal, None, reading)
            raise DutyPinError("pin_locked", 429, seconds=check.locked_for_s, event=DUTY_REFUSED)
        raise DutyPinError("duty_pin_wrong", 403, event=DUTY_REFUSED)

    # -- shared ----------------------------------------------------------------------

    def _toggle_duty(
        self, person: str, name: str, method: DutyMethod, reader: str | None, reading: Any
    ) -> DutyOutcome:
        with self._toggle:
            held = self.state.get(person)
            rostered = self.rostered(person, reading.wall)
            if held is None:
                check = DutyCheck(person=person, name=name, method=method, reader=reader, rostered=rostered)
                data = check.model_dump(mode="json")
                event = self._record(DUTY_CHECK_IN, data, reading)
                self.state.check_in(person, name, reading.wall)  # after the event is durable: see duty_state
                outcome = DutyOutcome(DUTY_CHECK_IN, data, ON_DUTY, name, _id(event))
            else:
                on_duty_s = max(0.0, (reading.wall - held.since).total_seconds())
                check = DutyCheck(
                    person=person,
                    name=name or held.name,
                    method=method,
                    reader=reader,
                    rostered=rostered,
                    on_duty_s=round(on_duty_s, 1),
                )
                data = check.model_dump(mode="json")
                event = self._record(DUTY_CHECK_OUT, data, reading)
                self.state.check_out(person)
                outcome = DutyOutcome(DUTY_CHECK_OUT, data, OFF_DUTY, name or held.name, _id(event))
        log.info("%s %s by %s%s", outcome.event_type, person, method.value, f" at {reader}" if reader else "")
        return outcome

    def _refuse(
        self, refusal: DutyRefusal, pattern: Pattern | None, reading: Any, *, name: str = ""
    ) -> DutyOutcome:
        data = refusal.model_dump(mode="json")
        log.warning("duty refused: %s %s", refusal.reason.value, refusal.detail)
        event = self._record(DUTY_REFUSED, data, reading)
        return DutyOutcome(DUTY_REFUSED, data, pattern or WRONG_TIME_OR_PLACE, name, _id(event))

    # -- what the guard screen shows ---------------------------------------------------------

    def panel(self, now: datetime) -> dict[str, Any]:
        """The guard screen's "On duty" panel: now (with who is checked in), next, and the roster's state."""
        held = {c.person: c for c in self.state.all()}
        sheet = self.current_sheet(now)
        stale = sheet is None and self.sheets.sheet is not None

        def shift_view(shift: Any) -> dict[str, Any]:
            checked = held.get(shift.person)
            return {
                "person": shift.person,
                "name": shift.name,
                "team": shift.team,
                "start": shift.start.isoformat(),
                "end": shift.end.isoformat(),
                "checked_in": checked is not None,
                "since": checked.since.isoformat() if checked is not None else None,
            }

        now_shifts = [shift_view(s) for s in sheet.on_shift(now)] if sheet is not None else []
        rostered_now = {s["person"] for s in now_shifts}
        return {
            "roster": "current" if sheet is not None else ("stale" if stale else "none"),
            "issued_at": sheet.issued_at.isoformat() if sheet is not None else None,
            "valid_until": sheet.valid_until.isoformat() if sheet is not None else None,
            "now": now_shifts,
            "next": [shift_view(s) for s in sheet.next_shifts(now)] if sheet is not None else [],
            "checked_in": [
                {
                    "person": c.person,
                    "name": c.name,
                    "since": c.since.isoformat(),
                    "rostered": c.person in rostered_now,
                }
                for c in held.values()
            ],
            "pin_check_in": sheet is not None and bool(sheet.pins),
            "people": sorted(
                ({"person": p.person, "name": p.name} for p in (sheet.pins if sheet is not None else [])),
                key=lambda p: (p["name"], p["person"]),
            ),
            "min_pin_digits": 6,  # edge/guard/pin.py MIN_PIN_DIGITS: the screen's hint only
        }


def _likely_first(sheet: DutySheet, now: datetime) -> list[SheetPin]:
    """The sheet's PINs, people on shift now first, then the next ones, then the rest.

    Each scrypt check costs tens of milliseconds on a Pi, so a right PIN of someone about
    to start is found after a few hashes rather than after the whole sheet's.
    """
    order: dict[str, int] = {}
    for rank, shift in enumerate([*sheet.on_shift(now), *sheet.next_shifts(now, limit=50)]):
        order.setdefault(shift.person, rank)
    return sorted(sheet.pins, key=lambda p: order.get(p.person, len(order)))


def _id(event: Any) -> str | None:
    return getattr(event, "id", None)
