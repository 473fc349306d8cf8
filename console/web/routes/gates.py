"""The gates overview, the live stream every page listens to, and remote unlock.

An operator limited to some sites sees their gates alone, here and in the stream; the
unlock button shows on the gates they may open, and the unlock itself checks the
``unlock`` permission for that gate: without it the answer is 403 and an audit entry
(``unlock.denied``) naming the operator.  The command carries the session's operator
name, so the gate's event and the audit log name the same person.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from console.users import Permission
from console.web import scope
from console.web.auth import current_user, login_required, may, refuse, sees, site_limit
from console.web.forms import audit
from console.web.hub import is_close, sse_format
from console.web.render import render

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
KEEPALIVE_S = 15.0
STREAM_KINDS = frozenset({"event", "gate", "alarm"})


@login_required
async def overview(request: Request) -> Response:
    ctx = request.app.state.ctx
    limit = site_limit(request)
    rows = [row for row in request.app.state.board.rows() if limit is None or row.site in limit]
    open_alarms = await to_thread.run_sync(scope.open_alarm_count, ctx, limit)
    # the registry's current version, so a gate holding an older card list shows "v12 of 14"
    cards_current = await to_thread.run_sync(lambda: ctx.cards.version) if ctx.cards is not None else None
    unlockable = {(row.site, row.gate) for row in rows if may(request, Permission.UNLOCK, row.site, row.gate)}
    return render(
        request,
        "overview.html",
        gates=rows,
        open_alarms=open_alarms,
        cards_current=cards_current,
        unlockable=unlockable,
    )


@login_required
async def stream(request: Request) -> Response:
    """Server-Sent Events: ``event``, ``gate`` and ``alarm`` messages as the store takes them.

    ``?kinds=event,gate`` picks what to receive; ``gate``, ``type``, ``reason``, ``holder``
    filter events like the list.  A comment every 15 s keeps proxies from closing an idle
    stream and lets the server notice a closed tab.  A user limited to some sites receives
    only theirs; each gate message says whether this user may unlock that gate.
    """
    hub = request.app.state.ctx.hub
    user = current_user(request)
    assert user is not None
    kinds = {k for k in request.query_params.get("kinds", "event,gate,alarm").split(",") if k in STREAM_KINDS}
    filters = {
        key: request.query_params.get(key, "")[:100]
        for key in ("site", "gate", "type", "reason", "holder")
        if request.query_params.get(key)
    }
    sub = hub.subscribe(kinds or STREAM_KINDS, filters, sites=user.site_limit)

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n: connected\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if is_close(message):
                    return
                kind, payload = message
                if kind == "gate":
                    payload = {
                        **payload,
                        "unlock": user.may(Permission.UNLOCK, payload["site"], payload["gate"]),
                    }
                yield sse_format(kind, payload)
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def _gate(request: Request) -> tuple[str, str] | None:
    site, gate = request.path_params["site"], request.path_params["gate"]
    if not (_NAME.fullmatch(site) and _NAME.fullmatch(gate)):  # match() would pass "north\n"
        return None
    return site, gate


@login_required
async def unlock_confirm(request: Request) -> Response:
    names = _gate(request)
    if names is None or not sees(request, names[0]):
        return render(request, "error.html", status_code=404, message_key="error.not_found")
    if not may(request, Permission.UNLOCK, *names):
        return render(request, "error.html", status_code=403, message_key="error.no_unlock")
    seconds = request.app.state.ctx.config.web.unlock_seconds
    return render(request, "unlock.html", site=names[0], gate=names[1], seconds=seconds, result=None)


@login_required
async def unlock(request: Request) -> Response:
    """Publish an ``unlock`` command and wait (bounded) for the gate's answer; audited either way."""
    ctx = request.app.state.ctx
    names = _gate(request)
    if names is None:
        return render(request, "error.html", status_code=404, message_key="error.not_found")
    async with request.form() as form:
        confirmed = form.get("confirm") == "yes"
    site, gate = names
    if not may(request, Permission.UNLOCK, site, gate):
        reason = "no_permission" if sees(request, site) else "not_your_site"
        return await refuse(
            request, "unlock", f"{site}/{gate}", {"reason": reason}, message_key="error.no_unlock"
        )
    seconds = ctx.config.web.unlock_seconds
    if not confirmed:
        return render(
            request,
            "unlock.html",
            status_code=400,
            site=site,
            gate=gate,
            seconds=seconds,
            result=None,
            error="unlock.not_confirmed",
        )
    user = current_user(request)
    assert user is not None
    if ctx.commands is None:
        result = None
        outcome = {"status": "unreachable", "error": "no broker configured"}
    else:
        result = await to_thread.run_sync(
            lambda: ctx.commands.send(site, gate, "unlock", {"seconds": seconds}, operator=user.name)
        )
        outcome = {
            "status": result.status,
            "command_id": result.command_id,
            "error": result.error,
            "result": result.result,
            "elapsed_s": result.elapsed_s,
        }
    await audit(request, "unlock", f"{site}/{gate}", outcome)
    status_code = 200 if outcome["status"] == "ok" else 502
    return render(
        request, "unlock.html", status_code=status_code, site=site, gate=gate, seconds=seconds, result=outcome
    )


routes: list[BaseRoute] = [
    Route("/", overview, methods=["GET"]),
    Route("/stream", stream, methods=["GET"]),
    Route("/gates/{site}/{gate}/unlock", unlock_confirm, methods=["GET"]),
    Route("/gates/{site}/{gate}/unlock", unlock, methods=["POST"]),
]
