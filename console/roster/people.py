"""People who stand posts, as a site office keeps them: a CSV file in, typed errors out.

A compound's list of guards, volunteers and property staff lives in a spreadsheet long
before it lives in gatepost, so the first way in is a CSV file.  Every row is checked in
full and every mistake is named by line and column, so an operator fixes the file once
rather than once per error; nothing is imported from a file with a mistake in it.

Availability is written the way people say it: ``Mon-Fri 08-18; Sat 17-22`` (days,
then hours from–to on the 24-hour clock, ``*`` for every day), or ``always``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from console.roster.model import Person, Team
from protocol.errors import Rejection

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
COLUMNS = (
    "id",
    "name",
    "team",
    "posts",
    "available",
    "trained",
    "phone",
    "languages",
    "max_hours_week",
    "max_hours_day",
)
REQUIRED = ("id", "name", "team", "posts")
MAX_ROWS = 10_000
_ID = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
_SPAN = re.compile(
    r"^(?P<days>[a-z*]+(?:-[a-z]+)?(?:,[a-z]+(?:-[a-z]+)?)*)\s+(?P<first>\d{1,2})-(?P<last>\d{1,2})$"
)


class PeopleRejectReason(StrEnum):
    """Why a people file or row was refused.  Stable strings: the import page shows them."""

    NOT_CSV = "not_csv"
    MISSING_COLUMN = "missing_column"
    TOO_MANY_ROWS = "too_many_rows"
    BAD_ID = "bad_id"
    DUPLICATE_ID = "duplicate_id"
    BAD_TEAM = "bad_team"
    NO_POSTS = "no_posts"
    BAD_AVAILABILITY = "bad_availability"
    BAD_NUMBER = "bad_number"
    BAD_FLAG = "bad_flag"


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    column: str
    reason: PeopleRejectReason
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason.value}: {self.detail}"


class PeopleFileError(Rejection[PeopleRejectReason], ValueError):
    """A people file that cannot be imported; ``errors`` lists every mistake in it."""

    def __init__(self, reason: PeopleRejectReason, detail: str, errors: Iterable[RowError] = ()) -> None:
        self.errors = tuple(errors)
        super().__init__(reason, detail)


def parse_availability(text: str) -> frozenset[int]:
    """Week hours (0 = Monday 00:00) from ``Mon-Fri 08-18; Sat 17-22``, ``* 06-22``, ``always`` or ``never``."""
    text = text.strip().lower()
    if text in ("", "always", "*"):
        return frozenset(range(168))
    if text == "never":  # offered no hours (yet): kept on the list, rostered nowhere
        return frozenset()
    hours: set[int] = set()
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        match = _SPAN.match(part)
        if match is None:
            raise ValueError(f"{part!r} is not like 'Mon-Fri 08-18'")
        first, last = int(match["first"]), int(match["last"])
        if not (0 <= first < last <= 24):
            raise ValueError(f"{part!r}: hours must run from 0 to 24, first before last")
        for day in _days(match["days"]):
            hours.update(day * 24 + hour for hour in range(first, last))
    return frozenset(hours)


def _days(text: str) -> list[int]:
    if text == "*":
        return list(range(7))
    found: list[int] = []
    for piece in text.split(","):
        ends = piece.split("-")
        if any(end[:3] not in DAYS for end in ends) or len(ends) > 2:
            raise ValueError(f"{piece!r} is not a day or a range of days (Mon … Sun)")
        first, last = DAYS.index(ends[0][:3]), DAYS.index(ends[-1][:3])
        if last < first:
            raise ValueError(f"{piece!r} runs backwards")
        found.extend(range(first, last + 1))
    return found


_YES = {"yes", "y", "true", "1", "是"}
_NO = {"no", "n", "false", "0", "", "否"}


def read_people(data: bytes) -> list[Person]:
    """Every person in a CSV file (UTF-8, with or without BOM), or :class:`PeopleFileError` naming each mistake."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PeopleFileError(PeopleRejectReason.NOT_CSV, f"not UTF-8 text (byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise PeopleFileError(PeopleRejectReason.MISSING_COLUMN, f"missing column(s): {', '.join(missing)}")
    reader.fieldnames = header
    people: list[Person] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        if len(people) + len(errors) >= MAX_ROWS:
            raise PeopleFileError(PeopleRejectReason.TOO_MANY_ROWS, f"more than {MAX_ROWS} rows")
        person, row_errors = _person(line, {k: (v or "").strip() for k, v in row.items() if k}, seen)
        errors.extend(row_errors)
        if person is not None:
            people.append(person)
            seen.add(person.id)
    if errors:
        raise PeopleFileError(errors[0].reason, f"{len(errors)} mistake(s); first: {errors[0]}", errors)
    return people


def read_person(fields: dict[str, str], *, taken: Iterable[str] = ()) -> Person:
    """One person from a form's fields (the CSV columns), or :class:`PeopleFileError` naming each field.

    The same checks as a file's row, so a person typed on the People page is held to what an
    import would be; mistakes carry line 0 and the field's column name.  ``taken``: ids that
    may not be used (a new person's id must be new).
    """
    person, errors = _person(0, {k: (v or "").strip() for k, v in fields.items()}, set(taken))
    if errors or person is None:
        raise PeopleFileError(errors[0].reason, f"{len(errors)} mistake(s); first: {errors[0]}", errors)
    return person


def format_availability(hours: frozenset[int]) -> str:
    """The week hours back in the words :func:`parse_availability` reads: ``always`` or ``Mon-Fri 08-18; Sat 17-22``.

    Each day's hours become spans; days in a row with the same spans share one entry, so an
    edit form shows what a person would have typed, and reading it back gives the same hours.
    """
    if hours >= frozenset(range(168)):
        return "always"
    if not hours:
        return "never"
    per_day: list[tuple[tuple[int, int], ...]] = []
    for day in range(7):
        spans: list[tuple[int, int]] = []
        for hour in range(24):
            if day * 24 + hour in hours:
                if spans and spans[-1][1] == hour:
                    spans[-1] = (spans[-1][0], hour + 1)
                else:
                    spans.append((hour, hour + 1))
        per_day.append(tuple(spans))
    parts: list[str] = []
    day = 0
    while day < 7:
        last = day
        while last + 1 < 7 and per_day[last + 1] == per_day[day]:
            last += 1
        days = DAYS[day].title() if last == day else f"{DAYS[day].title()}-{DAYS[last].title()}"
        parts.extend(f"{days} {first:02d}-{end:02d}" for first, end in per_day[day])
        day = last + 1
    return "; ".join(parts)


def _person(line: int, row: dict[str, str], seen: set[str]) -> tuple[Person | None, list[RowError]]:
    errors: list[RowError] = []

    def bad(column: str, reason: PeopleRejectReason, detail: str) -> None:
        errors.append(RowError(line, column, reason, detail))

    person_id = row.get("id", "")
    if not _ID.match(person_id):
        bad("id", PeopleRejectReason.BAD_ID, "1–40 letters, digits, '.', '_' or '-'")
    elif person_id in seen:
        bad("id", PeopleRejectReason.DUPLICATE_ID, f"{person_id!r} appears twice")
    try:
        team = Team(row.get("team", "").lower())
    except ValueError:
        bad("team", PeopleRejectReason.BAD_TEAM, f"one of {', '.join(t.value for t in Team)}")
        team = Team.VOLUNTEER
    posts = frozenset(p.strip() for p in row.get("posts", "").split(";") if p.strip())
    if not posts:
        bad("posts", PeopleRejectReason.NO_POSTS, "at least one post, separated by ';'")
    try:
        available = parse_availability(row.get("available", ""))
    except ValueError as exc:
        bad("available", PeopleRejectReason.BAD_AVAILABILITY, str(exc))
        available = frozenset()
    trained_text = row.get("trained", "").lower()
    if trained_text not in _YES | _NO:
        bad("trained", PeopleRejectReason.BAD_FLAG, "yes or no")
    limits: dict[str, int | None] = {}
    for column, most in (("max_hours_week", 168), ("max_hours_day", 24)):
        limits[column] = None
        if row.get(column):
            try:
                limits[column] = int(row[column])
                if not 1 <= (limits[column] or 0) <= most:
                    raise ValueError
            except ValueError:
                bad(column, PeopleRejectReason.BAD_NUMBER, f"a whole number of hours, 1–{most}")
    if errors:
        return None, errors
    return (
        Person(
            id=person_id,
            name=row.get("name", "") or person_id,
            team=team,
            posts=posts,
            available=available,
            trained=trained_text in _YES,
            max_hours_week=limits["max_hours_week"],
            max_hours_day=limits["max_hours_day"],
            phone=row.get("phone", ""),
            languages=tuple(x.strip() for x in row.get("languages", "").split(";") if x.strip()),
        ),
        [],
    )
