"""``/roster/attendance``: who stood at each post against the roster; duty credentials and PINs per person.

The attendance page and its exports read the gates' stored ``duty.check_in`` /
``duty.check_out`` events against the stored roster (console/roster/attendance.py), for
one site-local day, post by post and hour by hour, and name late arrivals and no-shows.
A user limited to some sites sees and exports only their posts, as on ``/roster``.

On the people page an admin gives a person a staff and a patrol credential (``duty:``
entries in the site's card list, console/duty_credentials.py) and a personal PIN (only
its scrypt hash is kept, console/duty_pins.py); both reach the gates by the card list
and the duty sheets, and every change is audited.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.duty_credentials import DutyCredentialError, give, take_away
from console.duty_pins import DutyPinError, hash_duty_pin
from console.roster import attendance
from console.web.auth import admin_required, login_required, sees
from console.web.forms import PageError, audit, field_text
from console.web.render import render
from console.web.routes.roster import _people, _settings, _store, _visible
from protocol.duty import DutyRole

POST_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}/[a-z0-9][a-z0-9_-]{0,31}$")


def _day(request: Request) -> date:
    """``?date=`` (site-local), today when absent; :class:`PageError` for anything else."""
    text = request.query_params.get("date", "")
    if not text:
        return datetime.now(UTC).astimezone(_settings(request).zone).date()
    try:
        day = date.fromisoformat(text[:20])
    except ValueError:
        raise PageError("roster.error.bad_date") from None
    if not date(2000, 1, 1) <= day <= date(9000, 12, 31):
        raise PageError("roster.error.bad_date")
    return day


def _post(request: Request) -> str | None:
    """``?post=site/gate`` or None; :class:`PageError` for a malformed one or one of another site."""
    text = request.query_params.get("post", "")
    if not text:
        return None
    if not POST_PATTERN.match(text):
        raise PageError("roster.error.bad_post")
    if not _visible(request, text):
        error = PageError("roster.error.not_your_site")
        error.status = 403
        raise error
    return text


def _report(request: Request, day: date, post: str | None) -> list[attendance.PostDay]:
    ctx = request.app.state.ctx

    def visible(name: str) -> bool:
        return _visible(request, name) and (post is None or name == post)

    return attendance.report(ctx.store, _store(request), day, _settings(request).zone, visible=visible)


@login_required
async def attendance_page(request: Request) -> Response:
    zone = _settings(request).zone
    today = datetime.now(UTC).astimezone(zone).date()
    try:
        day, post = _day(request), _post(request)
    except PageError as exc:
        return render(
            request,
            "roster/attendance.html",
            status_code=exc.status,
            day=today,
            post=None,
            posts=[],
            names={},
            error_key=exc.key,
            previous=today - timedelta(days=1),
            following=today + timedelta(days=1),
            zone=zone,
        )
    posts = await run_in_threadpool(_report, request, day, post)
    people = await run_in_threadpool(_store(request).people, active_only=False)
    return render(
        request,
        "roster/attendance.html",
        day=day,
        post=post,
        posts=posts,
        names={p.id: p.name for p in people},
        error_key=None,
        previous=day - timedelta(days=1),
        following=day + timedelta(days=1),
        zone=zone,
    )


@login_required
async def attendance_export(request: Request) -> Response:
    """One row per rostered shift (and per unrostered time on duty), CSV or JSON lines; audited as ``export``."""
    from console.web.spreadsheet import table_download

    fmt = request.path_params["fmt"]
    if fmt not in ("csv", "json"):
        return render(request, "error.html", status_code=404, message_key="error.not_found")
    try:
        day, post = _day(request), _post(request)
    except PageError as exc:
        return Response(f"{exc.key}\n", status_code=exc.status, media_type="text/plain; charset=utf-8")
    posts = await run_in_threadpool(_report, request, day, post)
    rows = attendance.export_rows(posts, day, _settings(request).zone)
    await audit(request, "export", f"attendance.{fmt}", {"date": day.isoformat(), "post": post or ""})
    columns = attendance.EXPORT_COLUMNS
    body, media, headers = table_download(columns, rows, fmt, f"attendance-{day.isoformat()}")
    return Response(body, media_type=media, headers=headers)


# -- duty credentials and PINs (admins, on the people page) ---------------------------------


def _person(request: Request, person_id: str) -> tuple[str, str, frozenset[str]] | None:
    """(id, name, posts) of a person the admin may see, or None."""
    for person in _store(request).people(active_only=False):
        if person.id == person_id and (not person.posts or any(_visible(request, p) for p in person.posts)):
            return person.id, person.name, person.posts
    return None


@admin_required
async def duty_credential(request: Request) -> Response:
    """Give (``action=give``) or take away (``action=remove``) a person's staff or patrol credential."""
    async with request.form() as form:
        person_id = field_text(form, "person", 40)
        role_text = field_text(form, "role", 10)
        action = field_text(form, "action", 10)
        credential = field_text(form, "credential", 120)
    ctx = request.app.state.ctx
    registry = ctx.cards
    if registry is None:
        return await _people(request, 400, error_key="roster.error.no_card_list")
    if not sees(request, ctx.config.cards.site):
        return await _people(request, 403, error_key="roster.error.not_your_site")
    try:
        role = DutyRole(role_text)
    except ValueError:
        return await _people(request, 400, error_key="roster.error.bad_role")
    found = await run_in_threadpool(_person, request, person_id)
    if found is None or action not in ("give", "remove"):
        return await _people(request, 400, error_key="roster.error.no_such_person")
    if action == "give" and not any(post.startswith(ctx.config.cards.site + "/") for post in found[2]):
        # the card list reaches [cards] site's gates only: a credential given here would check in nowhere
        return await _people(request, 400, error_key="roster.duty_error.other_site")
    if action == "give":
        try:
            version = await run_in_threadpool(give, registry, found[0], found[1], role, credential)
        except DutyCredentialError as exc:
            return await _people(request, 400, error_key=f"roster.duty_error.{exc.reason}")
        await audit(
            request,
            "roster.duty_credential_given",
            found[0],
            {"role": role.value, "credential": credential.strip(), "list_version": version},
        )
    else:
        gone = await run_in_threadpool(take_away, registry, found[0], role)
        await audit(
            request, "roster.duty_credential_removed", found[0], {"role": role.value, "credentials": gone}
        )
    return RedirectResponse("/roster/people", status_code=303)


@admin_required
async def duty_pin(request: Request) -> Response:
    """Set (``action=set``) or clear a person's personal PIN; only its hash is kept, the PIN is never shown."""
    async with request.form() as form:
        person_id = field_text(form, "person", 40)
        action = field_text(form, "action", 10)
        pin = field_text(form, "pin", 20)
    found = await run_in_threadpool(_person, request, person_id)
    if found is None or action not in ("set", "clear"):
        return await _people(request, 400, error_key="roster.error.no_such_person")
    store = _store(request)
    if action == "set":
        try:
            hashed = await run_in_threadpool(hash_duty_pin, pin)
        except DutyPinError:
            return await _people(request, 400, error_key="roster.error.bad_pin")
        await run_in_threadpool(store.set_pin, found[0], hashed, request.state.user.name)
        await audit(request, "roster.pin_set", found[0], {})
    else:
        await run_in_threadpool(store.clear_pin, found[0])
        await audit(request, "roster.pin_cleared", found[0], {})
    return RedirectResponse("/roster/people", status_code=303)


routes: list[BaseRoute] = [
    Route("/roster/attendance", attendance_page, methods=["GET"]),
    Route("/roster/attendance/export.{fmt:str}", attendance_export, methods=["GET"]),
    Route("/roster/people/duty", duty_credential, methods=["POST"]),
    Route("/roster/people/pin", duty_pin, methods=["POST"]),
]
