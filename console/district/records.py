"""The record the district receives: one stored event (or one hour of flow), versioned, filtered.

The district's platform is another organisation's software, so the record is a contract
of its own, not the console's table: :data:`SCHEMA_VERSION` numbers it, and
docs/district-record.schema.json (JSON Schema 2020-12) describes it.  A change that
removes or retypes a field is a new version; adding an optional field is not.

Every record carries the event's ``id``, the id the gate gave it, so that the district can
drop the repeats an at-least-once feed sends (after a broker or console restart), and the
console's ``cursor`` (its ingest order), so that a puller can resume after it.

Privacy is applied here and only here, so the push feed and the pull API cannot disagree:
the fields a site lists are removed from ``data`` before the record exists, and the
record says which (``dropped``) so the district can tell "not sent" from "not known".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

from console.district.config import PrivacyConfig, Subset
from console.store import ACCESS_TYPES, EventFlag, FlowRow, StoredEvent
from protocol.duty import DUTY_CHECK_IN, DUTY_CHECK_OUT, DUTY_REFUSED, PATROL_CHECKIN

__all__ = [
    "ACCESS_EVENT_TYPES",
    "ALARM_EVENT_TYPES",
    "ATTENDANCE_EVENT_TYPES",
    "PATROL_EVENT_TYPES",
    "SCHEMA_VERSION",
    "encode",
    "event_record",
    "flow_record",
    "selector",
]

SCHEMA_VERSION = 1

ACCESS_EVENT_TYPES = frozenset(
    {*ACCESS_TYPES, "access.manual", "door.card_rejected", "visitor.registered", "guard.pin_rejected"}
)
"""Decisions about a person at a gate: the ``access`` subset."""
ALARM_EVENT_TYPES = frozenset(
    {
        "door.forced",
        "door.held_open",
        "door.held_open_warning",
        "door.fire_alarm",
        "door.fire_alarm_cleared",
        "door.tamper",
        "door.tamper_cleared",
        "door.relay_watchdog",
    }
)
"""What a door reports that a guard must act on: the ``alarms`` subset."""
ATTENDANCE_EVENT_TYPES = frozenset({DUTY_CHECK_IN, DUTY_CHECK_OUT, DUTY_REFUSED})
"""Staff coming on and going off duty at their posts: the ``attendance`` subset."""
PATROL_EVENT_TYPES = frozenset({PATROL_CHECKIN})
"""Patrol station check-ins: the ``patrols`` subset."""

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_FLAG_NAMES = tuple((int(flag), flag.name.lower()) for flag in EventFlag if flag.name)


def flag_names(flags: int) -> list[str]:
    """Plain ints, not :class:`EventFlag` arithmetic: that cost 60 µs a record, most of an API page."""
    if not flags:
        return []
    return [name for bit, name in _FLAG_NAMES if flags & bit]


def event_record(event: StoredEvent, console: str, dropped: Collection[str]) -> dict[str, Any]:
    """The district's record of one stored event, with the ``dropped`` data fields removed."""
    data = event.data
    removed = sorted(key for key in dropped if key in data) if dropped else []
    if removed:
        data = {key: value for key, value in data.items() if key not in dropped}
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "event",
        "id": event.id,
        "cursor": event.row_id,
        "console": console,
        "site": event.site,
        "gate": event.gate,
        "boot": event.boot,
        "seq": event.seq,
        "time": event.time,
        "clock_trusted": event.clock_trusted,
        "received_at": event.received_at,
        "type": event.type,
        "flags": flag_names(event.flags),
        "data": data,
        "dropped": removed,
    }


def flow_record(row: FlowRow, console: str, events: int | None = None) -> dict[str, Any]:
    """One hour of one gate's flow (``gate`` ``*``: the site's sum), as ``flow_hourly`` holds it now.

    Its ``id`` names the hour, not a version: a late event changes an hour already sent,
    and the district keeps the record of an id with the highest ``events`` count.
    """
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "flow",
        "id": f"flow:{console}:{row.site}:{row.gate}:{row.hour}",
        "console": console,
        "site": row.site,
        "gate": row.gate,
        "hour": row.hour,
        "entries": row.entries,
        "exits": row.exits,
        "denied": row.denied,
    }
    if events is not None:
        record["events"] = events
    return record


def selector(select: Collection[Subset], sites: Collection[str] | None) -> Callable[[StoredEvent], bool]:
    """Whether the feed forwards an event: its subset and its site."""
    everything = Subset.ALL in select
    types: set[str] = set()
    if Subset.ACCESS in select:
        types |= ACCESS_EVENT_TYPES
    if Subset.ALARMS in select:
        types |= ALARM_EVENT_TYPES
    if Subset.ATTENDANCE in select:
        types |= ATTENDANCE_EVENT_TYPES
    if Subset.PATROLS in select:
        types |= PATROL_EVENT_TYPES
    site_set = frozenset(sites) if sites is not None else None

    def wanted(event: StoredEvent) -> bool:
        if site_set is not None and event.site not in site_set:
            return False
        return everything or event.type in types

    return wanted


class Privacy:
    """The dropped fields of each site, worked out once per site (the feed asks per event)."""

    def __init__(self, config: PrivacyConfig) -> None:
        self.config = config
        self._cache: dict[str, frozenset[str]] = {}

    def dropped(self, site: str) -> frozenset[str]:
        found = self._cache.get(site)
        if found is None:
            found = self._cache[site] = self.config.dropped(site)
        return found

    def record(self, event: StoredEvent, console: str) -> dict[str, Any]:
        return event_record(event, console, self.dropped(event.site))


def encode(record: dict[str, Any]) -> bytes:
    return _encode(record).encode("utf-8")
