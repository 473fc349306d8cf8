"""Flow at the checkpoints, and the staffing it calls for.

In 2020 the communities of Longtan set their guard rosters from their checkpoints' flow
data: one or two more guards for the evening return (18:00–19:30), one fewer once it
had passed (20:00–21:00).  This module turns the console's stored decisions into that
kind of advice, so an operator reads "add 1 guard 18:00–19:30 at north (peak 310/h)"
instead of guessing from a chart.

Counting (the same rule as the store's hourly rollup): an ``access.scan`` that was
granted, or a ``door.access_granted``, is an *entry* unless ``data.direction`` is
``"out"`` (then an *exit*); a refused ``access.scan`` or a ``door.access_denied`` is
*denied*.  A post's **load** is all three: each is a person a guard deals with.

Staffing, per post (gate) and time slot of the day (30 minutes by default, because the
evening peak is 18:00–19:30, not a whole number of hours):

1. take the last ``days`` days of the same kind (weekdays, or weekends) before the day
   asked about; a day on which the post recorded nothing at all is left out (a gate
   that was down says nothing about how many people came);
2. for each slot, the ``percentile``-th percentile of the load over those days, as a
   rate per hour — a percentile rather than the maximum, so that one odd day (a
   festival, a broken reader making people scan five times) does not set the roster;
3. guards = ``max(min_guards, ceil(rate / capacity_per_guard))``;
4. consecutive slots that differ from ``baseline_guards`` by the same amount become one
   piece of advice, with the window and its peak (or, for fewer guards, its highest) rate.

Peaks (marked on the charts): within one series (a post's day, or a month of daily
totals) every bar whose load is at least ``peak_fraction`` (80 %) of the series' maximum.
A relative rule, because "busy" means something else at a side door than at the main
gate; an all-zero series has no peak.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from console.config import FlowConfig

GRANT_TYPES = ("access.scan", "door.access_granted")
DENY_TYPES = ("door.access_denied",)
MINUTES_PER_DAY = 1440
ALLOWED_BUCKETS = (15, 30, 60)
"""Slot lengths that divide an hour, so slots of a local day line up with stored UTC times
in every time zone whose offset is a whole number of quarter hours (all of them today)."""


class DayKind(StrEnum):
    """Days whose flow is alike: a weekday roster is not a weekend roster."""

    WEEKDAY = "weekday"
    WEEKEND = "weekend"

    @classmethod
    def of(cls, day: date) -> DayKind:
        return cls.WEEKEND if day.weekday() >= 5 else cls.WEEKDAY


@dataclass(frozen=True, slots=True)
class FlowBucket:
    """What one post saw in one slot of time (``start`` is UTC, ``minutes`` long)."""

    site: str
    gate: str
    start: datetime
    minutes: int
    entries: int = 0
    exits: int = 0
    denied: int = 0

    @property
    def load(self) -> int:
        return self.entries + self.exits + self.denied

    @property
    def rate(self) -> float:
        """Persons per hour, whatever the slot length, so half-hours and hours compare."""
        return self.load * 60 / self.minutes


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """The ``[flow]`` section of the console's configuration, as plain values."""

    timezone: str = "Asia/Shanghai"
    capacity_per_guard: int = 120
    min_guards: int = 1
    baseline_guards: int = 1
    percentile: float = 80.0
    days: int = 20
    bucket_minutes: int = 30
    peak_fraction: float = 0.8

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_config(cls, config: FlowConfig | None) -> FlowSettings:
        if config is None:
            return cls()
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


class QueryDatabase(Protocol):
    """What :func:`events_buckets` needs of :class:`console.db.Database`."""

    dialect: str

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


# -- reading the store ------------------------------------------------------------------------


def _time_text(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _json_field(dialect: str, name: str) -> str:
    if dialect == "postgresql":
        return f"(data::jsonb ->> '{name}')"
    return f"json_extract(data, '$.{name}')"


def events_buckets(
    db: QueryDatabase,
    *,
    start: datetime,
    end: datetime,
    site: str | None = None,
    gate: str | None = None,
    minutes: int = 30,
) -> list[FlowBucket]:
    """Count entries, exits and denials per post and slot straight from the ``events`` table.

    The store's hourly rollup cannot say 18:00–19:30; this can, for as far back as events
    are kept.  Slots with nothing in them are simply absent.
    """
    if minutes not in ALLOWED_BUCKETS:
        raise ValueError(f"bucket of {minutes} minutes; use one of {ALLOWED_BUCKETS}")
    granted = _json_field(db.dialect, "granted")
    direction = _json_field(db.dialect, "direction")
    if db.dialect == "postgresql":
        is_granted = f"(type = 'door.access_granted' OR {granted} = 'true')"
    else:
        is_granted = f"(type = 'door.access_granted' OR {granted} = 1)"
    is_out = f"coalesce({direction}, '') = 'out'"
    where = ["time >= ?", "time < ?", f"type IN ({', '.join('?' * len(GRANT_TYPES + DENY_TYPES))})"]
    params: list[Any] = [_time_text(start), _time_text(end), *GRANT_TYPES, *DENY_TYPES]
    if site is not None:
        where.append("site = ?")
        params.append(site)
    if gate is not None:
        where.append("gate = ?")
        params.append(gate)
    sql = f"""
        SELECT site, gate, substr(time, 1, 13) AS hour,
               CAST(substr(time, 15, 2) AS INTEGER) / {minutes} AS part,
               SUM(CASE WHEN {is_granted} AND NOT {is_out} THEN 1 ELSE 0 END),
               SUM(CASE WHEN {is_granted} AND {is_out} THEN 1 ELSE 0 END),
               SUM(CASE WHEN {is_granted} THEN 0 ELSE 1 END)
        FROM events WHERE {" AND ".join(where)}
        GROUP BY site, gate, substr(time, 1, 13), CAST(substr(time, 15, 2) AS INTEGER) / {minutes}
        ORDER BY 3, 4, 1, 2"""
    buckets = []
    for site_, gate_, hour, part, entries, exits, denied in db.query(sql, params):
        slot = datetime.fromisoformat(f"{hour}:00:00+00:00") + timedelta(minutes=int(part) * minutes)
        buckets.append(FlowBucket(site_, gate_, slot, minutes, int(entries), int(exits), int(denied)))
    return buckets


def rows_to_buckets(rows: Iterable[Any], minutes: int = 60) -> list[FlowBucket]:
    """The store's ``FlowRow(site, gate, hour, entries, exits, denied)`` as buckets.

    ``hour`` may be a datetime or ISO text (with ``Z``); both are accepted so this keeps
    working whichever the store settles on.
    """
    buckets = []
    for row in rows:
        hour = row.hour
        if isinstance(hour, str):
            hour = datetime.fromisoformat(hour.replace("Z", "+00:00"))
            if hour.tzinfo is None:
                hour = hour.replace(tzinfo=UTC)
        buckets.append(FlowBucket(row.site, row.gate, hour, minutes, row.entries, row.exits, row.denied))
    return buckets


def load_buckets(
    store: Any,
    db: QueryDatabase | None,
    *,
    start: datetime,
    end: datetime,
    site: str | None = None,
    gate: str | None = None,
    minutes: int = 30,
) -> list[FlowBucket]:
    """Hourly from the store's rollup when it has one (fast, survives retention), else from events."""
    rollup = getattr(store, "flow", None)
    if minutes == 60 and callable(rollup):
        return rows_to_buckets(rollup(site, gate, start, end), 60)
    if db is None:
        db = getattr(store, "db", None)
    if db is None:
        raise ValueError("no database to read flow from")
    return events_buckets(db, start=start, end=end, site=site, gate=gate, minutes=minutes)


# -- shaping ------------------------------------------------------------------------------------


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """A local day as a UTC interval (23 or 25 hours long on a DST change)."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def slot_of(moment: datetime, zone: ZoneInfo, minutes: int) -> tuple[date, int]:
    """(local day, slot index in that day).  A DST repeated hour folds into one slot."""
    local = moment.astimezone(zone)
    return local.date(), (local.hour * 60 + local.minute) // minutes


def slot_label(index: int, minutes: int) -> str:
    """``18:00`` for the slot that starts then; the end of the last slot reads ``24:00``."""
    total = index * minutes
    return f"{total // 60:02d}:{total % 60:02d}"


def rebucket(buckets: Iterable[FlowBucket], minutes: int) -> list[FlowBucket]:
    """Coarser slots (30 → 60 minutes) by adding up; the result is ordered by time, post."""
    sums: dict[tuple[str, str, datetime], list[int]] = defaultdict(lambda: [0, 0, 0])
    for b in buckets:
        if minutes < b.minutes or minutes % b.minutes:
            raise ValueError(f"cannot turn {b.minutes}-minute slots into {minutes}-minute ones")
        start = b.start - timedelta(minutes=(b.start.hour * 60 + b.start.minute) % minutes)
        total = sums[(b.site, b.gate, start)]
        total[0] += b.entries
        total[1] += b.exits
        total[2] += b.denied
    return [
        FlowBucket(site, gate, start, minutes, *counts)
        for (site, gate, start), counts in sorted(sums.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1]))
    ]


@dataclass(frozen=True, slots=True)
class Slot:
    """One bar of a day chart: a slot of a local day at one post (or all posts added up)."""

    index: int
    minutes: int
    entries: int = 0
    exits: int = 0
    denied: int = 0
    peak: bool = False

    @property
    def load(self) -> int:
        return self.entries + self.exits + self.denied

    @property
    def rate(self) -> float:
        return self.load * 60 / self.minutes

    @property
    def label(self) -> str:
        return slot_label(self.index, self.minutes)


def peak_indices(values: Sequence[float], fraction: float = 0.8) -> set[int]:
    """Indices of the values within ``fraction`` of the maximum; none when everything is zero."""
    top = max(values, default=0)
    if top <= 0:
        return set()
    return {i for i, v in enumerate(values) if v >= fraction * top}


def post_key(site: str, gate: str) -> str:
    """How a post is named to people and in URLs: ``longtan/north``."""
    return f"{site}/{gate}"


def day_series(
    buckets: Iterable[FlowBucket], day: date, zone: ZoneInfo, minutes: int, fraction: float = 0.8
) -> dict[str, list[Slot]]:
    """Per post, every slot of ``day`` (zeros included), peaks marked."""
    per_post: dict[str, list[list[int]]] = {}
    count = MINUTES_PER_DAY // minutes
    for b in buckets:
        local_day, index = slot_of(b.start, zone, minutes)
        if local_day != day:
            continue
        slots = per_post.setdefault(post_key(b.site, b.gate), [[0, 0, 0] for _ in range(count)])
        slots[index][0] += b.entries
        slots[index][1] += b.exits
        slots[index][2] += b.denied
    result = {}
    for key, slots in sorted(per_post.items()):
        peaks = peak_indices([sum(s) for s in slots], fraction)
        result[key] = [Slot(i, minutes, *s, peak=i in peaks) for i, s in enumerate(slots)]
    return result


@dataclass(frozen=True, slots=True)
class DayTotal:
    """One bar of a month chart."""

    day: date
    entries: int = 0
    exits: int = 0
    denied: int = 0
    peak: bool = False

    @property
    def load(self) -> int:
        return self.entries + self.exits + self.denied


def month_days(first: date) -> list[date]:
    days = []
    day = first.replace(day=1)
    while day.month == first.month:
        days.append(day)
        day += timedelta(days=1)
    return days


def month_series(
    buckets: Iterable[FlowBucket], month: date, zone: ZoneInfo, fraction: float = 0.8
) -> list[DayTotal]:
    """Daily totals (all given posts together) for every day of ``month``'s month, peaks marked."""
    days = month_days(month)
    totals = {day: [0, 0, 0] for day in days}
    for b in buckets:
        local_day = b.start.astimezone(zone).date()
        if local_day in totals:
            totals[local_day][0] += b.entries
            totals[local_day][1] += b.exits
            totals[local_day][2] += b.denied
    peaks = peak_indices([sum(totals[d]) for d in days], fraction)
    return [DayTotal(d, *totals[d], peak=i in peaks) for i, d in enumerate(days)]


def month_bounds(month: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    days = month_days(month)
    return day_bounds(days[0], zone)[0], day_bounds(days[-1], zone)[1]


# -- staffing ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * min(max(p, 0.0), 100.0) / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def guards_for(rate: float, settings: FlowSettings) -> int:
    return max(settings.min_guards, math.ceil(rate / settings.capacity_per_guard - 1e-9))


@dataclass(frozen=True, slots=True)
class SlotPlan:
    index: int
    minutes: int
    rate: float
    """The percentile load of this slot, persons per hour."""
    guards: int
    delta: int
    """``guards - baseline``: positive means add, negative means fewer."""

    @property
    def label(self) -> str:
        return slot_label(self.index, self.minutes)


@dataclass(frozen=True, slots=True)
class Advice:
    """One sentence of the roster: add or remove guards at one post for one window of the day."""

    post: str
    start: int
    """Minutes from local midnight."""
    end: int
    delta: int
    guards: int
    baseline: int
    rate: float
    """For added guards the window's peak rate; for fewer, its highest rate (persons per hour)."""

    @property
    def window(self) -> str:
        return f"{slot_label(self.start, 1)}–{slot_label(self.end, 1)}"

    @property
    def action(self) -> str:
        return "add" if self.delta > 0 else "fewer"

    def text(self) -> str:
        """The advice in English words, for logs, docs and the JSON export."""
        n = abs(self.delta)
        if self.delta > 0:
            guards = "guard" if n == 1 else "guards"
            return f"add {n} {guards} {self.window} at {self.post} (peak {round(self.rate)}/h)"
        count = "one" if n == 1 else str(n)
        return f"{count} fewer {self.window} at {self.post} (at most {round(self.rate)}/h)"


@dataclass(frozen=True, slots=True)
class PostPlan:
    post: str
    kind: DayKind
    days: tuple[date, ...]
    """The days the percentiles were taken over, oldest first."""
    slots: tuple[SlotPlan, ...]
    advice: tuple[Advice, ...] = field(default=())


def history_bounds(until: date, settings: FlowSettings, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC interval to read for :func:`recommend`: enough calendar days to find ``days`` of a kind."""
    calendar_days = settings.days * 7 // 2 + 7  # weekends are 2 days a week; weekdays need fewer
    return day_bounds(until - timedelta(days=calendar_days), zone)[0], day_bounds(until, zone)[0]


def recommend(
    buckets: Iterable[FlowBucket], settings: FlowSettings, *, until: date, kind: DayKind
) -> list[PostPlan]:
    """Per post, guards per slot of a ``kind`` day, from the last ``settings.days`` such days before ``until``."""
    zone = settings.zone
    minutes = settings.bucket_minutes
    count = MINUTES_PER_DAY // minutes
    loads: dict[str, dict[date, list[int]]] = defaultdict(dict)
    for b in buckets:
        if b.minutes > minutes:
            raise ValueError(f"{b.minutes}-minute data cannot give {minutes}-minute advice")
        day, index = slot_of(b.start, zone, minutes)
        if day >= until or DayKind.of(day) is not kind:
            continue
        loads[post_key(b.site, b.gate)].setdefault(day, [0] * count)[index] += b.load
    plans = []
    for post in sorted(loads):
        days = sorted(day for day, slots in loads[post].items() if sum(slots) > 0)[-settings.days :]
        slots = []
        for index in range(count):
            rate = percentile([loads[post][d][index] * 60 / minutes for d in days], settings.percentile)
            guards = guards_for(rate, settings)
            slots.append(SlotPlan(index, minutes, rate, guards, guards - settings.baseline_guards))
        plans.append(PostPlan(post, kind, tuple(days), tuple(slots), tuple(advise(post, slots, settings))))
    return plans


def roster(post: str, slots: Sequence[SlotPlan], settings: FlowSettings) -> list[Advice]:
    """The whole day as runs of slots needing the same number of guards (the staffing table)."""
    runs: list[Advice] = []
    run: list[SlotPlan] = []

    def close() -> None:
        if run:
            start, end = run[0].index * run[0].minutes, (run[-1].index + 1) * run[-1].minutes
            rate = max(s.rate for s in run)
            runs.append(Advice(post, start, end, run[0].delta, run[0].guards, settings.baseline_guards, rate))

    for slot in slots:
        if run and slot.guards != run[-1].guards:
            close()
            run = []
        run.append(slot)
    close()
    return runs


def advise(post: str, slots: Sequence[SlotPlan], settings: FlowSettings) -> list[Advice]:
    """The runs that depart from the baseline, as sentences: what the operator should change."""
    return [run for run in roster(post, slots, settings) if run.delta != 0]


# -- one page's worth ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowReport:
    """Everything the flow page and its export show for one day and one post (or all posts)."""

    day: date
    post: str | None
    kind: DayKind
    posts: tuple[str, ...]
    """Every post seen this month or in the staffing history, for the picker."""
    hours: dict[str, list[Slot]]
    """Per post, the day's hourly bars, peaks marked."""
    month: list[DayTotal]
    plans: list[PostPlan]
    settings: FlowSettings

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the same figures the page shows, for scripts and spreadsheets."""
        return {
            "day": self.day.isoformat(),
            "post": self.post,
            "kind": self.kind.value,
            "timezone": self.settings.timezone,
            "hours": {
                post: [
                    {
                        "start": s.label,
                        "entries": s.entries,
                        "exits": s.exits,
                        "denied": s.denied,
                        "peak": s.peak,
                    }
                    for s in slots
                ]
                for post, slots in self.hours.items()
            },
            "month": [
                {
                    "day": d.day.isoformat(),
                    "entries": d.entries,
                    "exits": d.exits,
                    "denied": d.denied,
                    "peak": d.peak,
                }
                for d in self.month
            ],
            "staffing": [
                {
                    "post": plan.post,
                    "days": [d.isoformat() for d in plan.days],
                    "slots": [
                        {"start": s.label, "rate": round(s.rate, 1), "guards": s.guards, "change": s.delta}
                        for s in plan.slots
                    ],
                    "advice": [a.text() for a in plan.advice],
                }
                for plan in self.plans
            ],
        }


def split_post(post: str | None) -> tuple[str | None, str | None]:
    """``site/gate`` → (site, gate); empty → (None, None); a bare name is a gate of any site."""
    if not post:
        return None, None
    site, sep, gate = post.partition("/")
    return (site, gate) if sep else (None, site)


def build_report(
    store: Any,
    db: QueryDatabase | None,
    settings: FlowSettings,
    *,
    day: date,
    post: str | None = None,
    kind: DayKind | None = None,
) -> FlowReport:
    """Read the store once for the month (hourly) and once for the staffing history (slots)."""
    zone = settings.zone
    kind = kind or DayKind.of(day)
    site, gate = split_post(post)
    start, end = month_bounds(day, zone)
    month_rows = load_buckets(store, db, start=start, end=end, minutes=60)
    hist_start, hist_end = history_bounds(day, settings, zone)
    history = load_buckets(
        store, db, start=hist_start, end=hist_end, site=site, gate=gate, minutes=settings.bucket_minutes
    )
    posts = sorted(
        {post_key(b.site, b.gate) for b in month_rows} | {post_key(b.site, b.gate) for b in history}
    )
    chosen = [b for b in month_rows if (site is None or b.site == site) and (gate is None or b.gate == gate)]
    return FlowReport(
        day=day,
        post=post or None,
        kind=kind,
        posts=tuple(posts),
        hours=day_series(chosen, day, zone, 60, settings.peak_fraction),
        month=month_series(chosen, day, zone, settings.peak_fraction),
        plans=recommend(history, settings, until=day, kind=kind),
        settings=settings,
    )
