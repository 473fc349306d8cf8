"""Reading the store in ingest order, so that a position means "everything up to here".

A feed's cursor is one ``row_id``: everything at or below it went up.  That is only true
if no event can appear below a ``row_id`` the reader has passed:

- SQLite: one writer at a time (``BEGIN IMMEDIATE``) numbers rows in commit order, so a
  reader never passes a row still to come.  It reuses the highest ``row_id`` when that
  row is deleted (retention pruning a back-dated newest event), so a store whose highest
  ``row_id`` fell below the position is read again from there.
- PostgreSQL: ``row_id`` order is not commit order.  Ingest workers take ids when they
  insert and may commit in another order, and ids are used up by duplicates
  (``ON CONFLICT DO NOTHING``) and rolled-back batches.  So the reader stops at the
  first missing id and waits until every transaction that was running when it saw the
  hole has ended (``pg_snapshot_xmin`` of a later snapshot at or past the ``xmax`` of
  one taken after the hole was read): then whatever will fill it has committed, and a
  hole still empty is for good.  :data:`GAP_MIN_S` covers the instant between an insert
  taking its id and its transaction getting an xid; :data:`GAP_MAX_S` bounds the wait
  when an unrelated long write transaction in the same cluster holds the horizon back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from console.store import EventStore, StoredEvent

log = logging.getLogger("gatepost.console.district")

GAP_MIN_S = 0.25
GAP_MAX_S = 300.0


@dataclass(frozen=True, slots=True)
class Batch:
    events: list[StoredEvent]
    position: int
    """The cursor once these events are acknowledged: every ``row_id`` up to it is done."""
    more: bool


class IngestOrderReader:
    def __init__(self, store: EventStore, position: int = 0) -> None:
        self.store = store
        self.position = position
        self._holes: dict[int, tuple[int, float]] = {}  # first missing id -> (xmax after seeing it, when)

    def read(self, limit: int) -> Batch:
        """The next events after :attr:`position` that no uncommitted event can precede."""
        if self.store.dialect == "sqlite":
            return self._read_sqlite(limit)
        return self._read_postgres(limit)

    def advance(self, position: int) -> None:
        self.position = max(self.position, position)

    def _read_sqlite(self, limit: int) -> Batch:
        events = self.store.events_after(self.position, limit)
        if not events:
            top = self.store.db.query("SELECT MAX(row_id) FROM events")[0][0]
            if top is not None and int(top) < self.position:
                log.warning(
                    "the newest stored event was deleted below the district cursor (%d < %d): reading from there",
                    int(top),
                    self.position,
                )
                self.position = int(top)
        return Batch(events, events[-1].row_id if events else self.position, len(events) == limit)

    def _snapshot(self) -> tuple[int, int]:
        xmin, xmax = self.store.db.query(
            "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text FROM pg_current_snapshot() AS s"
        )[0]
        return int(xmin), int(xmax)

    def _read_postgres(self, limit: int) -> Batch:
        xmin_before = self._snapshot()[0] if self._holes else 0
        events = self.store.events_after(self.position, limit)
        expected = self.position + 1
        taken: list[StoredEvent] = []
        new_holes: list[int] = []
        blocked = False
        for event in events:
            if event.row_id != expected:
                if expected not in self._holes:
                    new_holes.append(expected)
                    blocked = True
                elif not self._settled(expected, xmin_before):
                    blocked = True
            if not blocked:
                taken.append(event)
                self._holes.pop(expected, None)
            expected = event.row_id + 1
        if new_holes:  # every transaction running now must end before these count as empty
            xmax, now = self._snapshot()[1], time.monotonic()
            for missing in new_holes:
                self._holes[missing] = (xmax, now)
        position = taken[-1].row_id if taken else self.position
        self._holes = {first: seen for first, seen in self._holes.items() if first > position}
        return Batch(taken, position, len(events) == limit or len(taken) < len(events))

    def _settled(self, missing: int, xmin_before: int) -> bool:
        """Whether the ids from ``missing`` up to the next stored one will never be filled."""
        xmax, seen = self._holes[missing]
        waited = time.monotonic() - seen
        if waited >= GAP_MIN_S and xmin_before >= xmax:
            return True
        if waited >= GAP_MAX_S:
            log.warning(
                "event id %d still missing after %.0f s behind a long transaction; passing it",
                missing,
                waited,
            )
            return True
        return False
