"""Alarms: the events an operator must look at, raised as events are stored and kept until acknowledged.

Rules (:func:`evaluate`) are pure functions of the stored events and gate statuses:

==========================  ==========================================================
kind                        raised when
==========================  ==========================================================
``door.forced``             a door opened while locked
``door.held_open``          a door stayed open past its limit
``door.tamper``             a reader or door housing was opened
``outbox.overflow``         a gate's outbox was full and refused events
``gate.offline``            a gate's status became ``offline`` (its last will: the link
                            died), from another state or from another outage
``access.denied_burst``     ``denials`` refused credentials at one gate within ``window_s``
                            of gate time (default 5 in 60 s: someone trying cards or codes)
``guard.pin_lockout``       wrong guard PINs paused a source's guard actions at a gate
``tls.cert_expiring``       a gate's status says its broker certificate expires within
                            ``CERT_WARNING_DAYS`` (30): renew it (``gatepost edge enroll
                            --renew``) before the broker refuses the gate
==========================  ==========================================================

Each alarm names its source (the event id, or the receipt time of the status that took
the gate offline) and the table refuses a second alarm for the same source, so
re-reading events after a restart, or two console processes reading the same store,
never doubles an alarm.  Nor does the broker re-sending a gate's retained ``offline`` at
every subscribe (each console restart or ingest reconnect): it names the outage the
console already showed.  A gate that came back and went away again while the console
was down sends a will naming a new one, and that raises.  Acknowledging takes an operator and a note,
and is audited by the caller.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from console.db import Database, Migration, format_time, now_text
from protocol import GatepostError

MAX_NOTE_CHARS = 500


class AlarmKind(StrEnum):
    DOOR_FORCED = "door.forced"
    DOOR_HELD_OPEN = "door.held_open"
    DOOR_TAMPER = "door.tamper"
    OUTBOX_OVERFLOW = "outbox.overflow"
    GATE_OFFLINE = "gate.offline"
    DENIED_BURST = "access.denied_burst"
    GUARD_PIN_LOCKOUT = "guard.pin_lockout"
    CERT_EXPIRING = "tls.cert_expiring"


CERT_WARNING_DAYS = 30
"""Renewal needs the office to sign a request, so a month leaves time for a site visit."""


_EVENT_ALARMS = {
    "door.forced": AlarmKind.DOOR_FORCED,
    "door.held_open": AlarmKind.DOOR_HELD_OPEN,
    "door.tamper": AlarmKind.DOOR_TAMPER,
    "outbox.overflow": AlarmKind.OUTBOX_OVERFLOW,
    "guard.pin_lockout": AlarmKind.GUARD_PIN_LOCKOUT,
}


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

    @property
    def open(self) -> bool:
        return self.acked_at is None

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
        detail = {key: data[key] for key in ("open_for_s", "dropped", "reader") if key in data}
        return Draft(kind, event.site, event.gate, event.id, _time_text(event.time), event.id, detail)
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


def _migrations() -> list[Migration]:
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
        )
    ]


_COLUMNS = (
    "row_id, kind, site, gate, source, raised_at, event_time, event_id, detail, acked_at, acked_by, note"
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
        db.migrate("alarms", _migrations())

    # -- raising ---------------------------------------------------------------------

    def observe_events(self, events: Iterable[EventLike]) -> list[Alarm]:
        """Apply every rule to ``events`` (in stored order); return the alarms newly raised."""
        drafts = [draft for event in events if (draft := evaluate(self.rules, self.state, event))]
        return self._raise(drafts)

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
        raised: list[Alarm] = []
        for draft in drafts:
            now = now_text()
            detail = json.dumps(draft.detail, ensure_ascii=False)
            inserted = self.db.execute(
                "INSERT INTO alarms (kind, site, gate, source, raised_at, event_time, event_id, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, source) DO NOTHING",
                (
                    draft.kind.value,
                    draft.site,
                    draft.gate,
                    draft.source,
                    now,
                    draft.event_time,
                    draft.event_id,
                    detail,
                ),
            )
            if inserted:
                rows = self.db.query(
                    f"SELECT {_COLUMNS} FROM alarms WHERE kind = ? AND source = ?",
                    (draft.kind.value, draft.source),
                )
                raised.extend(_alarm(row) for row in rows)
        return raised

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
    row_id, kind, site, gate, source, raised, event_time, event_id, detail, acked_at, acked_by, note = row
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
    )
