"""The gate's decision: local, immediate, and one place for every kind of credential.

A signed pass (digits starting with the gatepost marker) is judged by its signature,
the site's trust bundle, the revocation list, its validity and time window, zones,
dynamic code and passback (``protocol.passes.decide``); any other credential — a card
from a Wiegand or EM4100 reader, a legacy pass code — by the allow-list.  Either way
the answer is a value with an enumerated reason, because the reason is what the guard
sees and what the console counts; it is never an exception.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from edge.credentials import CardStore
from edge.credentials import check as check_card
from protocol.passes import Flag, GatePolicy, GateState, Pass, Reason
from protocol.passes import decide as decide_pass
from protocol.passes.codec import MARKER
from protocol.passes.decision import ClockLike, Direction, UntrustedClockPolicy, clock_error


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: Reason
    flags: frozenset[Flag] = frozenset()
    holder: Pass | None = None
    detail: str = ""
    card_holder: str | None = None
    card_unit: str | None = None
    card_photo: str | None = None
    """The card's photo digest (hex), for the guard screen and the event."""
    vehicle: str | None = None
    """For a plate: ``resident``, ``visitor``, ``blacklisted`` or ``unknown`` (edge/plate_decisions.py)."""
    resembles: str | None = None
    """For a near miss: the registered plate (text) the one read is one character off."""
    duty: str | None = None
    """For a duty credential (edge/duty.py): the event it made (``duty.check_in``, ``patrol.checkin``,
    ``duty.refused``…).  ``granted`` is then always false: the door's answer, and it never opens."""

    def event_fields(self) -> dict[str, Any]:
        """What the access event says about the holder beyond granted/reason."""
        fields: dict[str, Any] = {}
        if self.flags:
            fields["flags"] = sorted(flag.value for flag in self.flags)
        if self.holder is not None:
            fields.update(
                serial=self.holder.serial,
                generation=self.holder.generation,
                holder=self.holder.holder,
                unit=self.holder.unit,
                role=self.holder.role.name.lower(),
                photo=self.holder.photo_digest.hex() if self.holder.photo_digest else None,
            )
        if self.card_holder:
            fields.update(holder=self.card_holder, unit=self.card_unit)
        if self.card_photo:
            fields["photo"] = self.card_photo
        if self.detail and not self.granted:
            fields["detail"] = self.detail
        if self.vehicle is not None:
            fields["vehicle"] = self.vehicle
        if self.resembles is not None:
            fields["resembles"] = self.resembles
        return fields


GRANT = Decision(True, Reason.GRANTED)
DENY_UNKNOWN = Decision(False, Reason.UNKNOWN)


class AllowList:
    """Credentials allowed in, held in a frozenset so a lookup costs the same for ten or a million."""

    def __init__(self, codes: frozenset[str]) -> None:
        self._codes = codes

    def __len__(self) -> int:
        return len(self._codes)

    def decide(self, code: str) -> Decision:
        return GRANT if code in self._codes else DENY_UNKNOWN

    def with_prefix(self, prefix: str) -> list[str]:
        """The allowed credentials starting with ``prefix`` (the plates a near miss is compared with)."""
        return sorted(code for code in self._codes if code.startswith(prefix))


@dataclass(frozen=True, slots=True)
class CardPolicy:
    """How the gate judges a card found in its credential list."""

    timezone: tzinfo
    zone: int | None = None
    untrusted_clock: UntrustedClockPolicy = UntrustedClockPolicy.GRANT_AND_FLAG


class GateDecider:
    """Signed passes by signature, cards by the synced credential list, plates by edge/plate_decisions.py,
    the rest by the allow-list."""

    def __init__(
        self,
        allow: AllowList,
        passes: GateState | None = None,
        cards: CardStore | None = None,
        card_policy: CardPolicy | None = None,
    ) -> None:
        self.allow = allow
        self.passes = passes
        self.cards = cards
        self.card_policy = card_policy or CardPolicy(UTC)
        self._cards_lock = threading.Lock()  # the store is used by every reader thread
        self.visitors: Any = None  # edge.visitors.VisitorBook, set by the guard screen when enabled
        self.vehicles: Any = None  # edge.plate_decisions.VehicleBook, set by the guard screen when enabled
        from edge.plate_decisions import PlateDecider  # imports this module: not at the top

        self.plates = PlateDecider(
            self.cards, self._cards_lock, self.card_policy, lambda: self.vehicles, allow=self.allow
        )

    @property
    def cards_lock(self) -> threading.Lock:
        """Held around every card-list lookup (the duty desk's too, edge/duty.py)."""
        return self._cards_lock

    def __len__(self) -> int:
        cards = self.cards.state.count if self.cards is not None else 0
        return len(self.allow) + cards

    def decide(self, credential: str, now: ClockLike, direction: Direction | None = None) -> Decision:
        if credential.startswith("plate:"):  # a vehicle lane: never the allow-list or a pass
            return self.plates.decide(credential, now, direction)
        if self.visitors is not None:
            # A visitor pass is a pass: it follows [passes] untrusted_clock, as signed passes do.
            policy = self.passes.policy if self.passes is not None else GatePolicy()
            visitor = self.visitors.decide(credential, now, direction, policy.untrusted_clock)
            if visitor is not None:
                return visitor
        if self.passes is not None and credential.startswith(MARKER):
            result = decide_pass(credential, now, self.passes, direction)
            return Decision(result.granted, result.reason, result.flags, result.pass_info, result.detail)
        if self.cards is not None:
            with self._cards_lock:
                entry = self.cards.lookup(credential)
            if entry is not None:
                policy = self.card_policy
                result = check_card(
                    entry,
                    now.wall,
                    now.trusted,
                    policy.timezone,
                    zone=policy.zone,
                    untrusted_clock=policy.untrusted_clock,
                    time_bounded=clock_error(now) is not None,
                )
                return Decision(
                    result.granted,
                    result.reason,
                    result.flags,
                    None,
                    result.detail,
                    entry.holder,
                    entry.unit,
                    entry.photo_digest,
                )
        return self.allow.decide(credential)
