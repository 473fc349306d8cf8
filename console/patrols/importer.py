"""Patrol routes from a CSV file: one row per station, in walking order; every mistake named by line and column.

Columns: ``route``, ``site``, ``gate``, ``offset`` (minutes into the round) are required;
``reader``, ``tolerance`` (minutes, default 5), and the route's schedule ``first``,
``last`` (``09:00``, ``18:00``), ``every`` (minutes, 60) and ``active`` (``yes``) are
optional.  The rows of one route (same ``site`` and ``route``) make its stations in the
order they appear; a schedule column given on several of them must say the same.  As
for the roster's people, nothing is imported from a file with a mistake in it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import time
from enum import StrEnum

from console.patrols.model import (
    DEFAULT_EVERY_MIN,
    DEFAULT_FIRST,
    DEFAULT_LAST,
    Route,
    Station,
    check_route,
    parse_clock,
)
from protocol.errors import Rejection

COLUMNS = ("route", "site", "gate", "reader", "offset", "tolerance", "first", "last", "every", "active")
REQUIRED = ("route", "site", "gate", "offset")
MAX_ROWS = 5_000
_YES = {"yes", "y", "true", "1", "是", ""}
_NO = {"no", "n", "false", "0", "否"}


class RouteRejectReason(StrEnum):
    """Why a routes file or row was refused.  Stable strings: the page shows them in both languages."""

    NOT_CSV = "not_csv"
    MISSING_COLUMN = "missing_column"
    TOO_MANY_ROWS = "too_many_rows"
    BAD_NUMBER = "bad_number"
    BAD_TIME = "bad_time"
    BAD_FLAG = "bad_flag"
    DISAGREES = "disagrees"
    BAD_ROUTE = "bad_route"


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    column: str
    reason: RouteRejectReason
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason.value}: {self.detail}"


class RoutesFileError(Rejection[RouteRejectReason], ValueError):
    """A routes file that cannot be imported; ``errors`` lists every mistake in it."""

    def __init__(self, reason: RouteRejectReason, detail: str, errors: tuple[RowError, ...] = ()) -> None:
        self.errors = errors
        super().__init__(reason, detail)


@dataclass
class _Draft:
    line: int
    site: str
    name: str
    stations: list[Station]
    schedule: dict[str, tuple[str, int]]


def read_routes(data: bytes) -> list[Route]:
    """Every route in a CSV file (UTF-8, BOM or none), or :class:`RoutesFileError` naming each mistake."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RoutesFileError(RouteRejectReason.NOT_CSV, "the file is not UTF-8 text") from None
    if "\x00" in text:
        raise RoutesFileError(RouteRejectReason.NOT_CSV, "the file holds NUL characters: not a CSV file")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip().lower() for h in reader.fieldnames or []]
    except csv.Error as exc:
        raise RoutesFileError(RouteRejectReason.NOT_CSV, str(exc)) from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise RoutesFileError(
            RouteRejectReason.MISSING_COLUMN,
            f"missing column(s): {', '.join(missing)}",
            tuple(RowError(1, c, RouteRejectReason.MISSING_COLUMN, c) for c in missing),
        )
    reader.fieldnames = header
    errors: list[RowError] = []
    drafts: dict[tuple[str, str], _Draft] = {}
    try:
        for index, raw in enumerate(reader):
            line = index + 2
            if index >= MAX_ROWS:
                raise RoutesFileError(RouteRejectReason.TOO_MANY_ROWS, f"more than {MAX_ROWS} rows")
            row = {k: (v or "").strip() for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}
            _read_row(line, row, drafts, errors)
    except csv.Error as exc:
        raise RoutesFileError(RouteRejectReason.NOT_CSV, str(exc)) from None
    routes: list[Route] = []
    for draft in drafts.values():
        route = _route(draft, errors)
        if route is None:
            continue
        for problem in check_route(route):
            errors.append(
                RowError(
                    draft.line, problem.field, RouteRejectReason.BAD_ROUTE, f"{problem.key}: {problem.detail}"
                )
            )
        routes.append(route)
    if errors:
        raise RoutesFileError(errors[0].reason, f"{len(errors)} mistake(s)", tuple(errors))
    return routes


def _read_row(
    line: int, row: dict[str, str], drafts: dict[tuple[str, str], _Draft], errors: list[RowError]
) -> None:
    key = (row.get("site", ""), row.get("route", ""))
    draft = drafts.setdefault(key, _Draft(line, key[0], key[1], [], {}))
    numbers: dict[str, int] = {}
    for column in ("offset", "tolerance"):
        value = row.get(column, "")
        if column == "tolerance" and value == "":
            numbers[column] = 5
            continue
        try:
            numbers[column] = int(value)
        except ValueError:
            errors.append(RowError(line, column, RouteRejectReason.BAD_NUMBER, value[:40]))
    for column in ("first", "last", "every", "active"):
        value = row.get(column, "")
        if value == "":
            continue
        seen = draft.schedule.get(column)
        if seen is not None and seen[0] != value:
            errors.append(
                RowError(
                    line,
                    column,
                    RouteRejectReason.DISAGREES,
                    f"{value[:20]!r}, line {seen[1]} says {seen[0]!r}",
                )
            )
        elif seen is None:
            draft.schedule[column] = (value, line)
    if len(numbers) == 2:
        reader = row.get("reader", "") or None
        draft.stations.append(Station(row.get("gate", ""), numbers["offset"], numbers["tolerance"], reader))


def _route(draft: _Draft, errors: list[RowError]) -> Route | None:
    clocks: dict[str, time] = {"first": DEFAULT_FIRST, "last": DEFAULT_LAST}
    ok = True
    for column in ("first", "last"):
        if column in draft.schedule:
            value, line = draft.schedule[column]
            try:
                clocks[column] = parse_clock(value)
            except ValueError as exc:
                errors.append(RowError(line, column, RouteRejectReason.BAD_TIME, str(exc)))
                ok = False
    every = DEFAULT_EVERY_MIN
    if "every" in draft.schedule:
        value, line = draft.schedule["every"]
        try:
            every = int(value)
        except ValueError:
            errors.append(RowError(line, "every", RouteRejectReason.BAD_NUMBER, value[:40]))
            ok = False
    active = True
    if "active" in draft.schedule:
        value, line = draft.schedule["active"]
        if value.lower() in _NO:
            active = False
        elif value.lower() not in _YES:
            errors.append(RowError(line, "active", RouteRejectReason.BAD_FLAG, value[:40]))
            ok = False
    if not ok:
        return None
    return Route(
        draft.site, draft.name, tuple(draft.stations), clocks["first"], clocks["last"], every, active
    )
