"""A patrol route: stations in order, each expected some minutes into a round, and the day's rounds.

The source article's patrol groups walked fixed routes from 9:00 to 18:00 and manned
their stations on the hour, so a route's default schedule is a round every 60 minutes
from 09:00 to 18:00 in the site's time zone.  A station is a gate, and optionally one of
its readers (``card``, ``scanner``, an ``[[osdp]]`` name): the reader a patrol guard
presents the patrol credential to (``protocol.duty.PatrolCheck``).

:func:`check_route` names every rule a route breaks, so the page and the CSV import
refuse it with the reason; the rules are what makes matching unambiguous:

* each station's ``offset + tolerance`` is within the round (``every`` minutes), so a
  station's late deadline comes before the round ends and the next begins;
* two stations at the same gate and reader are more than their two tolerances apart, so
  an on-time check-in belongs to one of them only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from protocol.messages import NAME_PATTERN

MAX_STATIONS = 50
MAX_TOLERANCE_MIN = 120
DEFAULT_FIRST = time(9, 0)
DEFAULT_LAST = time(18, 0)
DEFAULT_EVERY_MIN = 60
_NAME = re.compile(NAME_PATTERN)
_READER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ROUTE_NAME_MAX = 80


@dataclass(frozen=True, slots=True)
class Station:
    """One stop of a route: ``gate`` (and ``reader``, or any reader of it) at ``offset_min`` ± ``tolerance_min``."""

    gate: str
    offset_min: int
    tolerance_min: int = 5
    reader: str | None = None

    def takes(self, gate: str, reader: str) -> bool:
        """Whether a check-in at ``gate``/``reader`` is at this station."""
        return gate == self.gate and (self.reader is None or self.reader == reader)

    @property
    def label(self) -> str:
        return self.gate if self.reader is None else f"{self.gate}/{self.reader}"


@dataclass(frozen=True, slots=True)
class Route:
    """A route of one site.  ``id`` is 0 until stored."""

    site: str
    name: str
    stations: tuple[Station, ...]
    first: time = DEFAULT_FIRST
    last: time = DEFAULT_LAST
    every_min: int = DEFAULT_EVERY_MIN
    active: bool = True
    id: int = 0
    updated_at: str = ""
    updated_by: str = ""

    def starts(self, day: date, zone: ZoneInfo) -> list[datetime]:
        """The round starts of ``day`` in the site's zone, as aware local times (a DST gap is skipped)."""
        out: list[datetime] = []
        minute = self.first.hour * 60 + self.first.minute
        end = self.last.hour * 60 + self.last.minute
        while minute <= end:
            local = datetime.combine(day, time(minute // 60, minute % 60), zone)
            if local.astimezone(ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None) == local.replace(
                tzinfo=None
            ):
                out.append(local)
            minute += self.every_min
        return out

    @property
    def round_length(self) -> timedelta:
        return timedelta(minutes=self.every_min)


class RouteProblem(ValueError):
    """A rule a route breaks: ``key`` is the page's translation key, ``field`` the CSV column."""

    def __init__(self, key: str, field: str, detail: str) -> None:
        self.key = key
        self.field = field
        self.detail = detail
        super().__init__(f"{field}: {key}: {detail}")


def check_route(route: Route) -> list[RouteProblem]:
    """Every rule ``route`` breaks (empty: it may be stored)."""
    problems: list[RouteProblem] = []
    if not _NAME.match(route.site):
        problems.append(RouteProblem("bad_site", "site", route.site))
    if not route.name.strip() or len(route.name) > _ROUTE_NAME_MAX or any(ord(c) < 32 for c in route.name):
        problems.append(RouteProblem("bad_name", "route", route.name[:100]))
    if not 1 <= route.every_min <= 24 * 60:
        problems.append(RouteProblem("bad_every", "every", str(route.every_min)))
    if route.last < route.first:
        problems.append(
            RouteProblem("last_before_first", "last", f"{route.first:%H:%M} > {route.last:%H:%M}")
        )
    if not route.stations:
        problems.append(RouteProblem("no_stations", "gate", "a route needs at least one station"))
    if len(route.stations) > MAX_STATIONS:
        problems.append(RouteProblem("too_many_stations", "gate", str(len(route.stations))))
    for index, s in enumerate(route.stations, 1):
        if not _NAME.match(s.gate):
            problems.append(RouteProblem("bad_gate", "gate", f"station {index}: {s.gate[:70]!r}"))
        if s.reader is not None and not _READER.match(s.reader):
            problems.append(RouteProblem("bad_reader", "reader", f"station {index}: {s.reader[:70]!r}"))
        if not 0 <= s.tolerance_min <= MAX_TOLERANCE_MIN:
            problems.append(RouteProblem("bad_tolerance", "tolerance", f"station {index}: {s.tolerance_min}"))
        if s.offset_min < 0 or s.offset_min + s.tolerance_min >= route.every_min:
            problems.append(
                RouteProblem(
                    "offset_outside_round",
                    "offset",
                    f"station {index}: {s.offset_min} + {s.tolerance_min} min must end before the round"
                    f" ({route.every_min} min)",
                )
            )
    for i, a in enumerate(route.stations):
        for j in range(i + 1, len(route.stations)):
            b = route.stations[j]
            same = a.gate == b.gate and (a.reader is None or b.reader is None or a.reader == b.reader)
            if same and abs(a.offset_min - b.offset_min) <= a.tolerance_min + b.tolerance_min:
                problems.append(
                    RouteProblem(
                        "stations_overlap",
                        "offset",
                        f"stations {i + 1} and {j + 1} at {b.label} are within their tolerances",
                    )
                )
    return problems


def parse_clock(text: str) -> time:
    """``09:00`` → 09:00; :class:`ValueError` for anything else."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if match is None:
        raise ValueError(f"{text[:20]!r} is not a time like 09:00")
    hour, minute = int(match[1]), int(match[2])
    if hour > 23 or minute > 59:
        raise ValueError(f"{text[:20]!r} is not a time of day")
    return time(hour, minute)
