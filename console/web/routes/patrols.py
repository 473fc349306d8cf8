"""``/patrols``: patrol routes (edited by any logged-in user of the route's site), rounds, print, export.

A route is edited on its page or imported from a CSV file (console/patrols/importer.py,
every mistake named by line and column); each change is checked by
:func:`console.patrols.model.check_route` and audited (``patrol.route_add``,
``patrol.route_edit``, ``patrol.routes_import``).  Rounds are worked out from the stored
check-ins each time they are shown (console/patrols/rounds.py), so the page, the print
and the exports always agree with the alarms.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.flow import FlowSettings
from console.patrols.importer import RoutesFileError, RowError, read_routes
from console.patrols.model import Route as PatrolRoute
from console.patrols.model import Station, check_route, parse_clock
from console.patrols.rounds import RoundRecord, parse_round_id
from console.patrols.store import PatrolStore, RouteExists
from console.patrols.watcher import rounds_between
from console.web.auth import login_required, sees
from console.web.forms import PageError, audit, field_text
from console.web.render import render

MAX_UPLOAD_BYTES = 1024 * 1024
MAX_EXPORT_DAYS = 31
_STATION_LINE = re.compile(r"^\s*([^,\s]+)\s*,\s*(-?\d{1,5})\s*(?:,\s*(-?\d{1,5})\s*)?$")


def _store(request: Request) -> PatrolStore:
    state = request.app.state
    store = getattr(state, "patrol_store", None)
    if store is None:
        store = PatrolStore(state.ctx.db)
        state.patrol_store = store
    return store


def _zone(request: Request) -> ZoneInfo:
    return FlowSettings.from_config(getattr(request.app.state.ctx.config, "flow", None)).zone


def _day(text: str, zone: ZoneInfo) -> date:
    """A ``YYYY-MM-DD`` query value (empty: today in the site's zone); :class:`PageError` for one that is not."""
    if not text:
        return datetime.now(zone).date()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise PageError("patrols.error.bad_date") from None
    if not date(2000, 1, 1) <= day <= date(9000, 12, 31):
        raise PageError("patrols.error.bad_date")
    return day


def stations_text(route: PatrolRoute) -> str:
    """The stations as the form's text: one ``gate[/reader], offset, tolerance`` a line."""
    return "\n".join(f"{s.label}, {s.offset_min}, {s.tolerance_min}" for s in route.stations)


def parse_stations(text: str) -> tuple[Station, ...]:
    """The form's stations; :class:`PageError` naming the first line that is not ``gate[/reader], offset[, tolerance]``."""
    stations = []
    for number, line in enumerate(text.splitlines()[:100], 1):
        if not line.strip():
            continue
        match = _STATION_LINE.match(line)
        if match is None:
            raise PageError("patrols.error.bad_station_line", line=number)
        gate, _, reader = match[1].partition("/")
        tolerance = int(match[3]) if match[3] is not None else 5
        stations.append(Station(gate, int(match[2]), tolerance, reader or None))
    return tuple(stations)


def _route_from_form(form: Any, route_id: int) -> PatrolRoute:
    try:
        first = parse_clock(field_text(form, "first", 5) or "09:00")
        last = parse_clock(field_text(form, "last", 5) or "18:00")
        every = int(field_text(form, "every", 4) or "60")
    except ValueError:
        raise PageError("patrols.error.bad_schedule") from None
    route = PatrolRoute(
        site=field_text(form, "site", 64),
        name=field_text(form, "name", 100),
        stations=parse_stations(field_text(form, "stations", 5000)),
        first=first,
        last=last,
        every_min=every,
        active=field_text(form, "active", 3) != "no",
        id=route_id,
    )
    problems = check_route(route)
    if problems:
        raise PageError(f"patrols.problem.{problems[0].key}", detail=problems[0].detail)
    return route


async def _index(
    request: Request,
    status_code: int = 200,
    error: PageError | None = None,
    errors: tuple[RowError, ...] = (),
    form: dict[str, str] | None = None,
) -> Response:
    routes = await run_in_threadpool(_store(request).routes)
    return render(
        request,
        "patrols/index.html",
        status_code=status_code,
        routes=[r for r in routes if sees(request, r.site)],
        error_key=error.key if error else None,
        error_values=error.values if error else {},
        errors=errors,
        form=form or {},
        today=datetime.now(_zone(request)).date(),
    )


@login_required
async def index(request: Request) -> Response:
    return await _index(request)


@login_required
async def add_route(request: Request) -> Response:
    async with request.form() as form:
        values = {
            k: field_text(form, k, 5000) for k in ("site", "name", "first", "last", "every", "stations")
        }
        try:
            route = _route_from_form(form, 0)
        except PageError as exc:
            return await _index(request, 400, exc, form=values)
    if not sees(request, route.site):
        return await _index(request, 403, PageError("patrols.error.not_your_site"), form=values)
    try:
        stored = await run_in_threadpool(_store(request).save, route, request.state.user.name)
    except RouteExists:
        return await _index(request, 400, PageError("patrols.error.name_taken"), form=values)
    await audit(
        request,
        "patrol.route_add",
        f"{stored.site}/{stored.name}",
        {"id": stored.id, "stations": len(stored.stations)},
    )
    return RedirectResponse(f"/patrols/routes/{stored.id}", status_code=303)


@login_required
async def import_routes(request: Request) -> Response:
    async with request.form() as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await _index(request, 400, PageError("patrols.error.no_file"))
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return await _index(request, 400, PageError("patrols.error.file_too_large"))
    try:
        routes = read_routes(data)
    except RoutesFileError as exc:
        return await _index(
            request, 400, PageError(f"patrols.import_error.{exc.reason.value}"), errors=exc.errors
        )
    if not all(sees(request, r.site) for r in routes):
        return await _index(request, 403, PageError("patrols.error.not_your_site"))
    try:
        count = await run_in_threadpool(_store(request).put_routes, routes, request.state.user.name)
    except RouteExists:
        return await _index(request, 400, PageError("patrols.error.name_taken"))
    await audit(request, "patrol.routes_import", upload.filename or "", {"routes": count})
    return RedirectResponse("/patrols", status_code=303)


async def _visible_route(request: Request) -> PatrolRoute | None:
    route_id = request.path_params["route_id"]
    if not 0 < route_id < 2**62:
        return None
    route = await run_in_threadpool(_store(request).route, route_id)
    return route if route is not None and sees(request, route.site) else None


def _not_found(request: Request) -> Response:
    return render(request, "error.html", status_code=404, message_key="error.not_found")


async def _route_page(
    request: Request, route: PatrolRoute, status_code: int = 200, error: PageError | None = None
) -> Response:
    zone = _zone(request)
    now = datetime.now(UTC)
    today = datetime.now(zone)
    records = await run_in_threadpool(rounds_between, _store(request), route, zone, today, 1, now)
    return render(
        request,
        "patrols/route.html",
        status_code=status_code,
        route=route,
        stations=stations_text(route),
        records=[r for r in records if r.start <= now],
        error_key=error.key if error else None,
        error_values=error.values if error else {},
    )


@login_required
async def route_page(request: Request) -> Response:
    route = await _visible_route(request)
    if route is None:
        return _not_found(request)
    return await _route_page(request, route)


@login_required
async def edit_route(request: Request) -> Response:
    route = await _visible_route(request)
    if route is None:
        return _not_found(request)
    async with request.form() as form:
        try:
            changed = _route_from_form(form, route.id)
        except PageError as exc:
            return await _route_page(request, route, 400, exc)
    if not sees(request, changed.site):
        return await _route_page(request, route, 403, PageError("patrols.error.not_your_site"))
    try:
        stored = await run_in_threadpool(_store(request).save, changed, request.state.user.name)
    except RouteExists:
        return await _route_page(request, route, 400, PageError("patrols.error.name_taken"))
    await audit(
        request,
        "patrol.route_edit",
        f"{stored.site}/{stored.name}",
        {"id": stored.id, "stations": len(stored.stations), "active": stored.active},
    )
    return RedirectResponse(f"/patrols/routes/{stored.id}", status_code=303)


async def _records(request: Request, first: date, days: int) -> list[RoundRecord]:
    """Every visible route's rounds on ``days`` days from ``first``, started by now, by start then route."""
    zone = _zone(request)
    now = datetime.now(UTC)
    store = _store(request)
    start = datetime.combine(first, datetime.min.time(), zone)

    def work() -> list[RoundRecord]:
        out: list[RoundRecord] = []
        for route in store.routes():
            if sees(request, route.site):
                out += [r for r in rounds_between(store, route, zone, start, days, now) if r.start <= now]
        return sorted(out, key=lambda r: (r.start, r.route.site, r.route.name))

    return await run_in_threadpool(work)


@login_required
async def rounds_page(request: Request) -> Response:
    zone = _zone(request)
    status_code, error = 200, None
    try:
        day = _day(request.query_params.get("date", ""), zone)
    except PageError as exc:
        day, status_code, error = datetime.now(zone).date(), 400, exc
    records = await _records(request, day, 1)
    return render(
        request,
        "patrols/rounds.html",
        status_code=status_code,
        day=day,
        previous=day - timedelta(days=1),
        following=day + timedelta(days=1),
        records=records,
        error_key=error.key if error else None,
        error_values=error.values if error else {},
    )


async def _round(request: Request) -> RoundRecord | None:
    parsed = parse_round_id(request.path_params["round_id"])
    if parsed is None:
        return None
    route_id, local = parsed
    if not 0 < route_id < 2**62:
        return None
    store = _store(request)
    route = await run_in_threadpool(store.route, route_id)
    if route is None or not sees(request, route.site):
        return None
    zone = _zone(request)
    start = datetime.combine(local.date(), datetime.min.time(), zone)
    records = await run_in_threadpool(rounds_between, store, route, zone, start, 1, datetime.now(UTC))
    return next((r for r in records if r.local_start.replace(tzinfo=None) == local), None)


@login_required
async def round_page(request: Request) -> Response:
    record = await _round(request)
    if record is None:
        return _not_found(request)
    return render(request, "patrols/round.html", record=record, zone=_zone(request))


@login_required
async def round_print(request: Request) -> Response:
    """A round's record on one page, Chinese and English together, to sign and file."""
    from console.web.i18n import translator

    record = await _round(request)
    if record is None:
        return _not_found(request)
    return render(
        request,
        "patrols/print.html",
        record=record,
        zone=_zone(request),
        zh=translator("zh"),
        en=translator("en"),
    )


EXPORT_COLUMNS = (
    "round",
    "site",
    "route",
    "round_start",
    "station",
    "gate",
    "reader",
    "expected",
    "state",
    "late_min",
    "checked_at",
    "person",
    "name",
    "time_from",
    "event_id",
)


def export_rows(records: list[RoundRecord], zone: ZoneInfo) -> list[list[Any]]:
    """One row a round station, then one a check-in matched to no station (``state`` ``extra``)."""
    rows: list[list[Any]] = []
    for r in records:
        head = [r.id, r.route.site, r.route.name, r.local_start.isoformat(timespec="minutes")]
        for s in r.stations:
            c = s.check
            rows.append(
                [
                    *head,
                    s.index + 1,
                    s.station.gate,
                    s.station.reader or "",
                    s.expected.astimezone(zone).isoformat(timespec="minutes"),
                    s.state.value,
                    s.late_min,
                    c.at.astimezone(zone).isoformat(timespec="seconds") if c else "",
                    c.person if c else "",
                    c.name if c else "",
                    ("gate" if c.trusted else "console") if c else "",
                    c.event_id if c else "",
                ]
            )
        for c in r.extras:
            rows.append(
                [
                    *head,
                    "",
                    c.gate,
                    c.reader,
                    "",
                    "extra",
                    0,
                    c.at.astimezone(zone).isoformat(timespec="seconds"),
                    c.person,
                    c.name,
                    "gate" if c.trusted else "console",
                    c.event_id,
                ]
            )
    return rows


@login_required
async def export(request: Request) -> Response:
    """Rounds of ``from``..``to`` (days, at most 31) as CSV or JSON lines, audited as ``export``."""
    from console.web.spreadsheet import table_download

    fmt = request.path_params["fmt"]
    if fmt not in ("csv", "json"):
        return _not_found(request)
    zone = _zone(request)
    try:
        first = _day(request.query_params.get("from", ""), zone)
        last = _day(request.query_params.get("to", "") or first.isoformat(), zone)
        if last < first or (last - first).days >= MAX_EXPORT_DAYS:
            raise PageError("patrols.error.bad_range")
    except PageError as exc:
        return render(request, "error.html", status_code=400, message_key=exc.key)
    records = await _records(request, first, (last - first).days + 1)
    rows = export_rows(records, zone)
    await audit(request, "export", f"patrols.{fmt}", {"from": first.isoformat(), "to": last.isoformat()})
    body, media, headers = table_download(
        EXPORT_COLUMNS, rows, fmt, f"patrols-{first.isoformat()}-{last.isoformat()}"
    )
    return Response(body, media_type=media, headers=headers)


routes: list[BaseRoute] = [
    Route("/patrols", index, methods=["GET"]),
    Route("/patrols", add_route, methods=["POST"]),
    Route("/patrols/import", import_routes, methods=["POST"]),
    Route("/patrols/routes/{route_id:int}", route_page, methods=["GET"]),
    Route("/patrols/routes/{route_id:int}", edit_route, methods=["POST"]),
    Route("/patrols/rounds", rounds_page, methods=["GET"]),
    Route("/patrols/rounds/{round_id:str}", round_page, methods=["GET"]),
    Route("/patrols/rounds/{round_id:str}/print", round_print, methods=["GET"]),
    Route("/patrols/export.{fmt:str}", export, methods=["GET"]),
]
