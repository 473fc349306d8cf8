"""Issuing many passes from a CSV file: one bad row is reported and skipped, never fatal.

A property manager exports a spreadsheet of residents; a typo in row 37 must not stop
the other 99 passes, and the report must say exactly where the typo is (file, line,
column) so it can be fixed and that row alone re-run.

The ``photo`` column is a path relative to the CSV when the office's own operator runs
``gatepost pass issue-batch`` on files they hold.  An import through the web console
passes ``photos`` instead — the files uploaded with the CSV, by name — and a row may
name only one of those: a path (``/etc/shadow``, ``../other/face.jpg``) is refused, so
an upload can neither probe the server's files nor print someone else's photo.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from console.passes.office import (
    OfficeError,
    OfficeReason,
    PassRequest,
    RequestError,
    RequestReason,
    parse_days,
    parse_role,
    parse_until,
    parse_window,
    parse_zones,
)
from protocol.errors import GatepostError

COLUMNS = ("holder", "unit", "role", "days", "until", "zones", "window", "photo")
REQUIRED = ("holder", "unit", "role")
MAX_ROWS = 100_000


class BatchRowError(GatepostError, ValueError):
    """A CSV row that cannot become a pass: where it is, which column, and why."""

    def __init__(self, file: Path, line: int, column: str, reason: RequestReason | str, detail: str) -> None:
        super().__init__(f"{file}:{line}: column {column}: {reason}: {detail}")
        self.file = file
        self.line = line
        self.column = column
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class BatchRow:
    line: int
    request: PassRequest


@dataclass(slots=True)
class BatchResult:
    issued: list[int] = field(default_factory=list)
    """Serials, in file order."""
    rejected: list[BatchRowError] = field(default_factory=list)


def row_request(row: dict[str, str], base: Path, photos: Mapping[str, Path] | None = None) -> PassRequest:
    """One CSV row as a request; photo paths are relative to the CSV file, or names in ``photos`` when given."""

    def get(name: str) -> str:
        return (row.get(name) or "").strip()

    for name in REQUIRED:
        if not get(name):
            raise RequestError(RequestReason.MISSING, name, "empty")
    days = parse_days(get("days")) if get("days") else None
    until = parse_until(get("until")) if get("until") else None
    if days is not None and until is not None:
        raise RequestError(RequestReason.BAD_DAYS, "days", "give days or until, not both")
    photo = None
    if get("photo") and photos is not None:
        photo = photos.get(get("photo"))
        if photo is None:
            raise RequestError(
                RequestReason.BAD_PHOTO, "photo", f"{get('photo')[:100]!r} is not among the uploaded photos"
            )
    elif get("photo"):
        photo = Path(get("photo"))
        photo = photo if photo.is_absolute() else base / photo
    return PassRequest(
        holder=get("holder"),
        unit=get("unit"),
        role=parse_role(get("role")),
        zones=parse_zones(get("zones")) if get("zones") else frozenset({0}),
        days=days,
        until=until,
        daily_window=parse_window(get("window")) if get("window") else None,
        photo=photo,
    )


def read_rows(path: Path, photos: Mapping[str, Path] | None = None) -> Iterator[BatchRow | BatchRowError]:
    """Each data row as a request or as the error that says what is wrong with it."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            yield BatchRowError(
                path, 1, missing[0], RequestReason.MISSING, f"header lacks {', '.join(missing)}"
            )
            return
        count = 0
        line = reader.line_num + 1
        for cells in reader:
            start, line = line, reader.line_num + 1  # a quoted cell may span lines: report the first
            if not any(cell.strip() for cell in cells):
                continue
            count += 1
            if count > MAX_ROWS:
                yield BatchRowError(path, start, "-", "too_many_rows", f"at most {MAX_ROWS} rows per file")
                return
            if len(cells) > len(header):
                yield BatchRowError(path, start, "-", "extra_cells", "more cells than header columns")
                continue
            row = dict(zip(header, cells, strict=False))
            try:
                yield BatchRow(start, row_request(row, path.parent, photos))
            except RequestError as exc:
                yield BatchRowError(path, start, exc.field, exc.reason, exc.detail)


def count_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return max(0, sum(1 for row in csv.reader(f) if any(cell.strip() for cell in row)) - 1)


def progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = width * done // total if total else width
    return f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total}"


def run_batch(
    path: Path,
    issue_one: Callable[[PassRequest], int],
    *,
    progress: Callable[[int, int], None] | None = None,
    photos: Mapping[str, Path] | None = None,
) -> BatchResult:
    """Issue every good row with ``issue_one`` (returns the serial); collect every bad row.

    ``photos``: the only photos rows may name (by file name), for uploads; see the module.
    """
    total = count_rows(path)
    result = BatchResult()
    for done, item in enumerate(read_rows(path, photos), start=1):
        if isinstance(item, BatchRowError):
            result.rejected.append(item)
        else:
            try:
                result.issued.append(issue_one(item.request))
            except RequestError as exc:
                result.rejected.append(
                    BatchRowError(Path(path), item.line, exc.field, exc.reason, exc.detail)
                )
            except OfficeError as exc:
                if exc.reason is not OfficeReason.OUTLIVES_KEY:
                    raise
                result.rejected.append(BatchRowError(Path(path), item.line, "days", exc.reason, exc.detail))
        if progress is not None:
            progress(done, max(total, done))
    return result
