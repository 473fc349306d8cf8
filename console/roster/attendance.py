"""Attendance against the roster: who was rostered at each post and hour, and who checked in.

**Derived by query, not kept in a table of its own.**  The gates' ``duty.check_in`` and
``duty.check_out`` events (protocol/duty.py) are stored by the ingest like every other
event, once per event id (``events.id`` is unique: a resent event is a duplicate and is
not stored again).  Attendance is read from those rows whenever it is asked for, so it is
exactly once by construction: there is no second copy that a crash between two writes
could leave out of step with the events, and nothing to replay after a restore.  The
price is a query over a day's duty events per page (indexed by type and time: hundreds of
rows for a compound, not millions).

Roster hours are site-local (``[flow] timezone``; ``console.roster.model``: hour 0 is
Monday 00:00 of the roster's week), events are UTC; everything here is turned into UTC
intervals first, so a shift across midnight or across the end of a week is one span.

A person's time on duty at a post runs from a check-in at that gate to the next check-out
there; a second check-in while on duty changes nothing (a card presented twice), a
check-out without a check-in is listed but covers no time.  Someone still on duty at the
end of what is read is on duty until then.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from console.roster.plan import week_start
from console.roster.store import RosterStore
from console.store import EventStore, StoredEvent
from protocol.duty import DUTY_CHECK_IN, DUTY_CHECK_OUT

LATE_AFTER: Final = timedelta(minutes=5)
"""A check-in this long after the shift began is late (a few minutes to walk from the gate's reader)."""
LOOKBACK: Final = timedelta(hours=24)
"""How far before a day check-ins are read, so a night shift begun yesterday counts today."""
MAX_EVENTS: Final = 100_000
"""Duty events read for one report at most: a compound makes hundreds a day."""


@dataclass(frozen=True, slots=True)
class RosterSpan:
    """One rostered shift as UTC times: ``start`` inclusive, ``end`` exclusive."""

    person: str
    post: str
    start: datetime
    end: datetime


@dataclass(slots=True)
class OnDuty:
    """A person's time on duty at a post, from their check-in to their check-out (``None``: still on)."""

    person: str
    name: str
    post: str
    start: datetime
    method: str
    end: datetime | None = None
    end_method: str | None = None

    def overlaps(self, start: datetime, end: datetime, now: datetime) -> bool:
        return self.start < end and (self.end or now) > start


@dataclass(frozen=True, slots=True)
class ShiftAttendance:
    """One rostered shift and how it was kept: ``status`` is ``on_time``, ``late``, ``no_show`` or ``upcoming``."""

    span: RosterSpan
    name: str
    status: str
    checked_in: datetime | None
    late_minutes: int = 0
    duty: OnDuty | None = None
    """The first time on duty at this post overlapping the shift (its check-out, methods)."""


@dataclass(slots=True)
class HourRow:
    """One post's hour: who was rostered, who was on duty (name, check-in time, method)."""

    start: datetime
    rostered: list[str] = field(default_factory=list)
    present: list[OnDuty] = field(default_factory=list)

    @property
    def short(self) -> int:
        return max(0, len(self.rostered) - len(self.present))


@dataclass(slots=True)
class PostDay:
    post: str
    hours: list[HourRow]
    shifts: list[ShiftAttendance]
    unrostered: list[OnDuty]
    """Time on duty here by someone not rostered here that day."""


def local_moment(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """``hour`` (may exceed 23) after local midnight of ``day``, as UTC."""
    return datetime.combine(day + timedelta(days=hour // 24), time(hour % 24), tzinfo=zone).astimezone(UTC)


def roster_spans(store: RosterStore, start: datetime, end: datetime, zone: ZoneInfo) -> list[RosterSpan]:
    """Every stored shift overlapping ``[start, end)`` (UTC), from every week it may come from."""
    first = week_start(start.astimezone(zone).date()) - timedelta(days=7)  # a Sunday night shift runs on
    last = week_start(end.astimezone(zone).date())
    spans: list[RosterSpan] = []
    week = first
    while week <= last:
        for shift in store.week_shifts(week):
            begin = local_moment(week, shift.start_hour, zone)
            finish = local_moment(week, shift.start_hour + shift.hours, zone)
            if begin < end and finish > start:
                spans.append(RosterSpan(shift.person, shift.post, begin, finish))
        week += timedelta(days=7)
    return sorted(spans, key=lambda s: (s.post, s.start, s.person))


def duty_events(events: EventStore, start: datetime, end: datetime) -> list[StoredEvent]:
    """``duty.check_in`` / ``duty.check_out`` events dated in ``[start, end)``, oldest first."""
    found: list[StoredEvent] = []
    before: int | None = None
    while len(found) < MAX_EVENTS:
        page = events.search(type="duty.check_*", start=start, end=end, before_row_id=before, limit=5000)
        found.extend(page)
        if len(page) < 5000:
            break
        before = page[-1].row_id
    return sorted(found, key=lambda e: (e.time, e.row_id))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def on_duty(events: Iterable[StoredEvent]) -> list[OnDuty]:
    """Times on duty from check-in and check-out events in time order (see the module's rules)."""
    open_: dict[tuple[str, str], OnDuty] = {}
    done: list[OnDuty] = []
    for event in events:
        data: dict[str, Any] = event.data
        person = data.get("person")
        if not isinstance(person, str) or not person:
            continue  # the gate validated it; a row without one is not attendance
        post = f"{event.site}/{event.gate}"
        key = (person, post)
        if event.type == DUTY_CHECK_IN:
            if key not in open_:
                open_[key] = OnDuty(
                    person, str(data.get("name") or ""), post, _time(event.time), str(data.get("method", ""))
                )
        elif event.type == DUTY_CHECK_OUT:
            current = open_.pop(key, None)
            if current is not None:
                current.end = _time(event.time)
                current.end_method = str(data.get("method", ""))
                done.append(current)
    return sorted([*done, *open_.values()], key=lambda d: (d.post, d.start, d.person))


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return local_moment(day, 0, zone), local_moment(day, 24, zone)


def report(
    events: EventStore,
    roster: RosterStore,
    day: date,
    zone: ZoneInfo,
    *,
    now: datetime | None = None,
    visible: Callable[[str], bool] | None = None,
) -> list[PostDay]:
    """Per post, the day's hours (rostered against on duty) and each shift's keeping.

    ``visible(post) -> bool`` limits the report to the posts a user may see.  Posts with
    neither a shift nor a check-in that day are left out.
    """
    now = now or datetime.now(UTC)
    start, end = day_bounds(day, zone)
    spans = roster_spans(roster, start, end, zone)
    duty = [d for d in on_duty(duty_events(events, start - LOOKBACK, end)) if d.overlaps(start, end, now)]
    if visible is not None:
        spans = [s for s in spans if visible(s.post)]
        duty = [d for d in duty if visible(d.post)]
    names = {p.id: p.name for p in roster.people(active_only=False)}
    posts = sorted({s.post for s in spans} | {d.post for d in duty})
    out: list[PostDay] = []
    for post in posts:
        post_spans = [s for s in spans if s.post == post]
        post_duty = [d for d in duty if d.post == post]
        hours: list[HourRow] = []
        hour_start = start
        while hour_start < end:
            hour_end = min(end, hour_start + timedelta(hours=1))
            row = HourRow(hour_start)
            row.rostered = sorted({s.person for s in post_spans if s.start < hour_end and s.end > hour_start})
            row.present = [d for d in post_duty if d.overlaps(hour_start, hour_end, now)]
            hours.append(row)
            hour_start = hour_end
        shifts = [_keeping(span, post_duty, names.get(span.person, ""), now) for span in post_spans]
        rostered_people = {s.person for s in post_spans}
        unrostered = [d for d in post_duty if d.person not in rostered_people]
        out.append(PostDay(post, hours, shifts, unrostered))
    return out


def _keeping(span: RosterSpan, duty: Sequence[OnDuty], name: str, now: datetime) -> ShiftAttendance:
    mine = [d for d in duty if d.person == span.person and d.overlaps(span.start, span.end, now)]
    if mine:
        duty = min(mine, key=lambda d: d.start)
        first = duty.start
        late = first - span.start
        if late > LATE_AFTER:
            return ShiftAttendance(span, name, "late", first, int(late.total_seconds() // 60), duty)
        return ShiftAttendance(span, name, "on_time", first, 0, duty)
    if now < span.start + LATE_AFTER:
        return ShiftAttendance(span, name, "upcoming", None)
    return ShiftAttendance(span, name, "no_show", None)


EXPORT_COLUMNS: Final = (
    "date",
    "post",
    "person",
    "name",
    "rostered_from",
    "rostered_until",
    "status",
    "checked_in",
    "late_minutes",
    "on_duty_from",
    "on_duty_until",
    "method",
    "method_out",
)


def export_rows(posts: Sequence[PostDay], day: date, zone: ZoneInfo) -> list[list[object]]:
    """One row per rostered shift, then one per time on duty by someone not rostered there (status ``unrostered``).

    Times are site-local ISO 8601 with their offset, so a spreadsheet reads the clock the
    guard saw and a program can still compare them.
    """

    def local(value: datetime | None) -> str:
        return value.astimezone(zone).isoformat(timespec="seconds") if value is not None else ""

    rows: list[list[object]] = []
    for post in posts:
        for shift in post.shifts:
            span = shift.span
            rows.append(
                [
                    day.isoformat(),
                    post.post,
                    span.person,
                    shift.name,
                    local(span.start),
                    local(span.end),
                    shift.status,
                    local(shift.checked_in),
                    shift.late_minutes,
                    local(shift.duty.start) if shift.duty else "",
                    local(shift.duty.end) if shift.duty else "",
                    shift.duty.method if shift.duty else "",
                    (shift.duty.end_method or "") if shift.duty else "",
                ]
            )
        for duty in post.unrostered:
            rows.append(
                [
                    day.isoformat(),
                    post.post,
                    duty.person,
                    duty.name,
                    "",
                    "",
                    "unrostered",
                    local(duty.start),
                    0,
                    local(duty.start),
                    local(duty.end),
                    duty.method,
                    duty.end_method or "",
                ]
            )
    return rows


def present_now(events: EventStore, now: datetime, posts: Iterable[str]) -> dict[str, set[str]]:
    """``post -> people on duty there at now`` for the given posts (check-ins of the last day)."""
    wanted = set(posts)
    present: dict[str, set[str]] = defaultdict(set)
    for duty in on_duty(duty_events(events, now - LOOKBACK, now + timedelta(seconds=1))):
        if duty.post in wanted and duty.end is None:
            present[duty.post].add(duty.person)
    return {post: present.get(post, set()) for post in wanted}
