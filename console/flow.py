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

import contextlib
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from time import monotonic
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from console.db import format_time

if TYPE_CHECKING:
    from console.config import FlowConfig

log = logging.getLogger("gatepost.console.flow")

GRANT_TYPES = ("access.scan", "door.access_granted")
DENY_TYPES = ("door.access_denied",)
MINUTES_PER_DAY = 1440
VEHICLE_POST = "/vehicles"
"""Appended to a gate's name for its vehicle lane as a post of the staffing advice."""
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


class _Load:
    """A post's load is everyone a guard deals with: entries, exits and refusals alike."""

    __slots__ = ()
    entries: int
    exits: int
    denied: int

    @property
    def load(self) -> int:
        return self.entries + self.exits + self.denied


@dataclass(frozen=True, slots=True)
class FlowBucket(_Load):
    """What one post saw in one slot of time (``start`` is UTC, ``minutes`` long)."""

    site: str
    gate: str
    start: datetime
    minutes: int
    entries: int = 0
    exits: int = 0
    denied: int = 0

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
    open_on: str = "today"
    """``last_full_day``: the page opens on yesterday, whose every hour is in (the demo's choice)."""

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


def events_buckets(
    db: QueryDatabase,
    *,
    start: datetime,
    end: datetime,
    site: str | None = None,
    gate: str | None = None,
    minutes: int = 30,
    plates: bool | None = None,
) -> list[FlowBucket]:
    """Count entries, exits and denials per post and slot straight from the ``events`` table.

    The store's hourly rollup cannot say 18:00–19:30; this can, for as far back as events
    are kept.  Slots with nothing in them are simply absent.  A gate's vehicle lane is a
    post of its own, ``<gate>/vehicles`` (:data:`VEHICLE_POST`): its peak (the morning
    drive out, the evening return) needs a guard at the barrier, whoever stands at the
    pedestrian gate.  ``plates`` keeps only plate decisions (``True``) or none (``False``).
    """
    if minutes not in ALLOWED_BUCKETS:
        raise ValueError(f"bucket of {minutes} minutes; use one of {ALLOWED_BUCKETS}")
    # ``granted`` and ``direction`` are the store's copies of the data fields (1 for a
    # door.access_granted): no JSON is parsed per row.
    is_granted = "granted = 1"
    is_out = "coalesce(direction, '') = 'out'"
    where = ["time >= ?", "time < ?", f"type IN ({', '.join('?' * len(GRANT_TYPES + DENY_TYPES))})"]
    params: list[Any] = [format_time(start), format_time(end), *GRANT_TYPES, *DENY_TYPES]
    if site is not None:
        where.append("site = ?")
        params.append(site)
    if gate is not None:
        where.append("gate = ?")
        params.append(gate)
    is_plate = "coalesce(credential, '') = 'plate'"
    if plates is not None:
        where.append(is_plate if plates else f"NOT {is_plate}")
    post = f"gate || CASE WHEN {is_plate} THEN '{VEHICLE_POST}' ELSE '' END"
    sql = f"""
        SELECT site, {post} AS post, substr(time, 1, 13) AS hour,
               CAST(substr(time, 15, 2) AS INTEGER) / {minutes} AS part,
               SUM(CASE WHEN {is_granted} AND NOT {is_out} THEN 1 ELSE 0 END),
               SUM(CASE WHEN {is_granted} AND {is_out} THEN 1 ELSE 0 END),
               SUM(CASE WHEN {is_granted} THEN 0 ELSE 1 END)
        FROM events WHERE {" AND ".join(where)}
        GROUP BY site, {post}, substr(time, 1, 13), CAST(substr(time, 15, 2) AS INTEGER) / {minutes}
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


def _add(counts: list[int], bucket: FlowBucket) -> None:
    """Add a bucket to a running ``[entries, exits, denied]``."""
    counts[0] += bucket.entries
    counts[1] += bucket.exits
    counts[2] += bucket.denied


def _slot_counts(
    buckets: Iterable[FlowBucket], zone: ZoneInfo, minutes: int, wanted: Callable[[date], bool]
) -> dict[str, dict[date, list[list[int]]]]:
    """Per post and ``wanted`` local day, every slot's ``[entries, exits, denied]``, zeros included.

    A post's day is there as soon as one bucket falls in it, even a bucket that counted nothing.
    """
    count = MINUTES_PER_DAY // minutes
    counts: dict[str, dict[date, list[list[int]]]] = defaultdict(dict)
    for b in buckets:
        day, index = slot_of(b.start, zone, minutes)
        if wanted(day):
            grid = counts[post_key(b.site, b.gate)].setdefault(day, [[0, 0, 0] for _ in range(count)])
            _add(grid[index], b)
    return counts


def rebucket(buckets: Iterable[FlowBucket], minutes: int) -> list[FlowBucket]:
    """Coarser slots (30 → 60 minutes) by adding up; the result is ordered by time, post."""
    sums: dict[tuple[str, str, datetime], list[int]] = defaultdict(lambda: [0, 0, 0])
    for b in buckets:
        if minutes < b.minutes or minutes % b.minutes:
            raise ValueError(f"cannot turn {b.minutes}-minute slots into {minutes}-minute ones")
        start = b.start - timedelta(minutes=(b.start.hour * 60 + b.start.minute) % minutes)
        _add(sums[(b.site, b.gate, start)], b)
    return [
        FlowBucket(site, gate, start, minutes, *counts)
        for (site, gate, start), counts in sorted(sums.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1]))
    ]


@dataclass(frozen=True, slots=True)
class Slot(_Load):
    """One bar of a day chart: a slot of a local day at one post (or all posts added up)."""

    index: int
    minutes: int
    entries: int = 0
    exits: int = 0
    denied: int = 0
    peak: bool = False

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
    result = {}
    for key, grids in sorted(_slot_counts(buckets, zone, minutes, lambda d: d == day).items()):
        slots = grids[day]
        peaks = peak_indices([sum(s) for s in slots], fraction)
        result[key] = [Slot(i, minutes, *s, peak=i in peaks) for i, s in enumerate(slots)]
    return result


@dataclass(frozen=True, slots=True)
class DayTotal(_Load):
    """One bar of a month chart."""

    day: date
    entries: int = 0
    exits: int = 0
    denied: int = 0
    peak: bool = False


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
            _add(totals[local_day], b)
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
    buckets = list(buckets)
    coarse = [b.minutes for b in buckets if b.minutes > minutes]
    if coarse:
        raise ValueError(f"{coarse[0]}-minute data cannot give {minutes}-minute advice")
    per_post = _slot_counts(buckets, zone, minutes, lambda day: day < until and DayKind.of(day) is kind)
    plans = []
    for post, grids in sorted(per_post.items()):
        loads = {day: [sum(slot) for slot in grid] for day, grid in grids.items()}
        days = sorted(day for day, load in loads.items() if sum(load) > 0)[-settings.days :]
        slots = []
        for index in range(MINUTES_PER_DAY // minutes):
            rate = percentile([loads[d][index] * 60 / minutes for d in days], settings.percentile)
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
    """Every gate the store knows, for the picker."""
    hours: dict[str, list[Slot]]
    """Per post, the day's hourly bars, peaks marked; one :data:`ALL_POSTS` series instead
    when all of more than :data:`MAX_POSTS_IN_DETAIL` posts are asked for."""
    month: list[DayTotal]
    plans: list[PostPlan]
    """Per post; for all of many posts, only those whose roster should change."""
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


MAX_POSTS_IN_DETAIL = 12
"""Above this many posts, "all posts" shows their sum as one day chart and only the posts
whose roster should change: a district's thousand charts and tables are a page nobody
reads, and one that took seconds to build."""

ALL_POSTS = ""
"""The key of the summed day series in :attr:`FlowReport.hours`."""

_PLAN_TTL_S = 600.0
_PLAN_ENTRIES = 32


class PlanCache:
    """Staffing plans already worked out: they read only days before the one asked about.

    Working out every post of a district reads weeks of events (the advice needs slots
    shorter than the hourly rollup) and takes seconds (8.7 s for 1,000 gates and a million
    events, bench/console.py).  The answer only changes when a gate that was offline
    delivers old events, so a plan is served for ``ttl_s`` and after that still served
    while one background thread works out a fresh one: no operator waits for it but the
    first, and :meth:`submit` lets the web console work that one out at start.
    """

    def __init__(self, ttl_s: float = _PLAN_TTL_S, entries: int = _PLAN_ENTRIES) -> None:
        self.ttl_s, self.entries = ttl_s, entries
        self._plans: dict[tuple[Any, ...], tuple[float, list[PostPlan]]] = {}
        self._refreshing: set[tuple[Any, ...]] = set()
        self._lock = threading.Lock()
        # one thread, so its database connection (one per thread) is opened once
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="flow-plans")

    def get(self, key: tuple[Any, ...], make: Callable[[], list[PostPlan]]) -> list[PostPlan]:
        with self._lock:
            hit = self._plans.get(key)
            refresh = hit is not None and monotonic() - hit[0] >= self.ttl_s and key not in self._refreshing
            if refresh:
                self._refreshing.add(key)
        if hit is None:
            plans = make()
            self._put(key, plans)
            return plans
        if refresh:
            self.submit(lambda: self._refresh(key, make))
        return hit[1]

    def submit(self, work: Callable[[], object]) -> None:
        """Run ``work`` on the cache's background thread (ignored once :meth:`close` ran)."""
        with contextlib.suppress(RuntimeError):  # shut down: the console is stopping
            self._worker.submit(work)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    def _refresh(self, key: tuple[Any, ...], make: Callable[[], list[PostPlan]]) -> None:
        try:
            self._put(key, make())
        except Exception:  # the stale plans stay; the next view tries again
            log.warning("could not work out fresh staffing plans; showing the previous ones", exc_info=True)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _put(self, key: tuple[Any, ...], plans: list[PostPlan]) -> None:
        with self._lock:
            if key not in self._plans and len(self._plans) >= self.entries:
                del self._plans[min(self._plans, key=lambda k: self._plans[k][0])]
            self._plans[key] = (monotonic(), plans)


def build_report(
    store: Any,
    db: QueryDatabase,
    settings: FlowSettings,
    *,
    day: date,
    post: str | None = None,
    kind: DayKind | None = None,
    cache: PlanCache | None = None,
) -> FlowReport:
    """The month and the day from the hourly rollup; the staffing from the events of past weeks.

    For one post every read is an index range of that gate.  For all posts the month is
    read from the per-site rollup rows, the day per gate only when there are few posts,
    and the staffing of every post (the one costly read) through ``cache``.
    """
    zone = settings.zone
    kind = kind or DayKind.of(day)
    site, gate = split_post(post)
    posts = [post_key(site, gate) for site, gate in store.gates()]
    start, end = month_bounds(day, zone)
    if post:
        month_rows = rows_to_buckets(store.flow(site, gate, start, end))
        day_rows = month_rows
    else:
        month_rows = rows_to_buckets(store.flow(None, None, start, end, per_gate=False))
        if len(posts) <= MAX_POSTS_IN_DETAIL:
            day_rows = rows_to_buckets(store.flow(None, None, *day_bounds(day, zone)))
        else:
            day_rows = [replace(b, site=ALL_POSTS, gate=ALL_POSTS) for b in month_rows]
    hist_start, hist_end = history_bounds(day, settings, zone)

    def plans() -> list[PostPlan]:
        history = events_buckets(
            db, start=hist_start, end=hist_end, site=site, gate=gate, minutes=settings.bucket_minutes
        )
        return recommend(history, settings, until=day, kind=kind)

    key = (getattr(db, "display", id(db)), day, kind, site, gate, settings)
    staffing = plans() if post or cache is None else cache.get(key, plans)
    if not post and len(posts) > MAX_POSTS_IN_DETAIL:
        staffing = [plan for plan in staffing if plan.advice]
    hours = day_series(day_rows, day, zone, 60, settings.peak_fraction)
    if ALL_POSTS + "/" + ALL_POSTS in hours:
        hours = {ALL_POSTS: hours.pop(ALL_POSTS + "/" + ALL_POSTS)}
    return FlowReport(
        day=day,
        post=post or None,
        kind=kind,
        posts=tuple(posts),
        hours=hours,
        month=month_series(month_rows, day, zone, settings.peak_fraction),
        plans=staffing,
        settings=settings,
    )
