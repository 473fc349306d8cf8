"""Decisions on plates at a vehicle lane: residents, visitor vehicles, the blacklist, near misses.

A plate is not a secret: anyone can read it, and anyone can copy it onto another car.
And unlike a card, it is read by a camera, which can be wrong by one character in glare
or at night.  So a plate opens the arm only when it is *exactly* a plate the gate knows,
and a plate one character off a known one (a misread, or a hand-made copy) never opens:
it is refused as ``plate_near_miss``, naming the plate it resembles, and the guard
screen asks the guard, who sees the crop.

Where each list comes from:

- **resident vehicles** are card-list entries whose credential is a plate credential
  (``plate:BJ-A12345``, :mod:`protocol.plates`): the console publishes them with the
  cards, as snapshot and deltas, hash-checked (protocol/credentials.py), so holder, unit,
  validity, daily window and zones work exactly as for a card;
- the **blacklist** is card-list entries named ``deny:`` + the plate credential
  (``deny:plate:BJ-A12345``; the card list's credential pattern allows it): the same
  machinery, no new wire format, and the gate holds it offline like the rest.  The
  entry's ``holder`` is the reason for listing it, its ``valid_until`` when the listing
  lapses; a listed plate is refused as ``blacklisted`` whatever else it is, and the
  console raises the ``vehicle.blacklisted`` alarm from that event;
- **visitor vehicles** are registered by the guard at this gate (:class:`VehicleBook`,
  the pattern of :mod:`edge.visitors`), with an expiry; they pass in and out until it;
- plates in the gate's static ``[access] allow`` list count as residents (a gate without a
  card list, the demo, the bench): exact match only, like the rest.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge.credentials import check as check_card
from edge.decision import CardPolicy, Decision
from edge.visitors import FieldProblem, VisitorError, clean_text
from protocol.credentials import CardEntry
from protocol.passes import Flag, Reason
from protocol.passes.decision import ClockLike, clock_error
from protocol.plates import (
    CREDENTIAL_KIND,
    Plate,
    PlateError,
    differences,
    parse_plate,
    plate_from_credential,
)

log = logging.getLogger("gatepost.edge.plate_decisions")

PLATE_PREFIX = f"{CREDENTIAL_KIND}:"
BLOCK_PREFIX = "deny:"
"""A card-list entry ``deny:<credential>`` blacklists that credential (a plate, here)."""
KEEP_AFTER_EXPIRY = timedelta(days=1)
MIN_HOURS = 0.25
MAX_HOURS = 72.0
"""A visitor vehicle is registered for a quarter of an hour to three days: longer is a resident."""


class VehicleRole:
    """What the ``vehicle`` field of an ``access.scan`` says the plate was (the console counts by it)."""

    RESIDENT = "resident"
    VISITOR = "visitor"
    BLACKLISTED = "blacklisted"
    UNKNOWN = "unknown"


def is_plate_credential(credential: str) -> bool:
    return credential.startswith(PLATE_PREFIX)


def blocked(credential: str) -> str:
    """The card-list credential that blacklists ``credential``."""
    return BLOCK_PREFIX + credential


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- visitor vehicles ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VehicleRequest:
    """A guard's registration of a visitor vehicle, checked field by field."""

    plate: Plate
    unit: str
    note: str
    guard: str
    hours: float

    @classmethod
    def check(
        cls, *, plate: object, unit: object, note: object, guard: object, hours: object, default_hours: float
    ) -> VehicleRequest:
        """The checked request, or :class:`~edge.visitors.VisitorError` naming the first bad field."""
        return cls(
            plate=checked_plate(plate),
            unit=clean_text("unit", unit, 32),
            note=clean_text("note", note, 200) if note not in (None, "") else "",
            guard=clean_text("guard", guard, 64),
            hours=_hours(hours, default_hours),
        )


def checked_plate(value: object, field: str = "plate") -> Plate:
    """A typed plate as a :class:`Plate`, or a field error the screen translates."""
    if not isinstance(value, str):
        raise VisitorError(field, FieldProblem.NOT_TEXT, "must be text")
    try:
        return parse_plate(value)
    except PlateError as exc:
        if exc.reason.value == "empty":
            raise VisitorError(field, FieldProblem.REQUIRED, "required") from None
        raise VisitorError(field, FieldProblem.NOT_A_PLATE, exc.detail) from None


def _hours(value: object, default: float) -> float:
    if value in (None, ""):
        return min(max(default, MIN_HOURS), MAX_HOURS)
    try:
        hours = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise VisitorError("hours", FieldProblem.OUT_OF_RANGE, "not a number") from None
    if not MIN_HOURS <= hours <= MAX_HOURS:  # also refuses NaN
        raise VisitorError("hours", FieldProblem.OUT_OF_RANGE, f"{MIN_HOURS} to {MAX_HOURS} hours")
    return hours


@dataclass(frozen=True, slots=True)
class VisitorVehicle:
    plate: Plate
    unit: str
    note: str
    guard: str
    lane: str
    issued_at: datetime
    expires_at: datetime

    def event_data(self) -> dict[str, Any]:
        """The ``vehicle.registered`` payload."""
        return {
            "plate": self.plate.text,
            "credential": self.plate.credential,
            "unit": self.unit,
            "note": self.note,
            "guard": self.guard,
            "lane": self.lane,
            "expires": _iso(self.expires_at),
        }

    def entry(self) -> CardEntry:
        """As a card entry, so the card's clock rules (docs/clock.md) judge its expiry too."""
        return CardEntry(
            self.plate.credential, "", self.unit, self.issued_at, self.expires_at, zones=2**64 - 1
        )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS vehicles (
    credential TEXT PRIMARY KEY,
    plate TEXT NOT NULL,
    unit TEXT NOT NULL,
    note TEXT NOT NULL,
    guard TEXT NOT NULL,
    lane TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
) WITHOUT ROWID;
"""


class VehicleBook:
    """This gate's visitor vehicles in SQLite at ``path``; thread-safe (lanes and the screen share it).

    A plate registered again replaces its earlier registration (a visitor who comes back
    tomorrow is registered again); rows are deleted a day after they expire.
    """

    def __init__(self, path: str | Path, *, now: datetime | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.version = 0
        """Bumped by every change, so the near-miss index knows when to reread."""
        self._purge(now or datetime.now(UTC))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _purge(self, now: datetime) -> None:
        with self._lock:
            self._db.execute("DELETE FROM vehicles WHERE expires_at < ?", (_iso(now - KEEP_AFTER_EXPIRY),))
            self.version += 1

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM vehicles").fetchone()[0])

    def register(self, request: VehicleRequest, lane: str, now: datetime) -> VisitorVehicle:
        issued = now.astimezone(UTC).replace(microsecond=0)
        vehicle = VisitorVehicle(
            request.plate,
            request.unit,
            request.note,
            request.guard,
            lane,
            issued,
            issued + timedelta(hours=request.hours),
        )
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO vehicles (credential, plate, unit, note, guard, lane, issued_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    vehicle.plate.credential,
                    vehicle.plate.text,
                    vehicle.unit,
                    vehicle.note,
                    vehicle.guard,
                    lane,
                    _iso(issued),
                    _iso(vehicle.expires_at),
                ),
            )
            self.version += 1
        return vehicle

    def get(self, credential: str) -> VisitorVehicle | None:
        with self._lock:
            row = self._db.execute(
                "SELECT plate, unit, note, guard, lane, issued_at, expires_at FROM vehicles WHERE credential = ?",
                (credential,),
            ).fetchone()
        if row is None:
            return None
        plate, unit, note, guard, lane, issued, expires = row
        return VisitorVehicle(
            parse_plate(plate),
            unit,
            note,
            guard,
            lane,
            datetime.fromisoformat(issued),
            datetime.fromisoformat(expires),
        )

    def credentials(self, now: datetime) -> list[str]:
        """Plates registered and not yet expired at ``now`` (near misses are looked for among them)."""
        with self._lock:
            rows = self._db.execute("SELECT credential FROM vehicles WHERE expires_at > ?", (_iso(now),))
            return [r[0] for r in rows]


# -- near misses ------------------------------------------------------------------------------


class PlateIndex:
    """The registered plates keyed by every one-character mask, reread only when their version changes.

    A near miss is looked for on every plate that is not registered exactly, so it must
    not compare with each registered plate in turn: each plate is filed under its text
    with one position blanked (``京A1_345`` at position 4, …), and a plate's near misses
    are the plates filed under its own masks — as many dictionary probes as it has
    characters, whatever the size of the list.
    """

    def __init__(self, source: Callable[[], tuple[int, Iterable[str]]]) -> None:
        self._source = source
        self._version: int | None = None
        self._masks: dict[str, list[tuple[Plate, str]]] = {}

    @staticmethod
    def _keys(text: str) -> list[str]:
        return [f"{i}:{text[:i]}{text[i + 1 :]}" for i in range(len(text))]

    def near(self, plate: Plate) -> list[tuple[Plate, str]]:
        """Registered plates exactly one character off ``plate``, with the credential each was under."""
        version, credentials = self._source()
        if version != self._version:
            masks: dict[str, list[tuple[Plate, str]]] = {}
            for credential in credentials:
                try:
                    known = plate_from_credential(credential.removeprefix(BLOCK_PREFIX))
                except PlateError:
                    continue
                for key in self._keys(known.text):
                    masks.setdefault(key, []).append((known, credential))
            self._masks, self._version = masks, version
        found = []
        for key in self._keys(plate.text):
            found += [(k, c) for k, c in self._masks.get(key, ()) if differences(k, plate) == 1]
        return found


# -- the decision --------------------------------------------------------------------------


class PlateDecider:
    """The decision on ``plate:`` credentials, from the card list and the gate's visitor vehicles."""

    def __init__(
        self,
        cards: Any,
        cards_lock: threading.Lock,
        policy: CardPolicy,
        book: Callable[[], VehicleBook | None],
        *,
        allow: Any = None,
    ) -> None:
        self.cards = cards
        self.allow = allow
        """The gate's static ``[access] allow`` list: plates in it are residents too (a gate without
        a card list, the demo, a bench); exact only, and near misses are compared with them too."""
        self._lock = cards_lock
        self.policy = policy
        self._book = book
        self._cards_index = PlateIndex(self._card_plates)
        self._book_index = PlateIndex(self._book_plates)
        self._now: datetime = datetime.now(UTC)

    def _card_plates(self) -> tuple[int, list[str]]:
        static = self.allow.with_prefix(PLATE_PREFIX) if self.allow is not None else []
        if self.cards is None:
            return 0, static
        with self._lock:
            version = self.cards.state.version
            if version == self._cards_index._version:
                return version, []
            rows = self.cards.credentials_with_prefix(PLATE_PREFIX)
            rows += self.cards.credentials_with_prefix(BLOCK_PREFIX + PLATE_PREFIX)
        return version, static + rows

    def _book_plates(self) -> tuple[int, list[str]]:
        book = self._book()
        if book is None:
            return -1, []
        # Expiries change what is current without a registration: the minute is part of the key.
        version = book.version * 10_000_000 + int(self._now.timestamp() // 60) % 10_000_000
        if version == self._book_index._version:
            return version, []
        return version, book.credentials(self._now)

    def _lookup(self, credential: str) -> CardEntry | None:
        if self.cards is None:
            return None
        with self._lock:
            return self.cards.lookup(credential)

    def decide(self, credential: str, now: ClockLike, direction: str | None = None) -> Decision:
        flags = frozenset() if now.trusted else frozenset({Flag.CLOCK_UNTRUSTED})
        try:
            plate = plate_from_credential(credential)
        except PlateError as exc:
            return Decision(False, Reason.MALFORMED, flags, detail=exc.detail)
        listed = self._lookup(blocked(credential))
        if listed is not None and (listed.valid_until is None or now.wall < listed.valid_until):
            return Decision(
                False,
                Reason.BLACKLISTED,
                flags,
                detail=listed.holder,
                card_unit=listed.unit or None,
                vehicle=VehicleRole.BLACKLISTED,
            )
        resident = self._lookup(credential)
        if resident is not None:
            return self._judge(resident, now, VehicleRole.RESIDENT, resident.holder, resident.unit)
        book = self._book()
        visitor = book.get(credential) if book is not None else None
        if visitor is not None:
            return self._judge(visitor.entry(), now, VehicleRole.VISITOR, "", visitor.unit)
        if self.allow is not None and self.allow.decide(credential).granted:
            return Decision(True, Reason.GRANTED, flags, vehicle=VehicleRole.RESIDENT)
        return self._near_miss(plate, now.wall, flags)

    def _judge(self, entry: CardEntry, now: ClockLike, role: str, holder: str, unit: str) -> Decision:
        policy = self.policy
        result = check_card(
            entry,
            now.wall,
            now.trusted,
            policy.timezone,
            zone=policy.zone if role == VehicleRole.RESIDENT else None,
            untrusted_clock=policy.untrusted_clock,
            time_bounded=clock_error(now) is not None,
        )
        return Decision(
            result.granted,
            result.reason,
            result.flags,
            None,
            result.detail,
            holder or None,
            unit or None,
            entry.photo_digest,
            vehicle=role,
        )

    def _near_miss(self, plate: Plate, now: datetime, flags: frozenset[Flag]) -> Decision:
        self._now = now
        near = self._cards_index.near(plate) + self._book_index.near(plate)
        if not near:
            return Decision(False, Reason.UNKNOWN, flags, vehicle=VehicleRole.UNKNOWN)
        near.sort(key=lambda found: (not found[1].startswith(BLOCK_PREFIX), found[0].text))
        resembles, credential = near[0]
        listed = credential.startswith(BLOCK_PREFIX)
        detail = f"one character off {resembles.text}" + (" (blacklisted)" if listed else "")
        if len(near) > 1:
            detail += f" and {len(near) - 1} other(s)"
        return Decision(
            False,
            Reason.PLATE_NEAR_MISS,
            flags,
            detail=detail,
            vehicle=VehicleRole.BLACKLISTED if listed else VehicleRole.UNKNOWN,
            resembles=resembles.text,
        )
