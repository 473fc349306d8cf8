"""Alarms: the list (open first), and acknowledgement with a note.

A user limited to some sites sees and acknowledges their alarms alone: acknowledging
another site's alarm is refused (403) and audited (``alarm.ack.denied``).
"""

from __future__ import annotations

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.alarms import AlarmError
from console.web import scope
from console.web.auth import current_user, login_required, refuse, site_limit
from console.web.forms import audit
from console.web.queries import MAX_ROW_ID
from console.web.render import render


async def _page(request: Request, status_code: int = 200, error: str | None = None) -> Response:
    ctx = request.app.state.ctx
    show = request.query_params.get("show", "open")
    sites = site_limit(request)
    alarms = await to_thread.run_sync(lambda: scope.alarms(ctx, sites, open_only=show != "all", limit=200))
    return render(request, "alarms.html", status_code=status_code, alarms=alarms, show=show, error=error)


@login_required
async def alarm_list(request: Request) -> Response:
    return await _page(request)


@login_required
async def acknowledge(request: Request) -> Response:
    ctx = request.app.state.ctx
    user = current_user(request)
    assert user is not None
    async with request.form() as form:
        note = str(form.get("note") or "")
    row_id: int = request.path_params["row_id"]
    try:
        if row_id > MAX_ROW_ID:  # the database would refuse the number itself, not find no alarm
            raise AlarmError(f"no alarm {row_id}")
        found = await to_thread.run_sync(ctx.alarms.get, row_id)
        if found is not None and not user.sees(found.site):
            return await refuse(
                request, "alarm.ack", f"#{row_id}", {"site": found.site}, message_key="error.not_your_site"
            )
        alarm = await to_thread.run_sync(lambda: ctx.alarms.acknowledge(row_id, user.name, note))
    except (AlarmError, ValueError) as exc:
        return await _page(request, status_code=400, error=str(exc))
    await audit(
        request, "alarm.ack", f"{alarm.kind} {alarm.site}/{alarm.gate} #{alarm.row_id}", {"note": alarm.note}
    )
    ctx.hub.publish("alarm", alarm.to_dict())
    return RedirectResponse("/alarms", status_code=303)


routes: list[BaseRoute] = [
    Route("/alarms", alarm_list, methods=["GET"]),
    Route("/alarms/{row_id:int}/ack", acknowledge, methods=["POST"]),
]
