"""Rounds: which check-in stands for which round's station, and what a round calls for at a moment.

Everything here is a pure function of a route, the day's round starts, the check-ins and
``now``, so the page, the print, the exports and the alarm watcher all read a round the
same way, and the property tests (tests/console/patrols/) can hold it to its promises:
on-time check-ins never raise an alarm; a station left out raises exactly one
``patrol.missed`` (and one ``patrol.late``).

**Windows.**  Station *i* of the round starting at *s* is expected at ``s + offset``; a
check-in there counts from ``tolerance`` minutes before that (a guard a little early is
on time) until the round ends (``s + every``).  Up to ``expected + tolerance`` it is on
time; after, late by the minutes since ``expected``.  A check-in that could fill two
stations fills the one whose expected time is nearest (ties: the earlier); one that
fills none (a second tap, a station walked outside any window) is listed as *extra* in
the round whose time it falls in.

**Alarms.**  ``patrol.late`` once ``now`` passes ``expected + tolerance`` with no
check-in by then (raised then; the check-in, if it comes later, is marked late);
``patrol.missed`` once the round has ended with no check-in at all.  Each names its
round station as its source (``patrol:<route>:<round start>:<station>``), and the alarm
book counts a source once, so re-evaluating a round any number of times, from any
number of console processes, raises each alarm once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from console.alarms import AlarmKind, Draft
from console.db import format_time
from console.patrols.model import Route, Station


@dataclass(frozen=True, slots=True)
class CheckIn:
    """One ``patrol.checkin`` as the console matches it.

    ``at`` is the gate's time when the gate trusted its clock, else the console's receipt
    time (``trusted`` False): a receipt is never earlier than the check-in, so an
    untrusted clock can make a station look late, never hide a late or missed one.
    """

    event_id: str
    site: str
    gate: str
    reader: str
    person: str
    name: str
    at: datetime
    trusted: bool = True


class StationState(StrEnum):
    ON_TIME = "on_time"
    LATE = "late"
    MISSED = "missed"
    OVERDUE = "overdue"
    """Past its deadline, no check-in yet, the round not over: the late alarm is raised."""
    WAITING = "waiting"
    """Not yet due."""


@dataclass(frozen=True, slots=True)
class StationResult:
    index: int
    station: Station
    expected: datetime
    deadline: datetime
    check: CheckIn | None
    state: StationState

    @property
    def late_min(self) -> int:
        """Whole minutes after the expected time, for a late check-in (rounded up); else 0."""
        if self.check is None or self.state is not StationState.LATE:
            return 0
        return math.ceil((self.check.at - self.expected).total_seconds() / 60)


@dataclass(frozen=True, slots=True)
class RoundRecord:
    route: Route
    start: datetime
    """UTC."""
    end: datetime
    local_start: datetime
    stations: tuple[StationResult, ...]
    extras: tuple[CheckIn, ...]

    @property
    def id(self) -> str:
        return round_id(self.route.id, self.local_start)

    @property
    def done(self) -> bool:
        return all(
            s.state in (StationState.ON_TIME, StationState.LATE, StationState.MISSED) for s in self.stations
        )

    def counts(self) -> dict[str, int]:
        out = {state.value: 0 for state in StationState}
        for s in self.stations:
            out[s.state.value] += 1
        return out


def round_id(route_id: int, local_start: datetime) -> str:
    """``<route id>-<local start YYYYMMDDTHHMM>``: a round's address on the pages."""
    return f"{route_id}-{local_start:%Y%m%dT%H%M}"


def parse_round_id(text: str) -> tuple[int, datetime] | None:
    """``(route id, naive local start)`` from :func:`round_id`, or None."""
    head, sep, tail = text.partition("-")
    if not sep or not head.isdigit() or len(head) > 12 or len(tail) != 13:
        return None
    try:
        return int(head), datetime.strptime(tail, "%Y%m%dT%H%M")
    except ValueError:
        return None


def _state(check: CheckIn | None, deadline: datetime, end: datetime, now: datetime) -> StationState:
    if check is not None:
        return StationState.ON_TIME if check.at <= deadline else StationState.LATE
    if now >= end:
        return StationState.MISSED
    if now >= deadline:
        return StationState.OVERDUE
    return StationState.WAITING


def match_rounds(
    route: Route, starts: list[datetime], checkins: list[CheckIn], now: datetime, zone: ZoneInfo
) -> list[RoundRecord]:
    """The record of each round starting at ``starts`` (aware), given every check-in that may belong to them."""
    starts = sorted(s.astimezone(UTC) for s in starts)
    length = route.round_length
    slots: dict[tuple[int, int], CheckIn] = {}
    expected = {
        (k, i): start + timedelta(minutes=station.offset_min)
        for k, start in enumerate(starts)
        for i, station in enumerate(route.stations)
    }
    extras: list[CheckIn] = []
    for check in sorted(checkins, key=lambda c: (c.at, c.event_id)):
        if check.site != route.site:
            continue
        candidates = [
            (abs((check.at - expected[k, i]).total_seconds()), k, i)
            for k, start in enumerate(starts)
            for i, station in enumerate(route.stations)
            if (k, i) not in slots
            and station.takes(check.gate, check.reader)
            and expected[k, i] - timedelta(minutes=station.tolerance_min) <= check.at < start + length
        ]
        if candidates:
            _, k, i = min(candidates)
            slots[k, i] = check
        elif any(s.takes(check.gate, check.reader) for s in route.stations):
            extras.append(check)
    records = []
    for k, start in enumerate(starts):
        end = start + length
        results = []
        for i, station in enumerate(route.stations):
            deadline = expected[k, i] + timedelta(minutes=station.tolerance_min)
            check = slots.get((k, i))
            results.append(
                StationResult(i, station, expected[k, i], deadline, check, _state(check, deadline, end, now))
            )
        records.append(
            RoundRecord(
                route,
                start,
                end,
                start.astimezone(zone),
                tuple(results),
                tuple(c for c in extras if start <= c.at < end),
            )
        )
    return records


def alarm_drafts(record: RoundRecord, now: datetime) -> list[Draft]:
    """The alarms this round calls for at ``now``: at most one ``patrol.late`` and one ``patrol.missed`` a station."""
    drafts: list[Draft] = []
    route = record.route
    for result in record.stations:
        late = now >= result.deadline and (result.check is None or result.check.at > result.deadline)
        missed = now >= record.end and result.check is None
        for kind, due, when in (
            (AlarmKind.PATROL_LATE, late, result.deadline),
            (AlarmKind.PATROL_MISSED, missed, record.end),
        ):
            if not due:
                continue
            detail: dict[str, Any] = {
                "route": route.name,
                "round": record.id,
                "station": result.index + 1,
                "expected": f"{result.expected.astimezone(record.local_start.tzinfo):%H:%M}",
            }
            if result.station.reader is not None:
                detail["reader"] = result.station.reader
            drafts.append(
                Draft(
                    kind,
                    route.site,
                    result.station.gate,
                    f"patrol:{route.id}:{format_time(record.start)}:{result.index}",
                    format_time(when),
                    None,
                    detail,
                )
            )
    return drafts
