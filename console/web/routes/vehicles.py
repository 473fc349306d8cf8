"""``/vehicles``: resident vehicles and the blacklist — list, add, remove, import from CSV — and plate crops.

Vehicles are not a second registry: a resident vehicle is a card-list entry whose
credential is the plate's (``plate:BJ-A12345``, protocol/plates.py), and a blacklisted
plate is an entry ``deny:plate:…`` (edge/plate_decisions.py).  So every change here is one
change of the card registry, with a new list version and hash, and the card publisher
(console/card_sync.py) delivers it to the gates with the cards — snapshot or delta,
hash-checked, nothing lost.  Holder, unit, validity, daily window and zones mean what
they mean for a card; the form takes the plate as printed (``京A·12345``) and stores its
credential, so the operator never types one.

``/vehicles/crops/<event id>.jpg`` serves the plate crop the console stored beside an
``access.scan`` (console/vehicle_crops.py), to users who see that event's site.

Roles and audit are the card pages': operators add and remove, an admin imports; every
change is audited (``vehicle.add``, ``vehicle.edit``, ``vehicle.remove``, ``vehicle.import``).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.credentials import CardRegistry
from console.vehicle_crops import crop_of
from console.web.auth import admin_required, login_required, sees
from console.web.forms import MAX_FIELD_CHARS, PageError, audit, field_text, refused
from console.web.imports import ImportJob, RowProblem, job_events, job_page, read_csv, start_import
from console.web.render import render
from console.web.routes.cards import CardFormError, CardView, _with_registry, _zone, card_entry, view
from console.web.routes.flow import render_translator
from protocol.credentials import CardEntry
from protocol.plates import PlateError, parse_plate, plate_from_credential

log = logging.getLogger("gatepost.console.web.vehicles")

PLATE_PREFIX = "plate:"
BLOCK_PREFIX = "deny:"
"""The gate reads ``deny:<credential>`` as a blacklisting (edge/plate_decisions.py)."""
LIST_LIMIT = 500
MAX_CSV_BYTES = 10 * 1024 * 1024
MAX_CSV_ROWS = 100_000
CSV_COLUMNS = ("plate", "holder", "unit", "from", "until", "window", "zones", "blacklist")
YES = frozenset({"1", "yes", "y", "true", "x", "是", "黑名单"})
RECENT_EVENTS = 20


@dataclass(frozen=True, slots=True)
class VehicleView:
    card: CardView
    plate: str
    blacklisted: bool

    @property
    def credential(self) -> str:
        return self.card.credential


def vehicle_view(entry: CardEntry, zone: ZoneInfo) -> VehicleView | None:
    blacklisted = entry.credential.startswith(BLOCK_PREFIX)
    try:
        plate = plate_from_credential(entry.credential.removeprefix(BLOCK_PREFIX))
    except PlateError:
        return None
    return VehicleView(view(entry, zone), plate.text, blacklisted)


def vehicle_entry(values: dict[str, str], zone: ZoneInfo) -> CardEntry:
    """A form or CSV row as the card entry that carries the vehicle; problems are :class:`CardFormError`."""
    text = field_text(values, "plate", 40)
    if not text:
        raise CardFormError("plate", "vehicles.error.missing_plate")
    try:
        plate = parse_plate(text)
    except PlateError as exc:
        raise CardFormError("plate", "vehicles.error.bad_plate", value=text[:40], detail=exc.detail) from None
    listed = field_text(values, "blacklist").lower() in YES
    credential = (BLOCK_PREFIX if listed else "") + plate.credential
    return card_entry({**values, "credential": credential}, zone, photo_digest=None, credential=credential)


def read_vehicle_rows(text: str, zone: ZoneInfo) -> Iterable[tuple[int, CardEntry | RowProblem]]:
    """Each data row of a vehicle CSV as (line, entry or problem); a bad row never stops the rest."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower().lstrip("\ufeff") for h in next(reader, [])]
    if "plate" not in header:
        yield 1, RowProblem(1, "plate", "missing", "header lacks plate")
        return
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        yield 1, RowProblem(1, unknown[0], "unknown_column", f"columns are {', '.join(CSV_COLUMNS)}")
        return
    line, count = reader.line_num + 1, 0
    for cells in reader:
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        count += 1
        if count > MAX_CSV_ROWS:
            yield start, RowProblem(start, "-", "too_many_rows", f"at most {MAX_CSV_ROWS} rows per file")
            return
        if len(cells) > len(header):
            yield start, RowProblem(start, "-", "extra_cells", "more cells than header columns")
            continue
        try:
            yield start, vehicle_entry(dict(zip(header, cells, strict=False)), zone)
        except CardFormError as exc:
            detail = str(exc.values.get("detail") or exc.values.get("value") or "")
            yield start, RowProblem(start, exc.field, exc.key.rsplit(".", 1)[-1], detail)


def list_vehicles(registry: CardRegistry, query: str, zone: ZoneInfo) -> list[VehicleView]:
    """Resident vehicles then blacklisted plates, filtered by plate, holder or unit."""
    entries = [
        e
        for prefix in (PLATE_PREFIX, BLOCK_PREFIX + PLATE_PREFIX)
        for e in registry.search(prefix, LIST_LIMIT, 0)
        if e.credential.startswith(prefix)
    ]
    found = [v for e in entries if (v := vehicle_view(e, zone)) is not None]
    if query:
        try:
            wanted = parse_plate(query).text
        except PlateError:
            wanted = None
        needle = query.strip().upper()
        found = [
            v
            for v in found
            if v.plate == wanted
            or needle in v.plate.upper()
            or needle in v.card.entry.holder.upper()
            or needle in v.card.entry.unit.upper()
        ]
    return found


def recent_plate_events(request: Request) -> list[dict[str, Any]]:
    """The newest plate decisions this user may see, with their crop's URL when one was stored."""
    import json

    rows = request.app.state.ctx.db.query(
        "SELECT id, site, gate, time, code, reason, granted, data FROM events"
        " WHERE type = 'access.scan' AND credential = 'plate' ORDER BY row_id DESC LIMIT ?",
        (RECENT_EVENTS * 5,),
    )
    events = []
    for event_id, site, gate, time, code, reason, granted, data in rows:
        if not sees(request, site):
            continue
        body = json.loads(data) if isinstance(data, str) else (data or {})
        events.append(
            {
                "id": event_id,
                "site": site,
                "gate": gate,
                "time": time,
                "plate": code or body.get("plate"),
                "reason": reason,
                "granted": bool(granted),
                "vehicle": body.get("vehicle"),
                "resembles": body.get("resembles"),
                "crop": f"/vehicles/crops/{event_id}.jpg" if body.get("crop_ref") else None,
            }
        )
        if len(events) >= RECENT_EVENTS:
            break
    return events


def vehicle_charts(request: Request, translate: Any) -> list[Any]:
    """Today's plate decisions per vehicle lane, by hour, peaks marked: the lanes' own flow charts."""
    from datetime import datetime

    from console.flow import FlowSettings, day_bounds, day_series, events_buckets
    from console.web.charts import ChartText, day_chart

    settings = FlowSettings.from_config(getattr(request.app.state.ctx.config, "flow", None))
    zone = settings.zone
    day = datetime.now(zone).date()
    start, end = day_bounds(day, zone)
    buckets = [
        b
        for b in events_buckets(request.app.state.ctx.db, start=start, end=end, minutes=60, plates=True)
        if sees(request, b.site)
    ]
    series = (translate("flow.chart.entries"), translate("flow.chart.exits"), translate("flow.chart.denied"))
    return [
        day_chart(
            slots,
            ChartText(
                translate("vehicles.chart_title", post=post, day=day.isoformat()),
                translate("flow.chart.hour_axis"),
                translate("vehicles.chart_axis"),
                series,
                translate("flow.chart.peak"),
            ),
            chart_id=f"vehicle-day-{i}",
        )
        for i, (post, slots) in enumerate(day_series(buckets, day, zone, 60, settings.peak_fraction).items())
    ]


# -- pages ----------------------------------------------------------------------------------------


@login_required
@_with_registry
async def list_page(request: Request, registry: CardRegistry) -> Response:
    query = request.query_params.get("q", "")[:MAX_FIELD_CHARS]
    zone = _zone(request)
    vehicles = await run_in_threadpool(list_vehicles, registry, query, zone)
    recent = await run_in_threadpool(recent_plate_events, request)
    charts = await run_in_threadpool(vehicle_charts, request, render_translator(request))
    state = await run_in_threadpool(lambda: registry.state)
    return render(
        request,
        "vehicles/list.html",
        vehicles=vehicles,
        q=query,
        state=state,
        recent=recent,
        charts=charts,
        limit=LIST_LIMIT,
    )


@login_required
@_with_registry
async def new_page(request: Request, registry: CardRegistry) -> Response:
    return render(request, "vehicles/edit.html", form={}, vehicle=None)


@login_required
@_with_registry
async def create(request: Request, registry: CardRegistry) -> Response:
    form = await request.form(max_files=0, max_fields=20)
    values = {k: v[:MAX_FIELD_CHARS] for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    zone = _zone(request)
    try:
        entry = vehicle_entry(values, zone)
        if await run_in_threadpool(registry.get, entry.credential) is not None:
            raise CardFormError("plate", "vehicles.error.exists", plate=values.get("plate", "")[:40])
        version = await run_in_threadpool(registry.put, [entry])
    except CardFormError as exc:
        log.info("vehicle refused: %s", exc)
        return refused(request, "vehicles/edit.html", exc, form=values, vehicle=None)
    await audit(
        request,
        "vehicle.add",
        f"card:{entry.credential}",
        {"holder": entry.holder, "unit": entry.unit, "version": version},
    )
    plate = vehicle_view(entry, zone)
    return RedirectResponse(f"/vehicles?q={plate.plate if plate else ''}&changed={version}", status_code=303)


def _edit_values(vehicle: VehicleView) -> dict[str, str]:
    card, entry = vehicle.card, vehicle.card.entry
    return {
        "plate": vehicle.plate,
        "holder": entry.holder,
        "unit": entry.unit,
        "from": card.valid_from,
        "until": card.valid_until,
        "window": card.window,
        "zones": card.zones,
        "blacklist": "yes" if vehicle.blacklisted else "",
    }


async def _vehicle(request: Request, registry: CardRegistry) -> VehicleView | None:
    credential = request.path_params["credential"][:100]
    entry = await run_in_threadpool(registry.get, credential)
    return None if entry is None else vehicle_view(entry, _zone(request))


@login_required
@_with_registry
async def edit_page(request: Request, registry: CardRegistry) -> Response:
    vehicle = await _vehicle(request, registry)
    if vehicle is None:
        return render(request, "error.html", status_code=404, message_key="vehicles.error.unknown")
    return render(request, "vehicles/edit.html", form=_edit_values(vehicle), vehicle=vehicle)


@login_required
@_with_registry
async def update(request: Request, registry: CardRegistry) -> Response:
    """Holder, unit, dates, window and zones; the plate and whether it is blacklisted stay (remove and add)."""
    vehicle = await _vehicle(request, registry)
    if vehicle is None:
        return render(request, "error.html", status_code=404, message_key="vehicles.error.unknown")
    form = await request.form(max_files=0, max_fields=20)
    values = {k: v[:MAX_FIELD_CHARS] for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    values.update(plate=vehicle.plate, blacklist="yes" if vehicle.blacklisted else "")
    try:
        entry = vehicle_entry(values, _zone(request))
        version = await run_in_threadpool(registry.put, [entry])
    except CardFormError as exc:
        return refused(request, "vehicles/edit.html", exc, form=values, vehicle=vehicle)
    await audit(
        request,
        "vehicle.edit",
        f"card:{entry.credential}",
        {"holder": entry.holder, "unit": entry.unit, "version": version},
    )
    return RedirectResponse(f"/vehicles?q={vehicle.plate}&changed={version}", status_code=303)


@login_required
@_with_registry
async def remove(request: Request, registry: CardRegistry) -> Response:
    credential = request.path_params["credential"][:100]
    form = await request.form(max_files=0, max_fields=5)
    entry = await run_in_threadpool(registry.get, credential)
    zone = _zone(request)
    if entry is None or vehicle_view(entry, zone) is None:
        return render(request, "error.html", status_code=404, message_key="vehicles.error.unknown")
    if form.get("confirm") != "yes":
        vehicles = await run_in_threadpool(list_vehicles, registry, "", zone)
        state = await run_in_threadpool(lambda: registry.state)
        return render(
            request,
            "vehicles/list.html",
            status_code=400,
            vehicles=vehicles,
            q="",
            state=state,
            recent=[],
            limit=LIST_LIMIT,
            error_key="vehicles.error.confirm_required",
        )
    version = await run_in_threadpool(registry.remove, [credential])
    await audit(request, "vehicle.remove", f"card:{credential}", {"holder": entry.holder, "version": version})
    return RedirectResponse(f"/vehicles?changed={version}", status_code=303)


@admin_required
@_with_registry
async def import_page(request: Request, registry: CardRegistry) -> Response:
    return render(request, "vehicles/import.html", columns=CSV_COLUMNS)


@admin_required
@_with_registry
async def import_start(request: Request, registry: CardRegistry) -> Response:
    form = await request.form(max_files=1, max_fields=5)
    try:
        upload = await read_csv(form, MAX_CSV_BYTES, "vehicles")
    except PageError as exc:
        return refused(request, "vehicles/import.html", exc, columns=CSV_COLUMNS)
    finally:
        await form.close()
    text = upload.text
    zone = _zone(request)
    result: dict[str, Any] = {}

    def work(job: ImportJob) -> None:
        total = max(0, sum(1 for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)) - 1)
        job.update(total=total + 1)  # the last step is the one registry change
        entries: dict[str, CardEntry] = {}
        problems: list[RowProblem] = []
        for done, (_line, item) in enumerate(read_vehicle_rows(text, zone), start=1):
            if isinstance(item, RowProblem):
                problems.append(item)
            else:
                entries[item.credential] = item  # a plate listed twice: the later row wins
            if done % 200 == 0:
                job.update(done=min(done, total), problems=list(problems))
        job.update(done=total, problems=problems)
        result["version"] = registry.put(entries.values()) if entries else None
        job.update(done=total + 1, imported=sorted(entries))

    def summary(job: ImportJob) -> dict[str, Any]:
        return {
            "vehicles": len(job.imported),
            "rejected": len(job.problems),
            "version": result.get("version"),
            "error": job.error,
        }

    return start_import(request, "vehicles", upload.filename, work, "vehicle.import", summary)


@login_required
async def crop(request: Request) -> Response:
    event_id = request.path_params["event_id"]
    missing = render(request, "error.html", status_code=404, message_key="error.not_found")
    if len(event_id) != 32 or any(c not in "0123456789abcdef" for c in event_id):
        return missing
    ctx = request.app.state.ctx
    site_rows = await run_in_threadpool(ctx.db.query, "SELECT site FROM events WHERE id = ?", (event_id,))
    if not site_rows or not sees(request, site_rows[0][0]):
        return missing  # another site's car is not this user's business, nor its existence
    jpeg = await run_in_threadpool(crop_of, ctx.db, event_id)
    if jpeg is None:
        return missing
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


routes: list[BaseRoute] = [
    Route("/vehicles", list_page, methods=["GET"], name="vehicles"),
    Route("/vehicles/new", new_page, methods=["GET"], name="vehicles_new"),
    Route("/vehicles/new", create, methods=["POST"], name="vehicles_create"),
    Route("/vehicles/import", import_page, methods=["GET"], name="vehicles_import"),
    Route("/vehicles/import", import_start, methods=["POST"], name="vehicles_import_start"),
    Route("/vehicles/import/{job:str}", job_page("vehicles"), methods=["GET"], name="vehicles_job"),
    Route(
        "/vehicles/import/{job:str}/events",
        job_events("vehicles"),
        methods=["GET"],
        name="vehicles_job_events",
    ),
    Route("/vehicles/crops/{event_id:str}.jpg", crop, methods=["GET"], name="vehicle_crop"),
    Route("/vehicles/{credential:str}/edit", edit_page, methods=["GET"], name="vehicle_edit"),
    Route("/vehicles/{credential:str}/edit", update, methods=["POST"], name="vehicle_update"),
    Route("/vehicles/{credential:str}/remove", remove, methods=["POST"], name="vehicle_remove"),
]
