"""The event list (with live tail), one event's detail, and exports of events and flow.

A user limited to some sites reads theirs alone (console/web/scope.py): a filter naming
another site is refused (403), an event of another site is "not found", and the exports
hold their sites' rows only.  Every CSV goes through console/web/spreadsheet.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from console.web import queries, scope
from console.web.auth import login_required, site_limit
from console.web.forms import audit
from console.web.hub import event_summary
from console.web.render import render
from console.web.spreadsheet import rows_text

if TYPE_CHECKING:
    from console.store import StoredEvent

PAGE = 100
CSV_COLUMNS = (
    "row_id",
    "id",
    "site",
    "gate",
    "boot",
    "seq",
    "time",
    "clock_trusted",
    "type",
    "granted",
    "reason",
    "credential",
    "code",
    "holder",
    "unit",
    "reader",
    "data",
)
FLOW_COLUMNS = ("site", "gate", "hour", "entries", "exits", "denied")
MAX_FLOW_DAYS = 400


def site_zone(request: Request) -> ZoneInfo:
    """The site's time zone (``[flow] timezone``): the days a guard types and every time a page shows."""
    return ZoneInfo(getattr(request.app.state.ctx.config.flow, "timezone", "Asia/Shanghai"))


def _local_day(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d") if moment is not None else ""


@login_required
async def event_list(request: Request) -> Response:
    ctx = request.app.state.ctx
    zone = site_zone(request)
    flt = queries.EventFilter.parse(request.query_params, zone)
    sites = site_limit(request)
    if flt.site and not scope.visible(sites, flt.site):
        return _other_site(request)
    before_row_id = queries.parse_row_id(request.query_params.get("before"))
    events, gates, types = await to_thread.run_sync(
        lambda: (
            scope.search(ctx.store, flt, sites, before_row_id=before_row_id, limit=PAGE),
            scope.gates(ctx.store, sites),
            queries.event_types(ctx.db),
        )
    )
    return render(
        request,
        "events.html",
        events=[event_summary(e) for e in events],
        flt=flt,
        gates=gates,
        types=types,
        next_before=events[-1].row_id if len(events) == PAGE else None,
        live=before_row_id is None and flt.end is None and not flt.flagged,
        query=flt.query_string(),
        start_day=_local_day(flt.start, zone),
        end_day=_local_day(flt.end - timedelta(microseconds=1), zone) if flt.end else "",
    )


@login_required
async def event_detail(request: Request) -> Response:
    ctx = request.app.state.ctx
    event = await to_thread.run_sync(queries.get_event, ctx.db, request.path_params["event_id"])
    if event is None or not scope.visible(site_limit(request), event.site):  # another site's: not here
        return render(request, "error.html", status_code=404, message_key="error.not_found")
    pretty = json.dumps(event.data, ensure_ascii=False, indent=2, sort_keys=True)
    return render(request, "event.html", event=event, data_json=pretty)


def _json_lines(items: Iterator[dict[str, object]]) -> Iterator[str]:
    yield "["
    first = True
    for item in items:
        yield ("\n" if first else ",\n") + json.dumps(item, ensure_ascii=False)
        first = False
    yield "\n]\n"


def _event_row(event: StoredEvent) -> list[object]:
    data = event.data
    return [
        event.row_id,
        event.id,
        event.site,
        event.gate,
        event.boot,
        event.seq,
        event.time,
        int(event.clock_trusted),
        event.type,
        data.get("granted"),
        data.get("reason") or data.get("cause"),
        data.get("credential"),
        data.get("code"),
        data.get("holder"),
        data.get("unit"),
        data.get("reader"),
        json.dumps(data, ensure_ascii=False, sort_keys=True),
    ]


def _event_dict(event: StoredEvent) -> dict[str, object]:
    return {
        "row_id": event.row_id,
        "id": event.id,
        "site": event.site,
        "gate": event.gate,
        "boot": event.boot,
        "seq": event.seq,
        "time": event.time,
        "clock_trusted": event.clock_trusted,
        "type": event.type,
        "data": event.data,
        "received_at": event.received_at,
    }


def _other_site(request: Request) -> Response:
    """A filter naming a site this user does not see."""
    return render(request, "error.html", status_code=403, message_key="error.not_your_site")


def _bad_request(request: Request, errors: tuple[str, ...] | list[str]) -> Response:
    return render(request, "error.html", status_code=400, message_key="error.bad_filter", errors=list(errors))


def _download(body: Iterator[str], name: str, fmt: str) -> StreamingResponse:
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    return StreamingResponse(
        (chunk.encode("utf-8") for chunk in body),
        media_type=media,
        headers={"content-disposition": f'attachment; filename="{name}.{fmt}"', "cache-control": "no-store"},
    )


@login_required
async def export_events(request: Request) -> Response:
    ctx = request.app.state.ctx
    fmt = request.path_params["fmt"]
    if fmt not in ("csv", "json"):
        return render(request, "error.html", status_code=404, message_key="error.not_found")
    flt = queries.EventFilter.parse(request.query_params, site_zone(request))
    if flt.errors:
        return _bad_request(request, flt.errors)
    sites = site_limit(request)
    if flt.site and not scope.visible(sites, flt.site):
        return _other_site(request)
    await audit(request, "export", f"events.{fmt}", {"filter": flt.query_string()})
    events = scope.iter_events(ctx.store, flt, sites)
    if fmt == "csv":
        body = rows_text(CSV_COLUMNS, (_event_row(e) for e in events))
    else:
        body = _json_lines(_event_dict(e) for e in events)
    return _download(body, "events", fmt)


@login_required
async def export_flow(request: Request) -> Response:
    """Hourly entries/exits/denials per gate; ``start``/``end`` default to the last 30 days."""
    ctx = request.app.state.ctx
    fmt = request.path_params["fmt"]
    if fmt not in ("csv", "json"):
        return render(request, "error.html", status_code=404, message_key="error.not_found")
    flt = queries.EventFilter.parse(request.query_params, site_zone(request))
    errors = list(flt.errors)
    end = flt.end or datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = flt.start or end - timedelta(days=30)
    if end - start > timedelta(days=MAX_FLOW_DAYS) or end <= start:
        errors.append("error.bad_range")
    if errors:
        return _bad_request(request, errors)
    sites = site_limit(request)
    if flt.site and not scope.visible(sites, flt.site):
        return _other_site(request)
    # flood-flagged events are in the flow (docs/console.md); ``exclude_flagged=1`` recomputes it without them
    exclude = request.query_params.get("exclude_flagged") == "1"
    await audit(request, "export", f"flow.{fmt}", {"filter": flt.query_string(), "exclude_flagged": exclude})
    rows = await to_thread.run_sync(
        lambda: scope.flow(
            ctx.store, flt.site or None, flt.gate or None, start, end, sites, exclude_flagged=exclude
        )
    )
    if fmt == "csv":
        body = rows_text(FLOW_COLUMNS, ([r.site, r.gate, r.hour, r.entries, r.exits, r.denied] for r in rows))
    else:
        body = _json_lines({k: getattr(r, k) for k in FLOW_COLUMNS} for r in rows)
    return _download(body, "flow", fmt)


routes: list[BaseRoute] = [
    Route("/events", event_list, methods=["GET"]),
    Route("/events/{event_id}", event_detail, methods=["GET"]),
    Route("/export/events.{fmt:str}", export_events, methods=["GET"]),
    Route("/export/flow.{fmt:str}", export_flow, methods=["GET"]),
]
