"""Alarms: the events an operator must look at, raised as events are stored and kept until acknowledged.

Rules (:func:`evaluate`) are pure functions of the stored events and gate statuses:

==========================  ==========================================================
kind                        raised when
==========================  ==========================================================
``door.forced``             a door opened while locked
``door.held_open``          a door stayed open past its limit
``door.tamper``             a reader or door housing was opened
``door.fire_alarm``         a door's fire-alarm input tripped and released the door
``outbox.overflow``         a gate's outbox was full and refused events
``outbox.degraded``         a gate's disk refused its outbox's writes (events held in memory)
``outbox.lost``             a gate restarted while events were held in memory only
``gate.offline``            a gate's status became ``offline`` (its last will: the link
                            died), from another state or from another outage
``broker.outage``           the console's own broker connection dropped (a broker restart):
                            one alarm, site ``*``; the gates' ``offline`` statuses around it
                            raise ``gate.offline`` only for gates not back within a grace
                            (console/outage.py)
``access.denied_burst``     ``denials`` refused credentials at one gate within ``window_s``
                            of gate time (default 5 in 60 s: someone trying cards or codes)
``guard.pin_lockout``       wrong guard PINs paused a source's guard actions at a gate
``seq.gap``                 sequence numbers of a gate still missing after
                            ``[integrity] gap_alarm_after_s`` (console/gaps.py); clears
                            itself when they arrive
``seq.jump``                a gate's event numbered absurdly far ahead was refused
``event.quarantined``       an event dated in the future was quarantined
``event.backdated``         an event dated before one its gate numbered earlier (or
                            reusing a number) was kept out of the flow
``ingest.flood``            a gate sent more events than its budget (flagged, stored)
``status.refused``          a gate status was refused as stale or from the future
``command.unverified``      a gate refused a command as unsigned, forged, replayed or
                            meant for another gate (``protocol.commands.ALARMING_REASONS``)
``reader.offline``          a supervised (OSDP) reader stopped answering: a cut or shorted
                            cable, no power; closed by the console when the gate reports
                            every such reader back (``reader.online`` counting none offline)
``reader.refused``          a reader answers but not with the gate's key for it (wrong key,
                            factory key, no key installed); closed likewise
``vehicle.blacklisted``     a vehicle lane read a plate on the site's blacklist (the
                            arm stayed down; ``detail`` names the plate and the listing)
``post.understaffed``      a post rostered today had fewer people checked in than the
                            staffing advice for longer than ``[roster]
                            understaffed_after_minutes``; closed by the console when
                            staffed again (console/roster/attendance_watch.py)
``tls.cert_expiring``       a gate's status says its broker certificate expires within
                            ``CERT_WARNING_DAYS`` (30): renew it (``gatepost edge enroll
                            --renew``) before the broker refuses the gate
==========================  ==========================================================

**One open alarm per kind and gate.**  A second occurrence while one is open adds to
its ``count`` (and names the latest event) instead of opening another, so 200 forged
``door.forced`` events from one gate are one alarm counting 200, acknowledged once; the
next occurrence after the acknowledgement opens a new one.  Each occurrence names its
source (the event id, or the receipt time of the status that took the gate offline), and
``alarm_sources`` refuses a source twice, so re-reading events after a restart, or two
console processes reading the same store, never counts one twice.  Nor does the broker
re-sending a gate's retained ``offline`` at every subscribe (each console restart or
ingest reconnect): it names the outage the console already showed.  A gate that came back
and went away again while the console was down sends a will naming a new one, and that
counts.  Acknowledging takes an operator and a note, and is audited by the caller; an
alarm whose condition ended by itself (a gap filled, an ``offline`` contradicted by the
gate's own events) is closed by the console, ``acked_by`` :data:`CONSOLE_ACTOR`.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from console.db import Database, IntegrityError, Migration, format_time, now_text
from protocol import GatepostError
from protocol.commands import ALARMING_REASONS

MAX_NOTE_CHARS = 500
CONSOLE_ACTOR = "(console)"
"""Who closed an alarm whose condition ended by itself; no user name can be this (console/users.py)."""


class AlarmKind(StrEnum):
    DOOR_FORCED = "door.forced"
    DOOR_HELD_OPEN = "door.held_open"
    DOOR_TAMPER = "door.tamper"
    DOOR_FIRE_ALARM = "door.fire_alarm"
    OUTBOX_OVERFLOW = "outbox.overflow"
    OUTBOX_DEGRADED = "outbox.degraded"
    OUTBOX_LOST = "outbox.lost"
    GATE_OFFLINE = "gate.offline"
    BROKER_OUTAGE = "broker.outage"
    DENIED_BURST = "access.denied_burst"
    GUARD_PIN_LOCKOUT = "guard.pin_lockout"
    SEQ_GAP = "seq.gap"
    SEQ_JUMP = "seq.jump"
    EVENT_QUARANTINED = "event.quarantined"
    EVENT_BACKDATED = "event.backdated"
    INGEST_FLOOD = "ingest.flood"
    STATUS_REFUSED = "status.refused"
    COMMAND_UNVERIFIED = "command.unverified"
    CERT_EXPIRING = "tls.cert_expiring"
    READER_OFFLINE = "reader.offline"
    READER_REFUSED = "reader.refused"
    LANE_OPEN_TOO_LONG = "lane.open_too_long"
    LANE_FORCED_OPEN = "lane.forced_open"
    VEHICLE_BLACKLISTED = "vehicle.blacklisted"
    POST_UNDERSTAFFED = "post.understaffed"


CERT_WARNING_DAYS = 30
"""Renewal needs the office to sign a request, so a month leaves time for a site visit."""


_EVENT_ALARMS = {
    "door.forced": AlarmKind.DOOR_FORCED,
    "door.held_open": AlarmKind.DOOR_HELD_OPEN,
    "door.tamper": AlarmKind.DOOR_TAMPER,
    "door.fire_alarm": AlarmKind.DOOR_FIRE_ALARM,
    "outbox.overflow": AlarmKind.OUTBOX_OVERFLOW,
    "outbox.degraded": AlarmKind.OUTBOX_DEGRADED,
    "outbox.lost": AlarmKind.OUTBOX_LOST,
    "guard.pin_lockout": AlarmKind.GUARD_PIN_LOCKOUT,
    "reader.offline": AlarmKind.READER_OFFLINE,
    "reader.refused": AlarmKind.READER_REFUSED,
    "reader.tamper": AlarmKind.DOOR_TAMPER,  # a reader's housing opened: the same guard response
    "lane.open_too_long": AlarmKind.LANE_OPEN_TOO_LONG,
    "lane.forced_open": AlarmKind.LANE_FORCED_OPEN,
}

_READER_BACK = {AlarmKind.READER_OFFLINE: "offline_readers", AlarmKind.READER_REFUSED: "refused_readers"}
"""The ``reader.online`` field that, at 0, says no reader of the gate is in that state any more."""


class AlarmError(GatepostError, ValueError):
    """An alarm cannot be acknowledged as asked (unknown, already acknowledged, no note)."""


class EventLike(Protocol):
    """What the rules read of an event: a stored event or a protocol Event both qualify."""

    @property
    def id(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def gate(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def time(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class AlarmRules:
    denials: int = 5
    window_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Draft:
    """An alarm a rule wants raised; the book stores it unless its source already raised one."""

    kind: AlarmKind
    site: str
    gate: str
    source: str
    event_time: str
    event_id: str | None
    detail: dict[str, Any]
    count: int = 1
    """Occurrences this draft stands for (a batch of flagged events is one draft)."""


@dataclass(frozen=True, slots=True)
class Alarm:
    row_id: int
    kind: str
    site: str
    gate: str
    source: str
    raised_at: str
    event_time: str
    event_id: str | None
    detail: dict[str, Any]
    acked_at: str | None
    acked_by: str | None
    note: str | None
    count: int = 1
    last_at: str | None = None
    """When the latest occurrence was counted (``raised_at`` is the first's)."""
    last_event_time: str | None = None
    last_event_id: str | None = None
    opened: bool = False
    """Set on an alarm just opened by the call that returned it (not stored): a live page counts it."""

    @property
    def open(self) -> bool:
        return self.acked_at is None

    @property
    def cleared(self) -> bool:
        """Closed by the console because its condition ended, not by an operator."""
        return self.acked_by == CONSOLE_ACTOR

    def to_dict(self) -> dict[str, Any]:
        return {
            "row_id": self.row_id,
            "kind": self.kind,
            "site": self.site,
            "gate": self.gate,
            "raised_at": self.raised_at,
            "event_time": self.event_time,
            "event_id": self.event_id,
            "detail": self.detail,
            "acked_at": self.acked_at,
            "acked_by": self.acked_by,
            "note": self.note,
            "count": self.count,
            "last_at": self.last_at,
            "last_event_time": self.last_event_time,
            "last_event_id": self.last_event_id,
            "opened": self.opened,
        }


def _time_text(value: Any) -> str:
    """A stored event's time is already text; a protocol event's is a datetime."""
    return format_time(value) if isinstance(value, datetime) else str(value)


def _time_value(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(slots=True)
class RuleState:
    """What the burst rule remembers between batches: recent denial times per gate."""

    denials: dict[tuple[str, str], deque[datetime]] = field(default_factory=lambda: defaultdict(deque))


def evaluate(rules: AlarmRules, state: RuleState, event: EventLike) -> Draft | None:
    """The alarm one event raises, if any.  Times are the gate's, so a replayed backlog
    after an outage raises the bursts that really happened, not one big false one."""
    kind = _EVENT_ALARMS.get(event.type)
    data = event.data if isinstance(event.data, dict) else {}
    if kind is not None:
        detail = {key: data[key] for key in ("open_for_s", "dropped", "reader", "lane") if key in data}
        return Draft(kind, event.site, event.gate, event.id, _time_text(event.time), event.id, detail)
    if event.type == "command.rejected" and str(data.get("reason")) in ALARMING_REASONS:
        detail = {key: data[key] for key in ("reason", "detail", "command_id") if key in data}
        return Draft(
            AlarmKind.COMMAND_UNVERIFIED,
            event.site,
            event.gate,
            event.id,
            _time_text(event.time),
            event.id,
            detail,
        )
    if event.type == "access.scan" and data.get("reason") == "blacklisted":
        detail = {key: data[key] for key in ("code", "reader", "detail", "direction") if key in data}
        return Draft(
            AlarmKind.VEHICLE_BLACKLISTED,
            event.site,
            event.gate,
            event.id,
            _time_text(event.time),
            event.id,
            detail,
        )
    denied = event.type == "door.access_denied" or (
        event.type == "access.scan" and data.get("granted") is False
    )
    if not denied:
        return None
    window = timedelta(seconds=rules.window_s)
    at = _time_value(event.time)
    times = state.denials[event.site, event.gate]
    times.append(at)
    while times and at - times[0] > window:
        times.popleft()
    if len(times) < rules.denials:
        return None
    first = times[0]
    count = len(times)
    times.clear()  # the next alarm needs a fresh burst
    return Draft(
        AlarmKind.DENIED_BURST,
        event.site,
        event.gate,
        event.id,
        _time_text(event.time),
        event.id,
        {"denials": count, "window_s": rules.window_s, "since": _time_text(first)},
    )


def _migrations(dialect: str) -> list[Migration]:
    now = (
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
        if dialect == "sqlite"
        else """to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
    )
    same_group = (
        "a.kind = alarms.kind AND a.site = alarms.site AND a.gate = alarms.gate AND a.acked_at IS NULL"
    )
    return [
        Migration(
            1,
            "alarms",
            (
                """CREATE TABLE alarms (
                    row_id     {pk},
                    kind       TEXT NOT NULL,
                    site       TEXT NOT NULL,
                    gate       TEXT NOT NULL,
                    source     TEXT NOT NULL,
                    raised_at  TEXT NOT NULL,
                    event_time TEXT NOT NULL,
                    event_id   TEXT,
                    detail     TEXT NOT NULL,
                    acked_at   TEXT,
                    acked_by   TEXT,
                    note       TEXT,
                    UNIQUE (kind, source)
                )""",
                "CREATE INDEX alarms_open ON alarms (acked_at, row_id)",
                """CREATE TABLE alarm_cursor (
                    name  TEXT PRIMARY KEY,
                    value {bigint} NOT NULL
                )""",
            ),
        ),
        Migration(
            2,
            "one open alarm per kind and gate, with a count",
            (
                "ALTER TABLE alarms ADD COLUMN count {bigint} NOT NULL DEFAULT 1",
                "ALTER TABLE alarms ADD COLUMN last_at TEXT",
                "ALTER TABLE alarms ADD COLUMN last_event_time TEXT",
                "ALTER TABLE alarms ADD COLUMN last_event_id TEXT",
                """CREATE TABLE alarm_sources (
                    kind     TEXT NOT NULL,
                    source   TEXT NOT NULL,
                    alarm_id {bigint} NOT NULL,
                    PRIMARY KEY (kind, source)
                )""",
                "INSERT INTO alarm_sources (kind, source, alarm_id) SELECT kind, source, row_id FROM alarms",
                # Open alarms of one kind and gate become the oldest of them, counting them all.
                f"""UPDATE alarms SET count = (SELECT COUNT(*) FROM alarms AS a WHERE {same_group})
                    WHERE acked_at IS NULL
                      AND row_id = (SELECT MIN(a.row_id) FROM alarms AS a WHERE {same_group})""",
                """UPDATE alarm_sources SET alarm_id = (
                        SELECT MIN(a.row_id) FROM alarms AS a JOIN alarms AS o ON o.row_id = alarm_sources.alarm_id
                        WHERE a.kind = o.kind AND a.site = o.site AND a.gate = o.gate AND a.acked_at IS NULL)
                    WHERE alarm_id IN (SELECT row_id FROM alarms WHERE acked_at IS NULL)""",
                f"""UPDATE alarms SET acked_at = {now}, acked_by = '{CONSOLE_ACTOR}',
                        note = 'merged into the open alarm of its kind and gate'
                    WHERE acked_at IS NULL
                      AND row_id > (SELECT MIN(a.row_id) FROM alarms AS a WHERE {same_group})""",
                "CREATE UNIQUE INDEX alarms_one_open ON alarms (kind, site, gate) WHERE acked_at IS NULL",
            ),
        ),
    ]


_COLUMNS = (
    "row_id, kind, site, gate, source, raised_at, event_time, event_id, detail, acked_at, acked_by, note,"
    " count, last_at, last_event_time, last_event_id"
)


def outage_of(state: str, status: dict[str, Any]) -> str | None:
    """Which outage a gate status reports: its boot and its will's time if ``offline``, else None.

    A gate writes its will before each connect (edge/link.py), so each lost connection
    has its own; a gate from before that, whose wills carry no time, has one per boot.
    """
    if state != "offline":
        return None
    return f"{status.get('boot')}@{status.get('time')}"


class AlarmBook:
    """The alarm rules applied to what the store receives, and the ``alarms`` table."""

    def __init__(self, db: Database, rules: AlarmRules | None = None) -> None:
        self.db = db
        self.rules = rules or AlarmRules()
        self.state = RuleState()
        db.migrate("alarms", _migrations(db.dialect))

    # -- raising ---------------------------------------------------------------------

    def observe_events(self, events: Iterable[EventLike]) -> list[Alarm]:
        """Apply every rule to ``events`` (in stored order); return the alarms newly raised."""
        events = list(events)
        drafts = [draft for event in events if (draft := evaluate(self.rules, self.state, event))]
        raised = self._raise(drafts)
        for event in events:
            if event.type == "reader.online" and isinstance(event.data, dict):
                self._readers_back(event)
        return raised

    def _readers_back(self, event: EventLike) -> None:
        """Close a gate's reader alarms once its own report says none of its readers is still out."""
        for kind, field_name in _READER_BACK.items():
            if event.data.get(field_name) == 0:
                self.clear(
                    kind,
                    event.site,
                    event.gate,
                    f"every reader answering again ({event.data.get('reader')} was the last, event {event.id})",
                )

    def observe_outage(
        self, site: str, gate: str, received_at: str, outage: str | None, *, previous: str | None
    ) -> list[Alarm]:
        """A gate status as stored: ``outage`` is the one it reports (:func:`outage_of`), ``previous``
        the one the console showed before it (``None``: the gate was not offline).

        An outage other than the one shown raises, named by the status's receipt time;
        the same one again is the broker re-sending the retained will.
        """
        if outage is None or outage == previous:
            return []
        draft = Draft(
            AlarmKind.GATE_OFFLINE, site, gate, f"{site}/{gate}@{received_at}", received_at, None, {}
        )
        return self._raise([draft])

    def observe_certificate(
        self, site: str, gate: str, received_at: str, status: str | dict[str, Any] | None
    ) -> list[Alarm]:
        """A gate status whose ``cert_not_after`` is within :data:`CERT_WARNING_DAYS` of its receipt.

        One alarm per certificate (the source names its expiry): every later status of the
        same certificate is the same alarm, and a renewed certificate starts afresh.
        """
        if isinstance(status, str):
            try:
                status = json.loads(status)
            except ValueError:
                return []
        expiry = status.get("cert_not_after") if isinstance(status, dict) else None
        if not isinstance(expiry, str):
            return []
        try:
            left = _time_value(expiry) - _time_value(received_at)
        except (ValueError, TypeError):
            return []
        if left > timedelta(days=CERT_WARNING_DAYS):
            return []
        detail = {"cert_not_after": expiry, "days_left": max(0, left.days)}
        source = f"{site}/{gate}@cert:{expiry}"
        return self._raise([Draft(AlarmKind.CERT_EXPIRING, site, gate, source, received_at, None, detail)])

    def _raise(self, drafts: Sequence[Draft]) -> list[Alarm]:
        """Count each draft into the open alarm of its kind and gate, or open one; return the
        alarms changed, newest state (an alarm counted twice in one call is returned once)."""
        if not drafts:
            return []
        for attempt in range(3):
            changed: dict[int, bool] = {}
            try:
                with self.db.transaction():  # one commit for a batch: a flood is thousands of drafts
                    for draft in drafts:
                        counted = self._count_once(draft)
                        if counted is not None:
                            row_id, opened = counted
                            changed[row_id] = changed.get(row_id, False) or opened
                return [
                    replace(alarm, opened=opened)
                    for row_id, opened in changed.items()
                    if (alarm := self.get(row_id)) is not None
                ]
            except IntegrityError:
                # another process opened the alarm of this kind and gate meanwhile: count into it
                if attempt == 2:
                    raise
        return []

    def _count_once(self, draft: Draft) -> tuple[int, bool] | None:
        kind = draft.kind.value
        if not self.db.execute(
            "INSERT INTO alarm_sources (kind, source, alarm_id) VALUES (?, ?, 0) ON CONFLICT (kind, source) DO NOTHING",
            (kind, draft.source),
        ):
            return None  # this occurrence was counted before
        now = now_text()
        rows = self.db.query(
            "UPDATE alarms SET count = count + ?, last_at = ?, last_event_time = ?, last_event_id = ?"
            " WHERE kind = ? AND site = ? AND gate = ? AND acked_at IS NULL RETURNING row_id",
            (draft.count, now, draft.event_time, draft.event_id, kind, draft.site, draft.gate),
        )
        opened = not rows
        if not rows:
            rows = self.db.query(
                "INSERT INTO alarms (kind, site, gate, source, raised_at, event_time, event_id, detail, count,"
                " last_at, last_event_time, last_event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, source) DO NOTHING RETURNING row_id",
                (
                    kind,
                    draft.site,
                    draft.gate,
                    draft.source,
                    now,
                    draft.event_time,
                    draft.event_id,
                    json.dumps(draft.detail, ensure_ascii=False),
                    draft.count,
                    now,
                    draft.event_time,
                    draft.event_id,
                ),
            )
            if not rows:  # an acknowledged alarm already carries this source as its first
                return None
        row_id = int(rows[0][0])
        self.db.execute(
            "UPDATE alarm_sources SET alarm_id = ? WHERE kind = ? AND source = ?",
            (row_id, kind, draft.source),
        )
        return row_id, opened

    def open_alarm(self, kind: AlarmKind, site: str, gate: str) -> Alarm | None:
        """The open alarm of ``kind`` at one gate, if there is one."""
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM alarms WHERE kind = ? AND site = ? AND gate = ? AND acked_at IS NULL",
            (kind.value, site, gate),
        )
        return _alarm(rows[0]) if rows else None

    def raise_or_update(
        self,
        kind: AlarmKind,
        site: str,
        gate: str,
        sources: Sequence[str],
        event_time: str,
        detail: dict[str, Any],
    ) -> tuple[Alarm, bool] | None:
        """A condition alarm (one per gate while it lasts, like ``seq.gap``), named by the
        ``sources`` of what is wrong now (a gap's discovery, say).

        With an alarm of ``kind`` open at the gate, record the sources and give it ``detail``.
        Without one, open one only if some source is new: what an operator already
        acknowledged does not come back, something new does.  Returns the alarm and whether
        it changed, or None.
        """
        with self.db.transaction():
            new = [
                source
                for source in sources
                if self.db.execute(
                    "INSERT INTO alarm_sources (kind, source, alarm_id) VALUES (?, ?, 0)"
                    " ON CONFLICT (kind, source) DO NOTHING",
                    (kind.value, source),
                )
            ]
            current = self.open_alarm(kind, site, gate)
            text = json.dumps(detail, ensure_ascii=False)
            if current is None:
                if not new:
                    return None
                now = now_text()
                (row,) = self.db.query(
                    "INSERT INTO alarms (kind, site, gate, source, raised_at, event_time, event_id, detail, count,"
                    " last_at, last_event_time, last_event_id) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, 1, ?, ?, NULL)"
                    " RETURNING row_id",
                    (kind.value, site, gate, new[0], now, event_time, text, now, event_time),
                )
                row_id, changed = int(row[0]), True
            else:
                row_id, changed = current.row_id, current.detail != detail
                if changed:
                    self.db.execute(
                        "UPDATE alarms SET detail = ?, last_at = ?, last_event_time = ? WHERE row_id = ?",
                        (text, now_text(), event_time, row_id),
                    )
            if new:
                marks = ", ".join("?" * len(new))
                self.db.execute(
                    f"UPDATE alarm_sources SET alarm_id = ? WHERE kind = ? AND source IN ({marks})",
                    (row_id, kind.value, *new),
                )
        alarm = self.get(row_id)
        assert alarm is not None
        return replace(alarm, opened=current is None), changed

    def clear(self, kind: AlarmKind, site: str, gate: str, note: str) -> Alarm | None:
        """Close the open alarm of ``kind`` at a gate because its condition ended; the console signs it."""
        current = self.open_alarm(kind, site, gate)
        if current is None:
            return None
        self.db.execute(
            "UPDATE alarms SET acked_at = ?, acked_by = ?, note = ? WHERE row_id = ? AND acked_at IS NULL",
            (now_text(), CONSOLE_ACTOR, note[:MAX_NOTE_CHARS], current.row_id),
        )
        return self.get(current.row_id)

    def raise_drafts(self, drafts: Sequence[Draft]) -> list[Alarm]:
        """Count drafts made outside the event rules (the watcher's integrity alarms)."""
        return self._raise(drafts)

    # -- reading and acknowledging ---------------------------------------------------

    def list(
        self, *, open_only: bool = False, before_row_id: int | None = None, limit: int = 100
    ) -> list[Alarm]:
        where: list[str] = []
        params: list[object] = []
        if open_only:
            where.append("acked_at IS NULL")
        if before_row_id is not None:
            where.append("row_id < ?")
            params.append(before_row_id)
        sql = f"SELECT {_COLUMNS} FROM alarms"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY row_id DESC LIMIT ?"
        params.append(max(1, min(limit, 1000)))
        return [_alarm(row) for row in self.db.query(sql, params)]

    def get(self, row_id: int) -> Alarm | None:
        rows = self.db.query(f"SELECT {_COLUMNS} FROM alarms WHERE row_id = ?", (row_id,))
        return _alarm(rows[0]) if rows else None

    def open_count(self) -> int:
        return int(self.db.query("SELECT COUNT(*) FROM alarms WHERE acked_at IS NULL")[0][0])

    def acknowledge(self, row_id: int, user: str, note: str) -> Alarm:
        note = note.strip()
        if not note:
            raise AlarmError("a note is required to acknowledge an alarm")
        if len(note) > MAX_NOTE_CHARS:
            raise AlarmError(f"the note is longer than {MAX_NOTE_CHARS} characters")
        changed = self.db.execute(
            "UPDATE alarms SET acked_at = ?, acked_by = ?, note = ? WHERE row_id = ? AND acked_at IS NULL",
            (now_text(), user, note, row_id),
        )
        alarm = self.get(row_id)
        if alarm is None:
            raise AlarmError(f"no alarm {row_id}")
        if not changed:
            raise AlarmError(f"alarm {row_id} was already acknowledged by {alarm.acked_by}")
        return alarm

    # -- where the watcher left off --------------------------------------------------

    def cursor(self, name: str = "events") -> int | None:
        rows = self.db.query("SELECT value FROM alarm_cursor WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    def set_cursor(self, value: int, name: str = "events") -> None:
        self.db.execute(
            "INSERT INTO alarm_cursor (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )


def _alarm(row: tuple) -> Alarm:
    (row_id, kind, site, gate, source, raised, event_time, event_id, detail, acked_at, acked_by, note) = row[
        :12
    ]
    count, last_at, last_event_time, last_event_id = row[12:]
    return Alarm(
        int(row_id),
        kind,
        site,
        gate,
        source,
        raised,
        event_time,
        event_id,
        json.loads(detail),
        acked_at,
        acked_by,
        note,
        int(count),
        last_at,
        last_event_time,
        last_event_id,
    )
