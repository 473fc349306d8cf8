"""Live updates for open pages: the watcher reads what the store took, the hub pushes it out.

:class:`Watcher` is one thread that follows the store by ``row_id`` (and the
``gate_status`` table by receipt time), feeds every new event to the alarm rules and
the gate board, and hands the results to the :class:`Hub`.  It reads the store rather
than hooking the ingestor, so it sees events committed by any ingest worker process;
``poke()`` (given to the ingestor as ``on_commit``) wakes it at once instead of at the
next poll.

On PostgreSQL, ``row_id`` order is not commit order: a worker takes its ids when it
inserts and another may commit higher ones first.  So the watcher reads through an
:class:`~console.follow.EventFollower`, which looks again, for a while, for every id it
skipped, and the position it keeps in the database is the one below which every event
was read or given up on.
After a restart it reads from there: no alarm is missed, and the events it reads a
second time raise nothing twice (alarms are unique by source).

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
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from console.alarms import AlarmKind, Draft, outage_of
from console.db import format_time
from console.follow import EventFollower
from console.outage import OutageRule, drop_source
from console.store import (
    CONTRADICT_GRACE_S,
    EVENT_COLUMNS,
    NOT_FACT,
    TYPE_AS_INDEXED,
    EventFlag,
    LinkState,
    link_confirmed,
    state_confirmed,
    stored_event,
)

if TYPE_CHECKING:
    from console.alarms import AlarmBook
    from console.db import Database
    from console.store import EventStore, StoredEvent

log = logging.getLogger("gatepost.console.web.hub")

QUEUE_SIZE = 2000
POLL_S = 0.5
STATUS_POLL_S = 1.0
BATCH = 500
STATUS_LOOKBACK_S = 30.0
"""How far before the newest status receipt seen a status pass reads (:meth:`Watcher.step_statuses`)."""
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
    sites: frozenset[str] | None = None
    """The sites this page's user sees (every message of another site is kept from it); None: all."""
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
        "flags": event.flags,
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

    def subscribe(
        self,
        kinds: Iterable[str],
        filters: dict[str, str] | None = None,
        *,
        sites: frozenset[str] | None = None,
    ) -> Subscription:
        sub = Subscription(frozenset(kinds), dict(filters or {}), sites)
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
            if sub.sites is not None and payload.get("site") not in sub.sites:
                continue
            try:
                sub.queue.put_nowait((kind, payload))
                self.sent += 1
            except asyncio.QueueFull:
                sub.dropped = True
                self._subs.discard(sub)
                _end(sub)

    def close(self) -> None:
        """End every stream (server shutdown), from the loop's thread or any other."""

        def close_all() -> None:
            for sub in list(self._subs):
                _end(sub)
            self._subs.clear()

        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(close_all)
            except RuntimeError:
                close_all()


def _end(sub: Subscription) -> None:
    """Put the close marker in the queue the page's stream is waiting on, dropping the oldest
    message if it is full: the page reloads when it reconnects, so nothing it missed matters."""
    if sub.queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            sub.queue.get_nowait()
    sub.queue.put_nowait(_CLOSE)


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
    cert_not_after: str | None = None
    """When the gate's TLS certificate ends (its status says); ``cert_expiring`` within the alarm's warning."""
    cert_expiring: bool = False
    door: str | None = None
    door_since: str | None = None
    last_event_time: str | None = None
    last_event_type: str | None = None
    last_event_id: str | None = None
    backlog_at: str | None = None
    """When the gate reported ``backlog`` (events held in its outbox, not yet acknowledged)."""
    gaps: int = 0
    gap_missing: int = 0
    gap_ranges: str = ""
    oldest_gap_at: str | None = None
    confirmed: bool | None = None
    """False when the console cannot vouch for ``state`` now (see :func:`console.store.state_confirmed`)."""
    unconfirmed_since: str | None = None
    status_contradicted: bool = False
    """The gate's ``offline`` status was contradicted by its own events arriving after it."""
    last_heard_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _certificate(value: object) -> tuple[str | None, bool]:
    """A status's ``cert_not_after`` as the overview shows it, and whether the 30-day alarm applies."""
    from console.alarms import CERT_WARNING_DAYS

    if not isinstance(value, str):
        return None, False
    try:
        ends = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None, False
    if ends.tzinfo is None:
        ends = ends.replace(tzinfo=UTC)
    return value, ends - datetime.now(UTC) <= timedelta(days=CERT_WARNING_DAYS)


class GateBoard:
    """The overview of every gate, kept current by the watcher so a page load costs no query."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], GateRow] = {}
        self._applied: dict[tuple[str, str], int] = {}  # the newest row_id each gate's row shows
        self._outages: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Lock()
        self._link: LinkState | None = None
        self._link_seen: LinkState | None = None
        self._link_view: tuple[bool, str | None] = (False, None)

    def rows(self) -> list[GateRow]:
        with self._lock:
            return [GateRow(**row.to_dict()) for _, row in sorted(self._rows.items())]

    def outage(self, site: str, gate: str) -> str | None:
        """The outage the board shows a gate in (:func:`~console.alarms.outage_of`), if offline."""
        with self._lock:
            return self._outages.get((site, gate))

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
        outage = outage_of(state, body)
        with self._lock:
            row = self._row(site, gate)
            if row.state != state or outage != self._outages.get((site, gate)) or row.status_contradicted:
                row.state_since = received_at  # a new state, or offline again after an unseen return
            self._outages[site, gate] = outage
            row.state = state
            row.status_contradicted = False
            row.status_received_at = received_at
            row.version = str(body.get("version") or "")
            if body.get("backlog") is not None:  # online and stopped say it; a will does not
                row.backlog = body.get("backlog")
                row.backlog_at = body.get("time") or received_at
            self._confirm(row)
            if state in ("online", "degraded"):  # degraded: online, its disk refusing writes
                row.clock_trusted = body.get("clock_trusted")
                row.revocation_version = body.get("revocation_version")
                row.revocation_stale = body.get("revocation_stale")
                row.revocation_issued_at = body.get("revocation_issued_at")
                row.cards_version = body.get("cards_version")
                row.cards_count = body.get("cards_count")
                row.cert_not_after, row.cert_expiring = _certificate(body.get("cert_not_after"))
            return GateRow(**row.to_dict())

    def apply_gaps(
        self, site: str, gate: str, gaps: int, missing: int, ranges: list[tuple[int, int]], oldest: str | None
    ) -> GateRow:
        """A gate's open gaps as the gap watch keeps them (``gate_seq``)."""
        from console.gaps import describe

        with self._lock:
            row = self._row(site, gate)
            row.gaps, row.gap_missing, row.gap_ranges, row.oldest_gap_at = (
                gaps,
                missing,
                describe(ranges),
                oldest,
            )
            if gaps > len(ranges):
                row.gap_ranges += f" (+{gaps - len(ranges)} more)"
            return GateRow(**row.to_dict())

    def apply_link(self, link: LinkState | None, now: datetime) -> list[GateRow]:
        """The ingestor's word about its broker connection; returns the rows whose confirmation changed."""
        confirmed, since = link_confirmed(link, now)
        with self._lock:
            before = self._link_view
            self._link, self._link_view = link, (confirmed, since)
            if before == self._link_view and link == self._link_seen:
                return []
            self._link_seen = link
            changed = []
            for row in self._rows.values():
                old = (row.confirmed, row.unconfirmed_since)
                self._confirm(row)
                if (row.confirmed, row.unconfirmed_since) != old:
                    changed.append(GateRow(**row.to_dict()))
            return changed

    def _confirm(self, row: GateRow) -> None:
        if row.status_received_at is None:
            return
        confirmed, since = self._link_view
        received = row.last_heard_at if row.status_contradicted else row.status_received_at
        row.confirmed, row.unconfirmed_since = state_confirmed(self._link, confirmed, since, received)

    def contradict(self, site: str, gate: str, heard_at: str) -> GateRow | None:
        """The gate's events kept arriving after its ``offline``: show it online, and why."""
        with self._lock:
            row = self._rows.get((site, gate))
            if row is None or row.state != "offline":
                return None
            row.state, row.status_contradicted, row.state_since = "online", True, heard_at
            row.last_heard_at = heard_at
            self._outages[site, gate] = None
            self._confirm(row)
            return GateRow(**row.to_dict())

    def apply_last(self, site: str, gate: str, time: str, type_: str | None) -> None:
        """A gate's newest event as the store's overview gives it (no id: the row links the gate's events)."""
        with self._lock:
            row = self._row(site, gate)
            row.last_event_time, row.last_event_type, row.last_event_id = time, type_, None

    def apply_events(self, events: Iterable[StoredEvent]) -> list[GateRow]:
        """Each gate's newest event and door state; an event below the ``row_id`` a gate's row
        already shows is one that committed late (see :class:`Watcher`) and changes nothing."""
        changed: dict[tuple[str, str], GateRow] = {}
        with self._lock:
            for event in events:
                key = (event.site, event.gate)
                if event.row_id <= self._applied.get(key, 0) or event.flags & NOT_FACT:
                    continue
                self._applied[key] = event.row_id
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
    """Fill the board from the database: each gate's last door event, then the store's gate overview.

    :meth:`EventStore.gate_overview` gives every gate's status and newest event from its
    own rollup table; it does not know door states, so those come from one more query.
    Its type test is written as the ``events_type_time`` index compares (on PostgreSQL,
    ``COLLATE "C"``), or that index cannot serve it: 4.5 ms instead of 36 ms at 200,000
    events of which 2 % are door events; where most are, it is a scan either way.
    """
    door_types = ", ".join(f"'{name}'" for name in DOOR_STATES)
    doors = db.query(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE row_id IN (SELECT MAX(row_id) FROM events"
        f" WHERE {TYPE_AS_INDEXED[db.dialect]} IN ({door_types}) GROUP BY site, gate)"
    )
    board.apply_events(sorted((stored_event(row) for row in doors), key=lambda e: e.row_id))
    board.apply_link(store.link_state(), datetime.now(UTC))
    for gate in store.gate_overview():
        if gate.state is not None and gate.state_received_at is not None:
            board.apply_status(gate.site, gate.gate, gate.state, gate.state_received_at, gate.status)
        if gate.last_event_time is not None:
            board.apply_last(gate.site, gate.gate, gate.last_event_time, gate.last_event_type)
    for site, gate, gaps, missing, ranges, oldest, _changed in store.gap_summaries():
        board.apply_gaps(site, gate, gaps, missing, ranges, oldest)


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
        self.follower = EventFollower(store)
        self._saved: int | None = None
        self._rejections: int | None = None
        self._gaps_seen = ""
        self._evidence: dict[tuple[str, str], tuple[str, float]] = {}
        self.events_seen = 0
        self.passes = 0
        self.contradict_grace_s = CONTRADICT_GRACE_S
        self.contradict_confirm_s = CONTRADICT_CONFIRM_S
        self.outages = OutageRule()
        """New ``offline`` statuses wait here: a broker outage is one alarm (console/outage.py)."""

    @property
    def cursor(self) -> int:
        """The highest ``row_id`` read."""
        return self.follower.cursor

    @property
    def position(self) -> int:
        """The ``row_id`` below which every event was read or given up on: what a restart resumes from."""
        return self.follower.position

    def start(self) -> Watcher:
        cursor = self.alarms.cursor()
        if cursor is None:  # first run on this database: alarms start now, not in the past
            newest = self.store.last_events(1)
            cursor = newest[-1].row_id if newest else 0
            self.alarms.set_cursor(cursor)
        self.follower.cursor = self._saved = cursor
        try:
            load_board(self.store, self.db, self.board)
        except Exception:
            log.exception("could not load the gate overview; it fills as events arrive")
        for row in self.board.rows():  # the states a status pass compares with (no alarm: see step_statuses)
            if row.status_received_at:
                self._statuses[row.site, row.gate] = row.status_received_at
        self._rejections = self.alarms.cursor(REJECTIONS_CURSOR)
        if self._rejections is None:  # alarms start now, as for events
            newest = self.db.query("SELECT MAX(row_id) FROM rejections")[0][0]
            self._rejections = int(newest or 0)
            self.alarms.set_cursor(self._rejections, REJECTIONS_CURSOR)
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
        while not self._stop.is_set():
            try:
                while self.step_events():
                    pass
                now = time.monotonic()
                if now - last_status >= STATUS_POLL_S:
                    last_status = now
                    self.step_statuses()
                    self.step_rejections()
            except Exception:  # a database hiccup must not end live updates
                log.exception("live update pass failed; retrying")
                self._stop.wait(2.0)
            self.passes += 1
            self._wake.wait(POLL_S)
            self._wake.clear()

    def step_events(self) -> bool:
        """One batch of new events, and of skipped ones that committed since; True if there may be more.

        An event read late (see :mod:`console.follow`) raises its alarm then (alarms are
        unique by source, so once); a live page shows it when it comes, and the board keeps
        the newer row it already shows.
        """
        events, more = self.follower.read(BATCH)
        if events:
            facts = [event for event in events if not event.flags & EventFlag.FUTURE]
            raised = self.alarms.observe_events(facts) + self.alarms.raise_drafts(integrity_drafts(events))
            for alarm in raised:
                self.hub.publish("alarm", alarm.to_dict())
            for row in self.board.apply_events(events):
                self.hub.publish("gate", row.to_dict())
            for event in facts:  # a date in the year 8999 does not go on top of every live page
                self.hub.publish("event", event_summary(event))
            self.events_seen += len(events)
        if self.position != self._saved:
            self._saved = self.position
            self.alarms.set_cursor(self._saved)
        return more

    def step_statuses(self) -> None:
        """Apply the gate statuses stored since the last pass; raise ``gate.offline`` on a change to it.

        Only rows received from :data:`STATUS_LOOKBACK_S` before the newest receipt seen
        are read, not every gate's payload each second: a worker stamps ``received_at``
        before it commits, so a row may appear after a newer one.  A row already applied
        (the same receipt time) is skipped.  The broker re-sends a gate's retained
        ``offline`` at every subscribe (an ingest reconnect, a console restart): that is a
        new receipt of the same state, not a new outage, so the alarm rule is given the
        state the board showed before (at start, the one stored).
        """
        link = self.store.link_state()
        drop = self.outages.observe_link(link)
        if drop is not None:
            log.warning("the console's broker connection dropped (%s): one broker.outage alarm", drop.lost_at)
            draft = Draft(AlarmKind.BROKER_OUTAGE, "*", "broker", drop_source(drop), drop.lost_at, None, {})
            for alarm in self.alarms.raise_drafts([draft]):
                self.hub.publish("alarm", alarm.to_dict())
        newest = max(self._statuses.values(), default=None)
        since = (
            format_time(datetime.fromisoformat(newest) - timedelta(seconds=STATUS_LOOKBACK_S))
            if newest
            else ""
        )
        for site, gate, state, received_at, payload in self.db.query(
            "SELECT site, gate, state, received_at, payload FROM gate_status WHERE received_at >= ?"
            " ORDER BY received_at",
            (since,),
        ):
            if self._statuses.get((site, gate)) == received_at:
                continue
            self._statuses[site, gate] = received_at
            previous = self.board.outage(site, gate)
            row = self.board.apply_status(site, gate, state, received_at, payload)
            outage = self.board.outage(site, gate)
            if outage is not None and outage != previous:
                self.outages.offline(site, gate, received_at, outage, previous)
            elif outage is None:
                self.outages.back(site, gate)
            for alarm in self.alarms.observe_certificate(site, gate, received_at, payload):
                self.hub.publish("alarm", alarm.to_dict())
            self.hub.publish("gate", row.to_dict())
        for held in self.outages.due():
            if self.board.outage(held.site, held.gate) != held.outage:
                continue  # back meanwhile (its events contradicted the will)
            for alarm in self.alarms.observe_outage(
                held.site, held.gate, held.received_at, held.outage, previous=held.previous
            ):
                self.hub.publish("alarm", alarm.to_dict())
        for row in self.board.apply_link(link, datetime.now(UTC)):
            self.hub.publish("gate", row.to_dict())
        for site, gate, gaps, missing, ranges, oldest, changed in self.store.gap_summaries(self._gaps_seen):
            self._gaps_seen = max(self._gaps_seen, changed)
            self.hub.publish(
                "gate", self.board.apply_gaps(site, gate, gaps, missing, ranges, oldest).to_dict()
            )
        self.step_contradictions()

    def step_contradictions(self, now: float | None = None) -> None:
        """Show a gate online whose own events keep arriving after its ``offline`` status.

        A gate announces ``online`` before it sends anything after a reconnect, so events
        received :data:`~console.store.CONTRADICT_GRACE_S` after an ``offline`` that is still the
        stored status mean the status is false — stale, or forged with the gate's credentials
        (docs/console.md).  Seen twice :data:`CONTRADICT_CONFIRM_S` apart, so an ``online``
        committed a moment after the events by another ingest worker is not mistaken for it.
        The ``gate.offline`` alarm it raised is closed by the console, saying why.
        """
        now = time.monotonic() if now is None else now
        rows = self.db.query(
            "SELECT s.site, s.gate, s.received_at, l.received_at FROM gate_status AS s"
            " JOIN gate_last AS l ON l.site = s.site AND l.gate = s.gate"
            " WHERE s.state = 'offline' AND l.received_at > s.received_at"
        )
        seen: set[tuple[str, str]] = set()
        for site, gate, status_at, heard_at in rows:
            late = datetime.fromisoformat(heard_at) - datetime.fromisoformat(status_at)
            if late.total_seconds() <= self.contradict_grace_s:
                continue
            key = (site, gate)
            seen.add(key)
            first = self._evidence.get(key)
            if first is None or first[0] != status_at:
                self._evidence[key] = (status_at, now)
                continue
            if now - first[1] < self.contradict_confirm_s:
                continue
            row = self.board.contradict(site, gate, heard_at)
            if row is None:
                continue
            log.warning(
                "%s/%s: its events kept arriving after its offline status of %s; showing it online",
                site,
                gate,
                status_at,
            )
            self.hub.publish("gate", row.to_dict())
            cleared = self.alarms.clear(
                AlarmKind.GATE_OFFLINE,
                site,
                gate,
                f"cleared: the gate's events kept arriving after this offline status (last at {heard_at});"
                " the status was stale or forged",
            )
            if cleared is not None:
                self.hub.publish("alarm", cleared.to_dict())
        for key in set(self._evidence) - seen:
            del self._evidence[key]

    def step_rejections(self) -> None:
        """Alarms for what the ingest guard refused (console/integrity.py): absurd sequence jumps
        and implausible statuses, one open alarm per kind and gate, counting them."""
        if self._rejections is None:
            return
        rows = self.db.query(
            "SELECT row_id, topic, reason, detail, time FROM rejections WHERE row_id > ? ORDER BY row_id LIMIT ?",
            (self._rejections, BATCH),
        )
        if not rows:
            return
        drafts = []
        for row_id, topic, reason, detail, at in rows:
            kind = REFUSAL_ALARMS.get(reason)
            parts = topic.split("/")
            if kind is None or len(parts) != 5:
                continue
            drafts.append(
                Draft(
                    kind,
                    parts[2],
                    parts[3],
                    f"rejection:{row_id}",
                    at,
                    None,
                    {"reason": reason, "detail": detail},
                )
            )
        for alarm in self.alarms.raise_drafts(drafts):
            self.hub.publish("alarm", alarm.to_dict())
        self._rejections = int(rows[-1][0])
        self.alarms.set_cursor(self._rejections, REJECTIONS_CURSOR)


REJECTIONS_CURSOR = "rejections"
CONTRADICT_CONFIRM_S = 3.0
REFUSAL_ALARMS = {
    "seq_jump": AlarmKind.SEQ_JUMP,
    "stale_status": AlarmKind.STATUS_REFUSED,
    "future_status": AlarmKind.STATUS_REFUSED,
}
"""Refusals (``rejections.reason``, console/integrity.py) that raise an alarm; malformed messages do not."""
_FLAG_ALARMS = (
    (EventFlag.FUTURE, AlarmKind.EVENT_QUARANTINED),
    (EventFlag.BACKDATED, AlarmKind.EVENT_BACKDATED),
    (EventFlag.FLOOD, AlarmKind.INGEST_FLOOD),
)


def integrity_drafts(events: Iterable[StoredEvent]) -> list[Draft]:
    """One alarm occurrence per flagged event and flag (grouped per gate by the alarm book).

    Dated by receipt: a quarantined event's own date is the lie."""
    drafts = []
    for event in events:
        if not event.flags:
            continue
        for flag, kind in _FLAG_ALARMS:
            if event.flags & flag:
                detail = {"type": event.type, "time": event.time, "seq": event.seq}
                drafts.append(
                    Draft(kind, event.site, event.gate, event.id, event.received_at, event.id, detail)
                )
    return drafts
