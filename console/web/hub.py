"""Live updates for open pages: the watcher reads what the store took, the hub pushes it out.

:class:`Watcher` is one thread that follows the store by ``row_id`` (and the
``gate_status`` table by receipt time), feeds every new event to the alarm rules and
the gate board, and hands the results to the :class:`Hub`.  It reads the store rather
than hooking the ingestor, so it sees events committed by any ingest worker process;
``poke()`` (given to the ingestor as ``on_commit``) wakes it at once instead of at the
next poll.  Its position is kept in the database, so alarms are not missed across a
restart, nor raised twice (alarms are unique by source).

:class:`Hub` fans messages out to Server-Sent-Event streams, one ``asyncio.Queue`` per
open page.  A page that cannot keep up (its queue full) is dropped; its EventSource
reconnects and reloads, which is better than holding memory for a dead tab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.alarms import AlarmBook
    from console.db import Database
    from console.store import EventStore, StoredEvent

log = logging.getLogger("gatepost.console.web.hub")

QUEUE_SIZE = 2000
POLL_S = 0.5
STATUS_POLL_S = 1.0
BATCH = 500
_CLOSE = object()

DOOR_STATES = {
    "door.unlocked": "unlocked",
    "door.locked": "locked",
    "door.opened": "open",
    "door.closed": "closed",
    "door.forced": "forced",
    "door.held_open": "held_open",
    "door.held_open_warning": "held_open",
    "door.tamper": "tamper",
}


@dataclass(eq=False)  # identity: each open page is its own subscription
class Subscription:
    kinds: frozenset[str]
    filters: dict[str, str]
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: bool = False


def event_summary(event: StoredEvent) -> dict[str, Any]:
    """What a live row shows; the detail page has the rest."""
    data = event.data if isinstance(event.data, dict) else {}
    return {
        "row_id": event.row_id,
        "id": event.id,
        "site": event.site,
        "gate": event.gate,
        "seq": event.seq,
        "time": event.time,
        "clock_trusted": event.clock_trusted,
        "type": event.type,
        "granted": data.get("granted"),
        "reason": data.get("reason") or data.get("cause"),
        "holder": data.get("holder"),
        "credential": data.get("credential"),
        "reader": data.get("reader"),
    }


def matches(summary: dict[str, Any], filters: dict[str, str]) -> bool:
    """The live stream's filters, the same as the list's (see routes/events.py: ``EventFilter``)."""
    for key in ("site", "gate", "type", "reason"):
        wanted = filters.get(key)
        if wanted and str(summary.get(key) or "") != wanted:
            return False
    holder = filters.get("holder")  # exact, as the list's (the store's indexed column)
    return not holder or summary.get("holder") == holder


class Hub:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, kinds: Iterable[str], filters: dict[str, str] | None = None) -> Subscription:
        sub = Subscription(frozenset(kinds), dict(filters or {}))
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        """Thread-safe: hand one message to the event loop for every matching page."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self._subs:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(self._fanout, kind, payload)

    def _fanout(self, kind: str, payload: dict[str, Any]) -> None:
        for sub in list(self._subs):
            if kind not in sub.kinds or (kind == "event" and not matches(payload, sub.filters)):
                continue
            try:
                sub.queue.put_nowait((kind, payload))
                self.sent += 1
            except asyncio.QueueFull:
                sub.dropped = True
                self._subs.discard(sub)
                sub.queue = asyncio.Queue(1)
                sub.queue.put_nowait(_CLOSE)

    def close(self) -> None:
        """End every stream (server shutdown), from the loop's thread or any other."""

        def close_all() -> None:
            for sub in list(self._subs):
                sub.queue = asyncio.Queue(1)
                sub.queue.put_nowait(_CLOSE)
            self._subs.clear()

        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(close_all)
            except RuntimeError:
                close_all()


def sse_format(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False, default=str)}\n\n".encode()


def is_close(message: object) -> bool:
    return message is _CLOSE


# -- the gate board -----------------------------------------------------------------------


@dataclass
class GateRow:
    """One gate as the overview shows it, from its retained status and its recent events."""

    site: str
    gate: str
    state: str = "unknown"
    state_since: str | None = None
    status_received_at: str | None = None
    backlog: int | None = None
    clock_trusted: bool | None = None
    version: str = ""
    revocation_version: int | None = None
    revocation_stale: bool | None = None
    revocation_issued_at: str | None = None
    cards_version: int | None = None
    cards_count: int | None = None
    door: str | None = None
    door_since: str | None = None
    last_event_time: str | None = None
    last_event_type: str | None = None
    last_event_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class GateBoard:
    """The overview of every gate, kept current by the watcher so a page load costs no query."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], GateRow] = {}
        self._lock = threading.Lock()

    def rows(self) -> list[GateRow]:
        with self._lock:
            return [GateRow(**row.to_dict()) for _, row in sorted(self._rows.items())]

    def _row(self, site: str, gate: str) -> GateRow:
        row = self._rows.get((site, gate))
        if row is None:
            row = self._rows[site, gate] = GateRow(site, gate)
        return row

    def apply_status(
        self, site: str, gate: str, state: str, received_at: str, payload: str | dict[str, Any] | None
    ) -> GateRow:
        if isinstance(payload, dict):
            body = payload
        else:
            try:
                body = json.loads(payload) if payload else {}
            except ValueError:
                body = {}
        with self._lock:
            row = self._row(site, gate)
            if row.state != state:
                row.state_since = received_at
            row.state = state
            row.status_received_at = received_at
            row.version = str(body.get("version") or "")
            if state == "online":
                row.backlog = body.get("backlog")
                row.clock_trusted = body.get("clock_trusted")
                row.revocation_version = body.get("revocation_version")
                row.revocation_stale = body.get("revocation_stale")
                row.revocation_issued_at = body.get("revocation_issued_at")
                row.cards_version = body.get("cards_version")
                row.cards_count = body.get("cards_count")
            return GateRow(**row.to_dict())

    def apply_last(self, site: str, gate: str, time: str, type_: str | None) -> None:
        """A gate's newest event as the store's overview gives it (no id: the row links the gate's events)."""
        with self._lock:
            row = self._row(site, gate)
            row.last_event_time, row.last_event_type, row.last_event_id = time, type_, None

    def apply_events(self, events: Iterable[StoredEvent]) -> list[GateRow]:
        changed: dict[tuple[str, str], GateRow] = {}
        with self._lock:
            for event in events:
                row = self._row(event.site, event.gate)
                row.last_event_time = event.time
                row.last_event_type = event.type
                row.last_event_id = event.id
                door = DOOR_STATES.get(event.type)
                if door is not None:
                    row.door, row.door_since = door, event.time
                if event.type == "agent.started" and isinstance(event.data, dict):
                    row.clock_trusted = event.data.get("clock_trusted", row.clock_trusted)
                changed[event.site, event.gate] = row
            return [GateRow(**row.to_dict()) for row in changed.values()]


def load_board(store: EventStore, db: Database, board: GateBoard) -> None:
    """Fill the board from the database: the store's gate overview, then each gate's last door event.

    :meth:`EventStore.gate_overview` gives every gate's status and newest event from its
    own rollup table; it does not know door states, so those come from one more query.
    """
    door_types = ", ".join(f"'{name}'" for name in DOOR_STATES)
    columns = "row_id, id, site, gate, boot, seq, time, clock_trusted, type, data, received_at"
    doors = db.query(
        f"SELECT {columns} FROM events WHERE row_id IN (SELECT MAX(row_id) FROM events"
        f" WHERE type IN ({door_types}) GROUP BY site, gate)"
    )
    board.apply_events(sorted((_stored(row) for row in doors), key=lambda e: e.row_id))
    for gate in store.gate_overview():
        if gate.state is not None and gate.state_received_at is not None:
            board.apply_status(gate.site, gate.gate, gate.state, gate.state_received_at, gate.status)
        if gate.last_event_time is not None:
            board.apply_last(gate.site, gate.gate, gate.last_event_time, gate.last_event_type)


def stored_event(row: tuple[Any, ...]) -> StoredEvent:
    """An ``events`` row (the store's column order) as the store's own :class:`StoredEvent`."""
    from console.store import StoredEvent

    row_id, id_, site, gate, boot, seq, time, trusted, type_, data, received_at = row
    body = data if isinstance(data, dict) else json.loads(data)
    return StoredEvent(
        int(row_id), id_, site, gate, boot, int(seq), time, bool(trusted), type_, body, received_at
    )


_stored = stored_event


# -- the watcher --------------------------------------------------------------------------


class Watcher:
    def __init__(
        self, store: EventStore, db: Database, alarms: AlarmBook, hub: Hub, board: GateBoard
    ) -> None:
        self.store = store
        self.db = db
        self.alarms = alarms
        self.hub = hub
        self.board = board
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._statuses: dict[tuple[str, str], str] = {}
        self.cursor = 0
        self.events_seen = 0
        self.passes = 0

    def start(self) -> Watcher:
        cursor = self.alarms.cursor()
        if cursor is None:  # first run on this database: alarms start now, not in the past
            newest = self.store.last_events(1)
            cursor = newest[-1].row_id if newest else 0
            self.alarms.set_cursor(cursor)
        self.cursor = cursor
        try:
            load_board(self.store, self.db, self.board)
        except Exception:
            log.exception("could not load the gate overview; it fills as events arrive")
        for row in self.board.rows():
            if row.status_received_at:
                self._statuses[row.site, row.gate] = row.status_received_at
                self.alarms.observe_status(row.site, row.gate, row.state, row.status_received_at)
        self._thread = threading.Thread(target=self._run, name="console-web-watcher", daemon=True)
        self._thread.start()
        return self

    def poke(self, *_args: object) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        last_status = 0.0
        clock = datetime.now
        while not self._stop.is_set():
            try:
                while self.step_events():
                    pass
                now = clock(UTC).timestamp()
                if now - last_status >= STATUS_POLL_S:
                    last_status = now
                    self.step_statuses()
            except Exception:  # a database hiccup must not end live updates
                log.exception("live update pass failed; retrying")
                self._stop.wait(2.0)
            self.passes += 1
            self._wake.wait(POLL_S)
            self._wake.clear()

    def step_events(self) -> bool:
        """One batch of new events; True if there may be more."""
        events = self.store.events_after(self.cursor, limit=BATCH)
        if not events:
            return False
        for alarm in self.alarms.observe_events(events):
            self.hub.publish("alarm", alarm.to_dict())
        for row in self.board.apply_events(events):
            self.hub.publish("gate", row.to_dict())
        for event in events:
            self.hub.publish("event", event_summary(event))
        self.cursor = events[-1].row_id
        self.events_seen += len(events)
        self.alarms.set_cursor(self.cursor)
        return len(events) == BATCH

    def step_statuses(self) -> None:
        for site, gate, state, received_at, payload in self.db.query(
            "SELECT site, gate, state, received_at, payload FROM gate_status"
        ):
            if self._statuses.get((site, gate)) == received_at:
                continue
            self._statuses[site, gate] = received_at
            row = self.board.apply_status(site, gate, state, received_at, payload)
            for alarm in self.alarms.observe_status(site, gate, state, received_at, payload):
                self.hub.publish("alarm", alarm.to_dict())
            self.hub.publish("gate", row.to_dict())
