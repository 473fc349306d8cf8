"""``/roster/people/edit``: add or change one person on a page; ``/roster/people/retire``: take them off.

A site office keeps its people in a spreadsheet (the CSV import), but a new guard on a
Monday morning or a volunteer's changed phone number should not need a file.  The form's
fields are the CSV's columns and go through the same checks (:func:`read_person`), so a
person typed here is held to what an import would be, and every mistake is named by field.

Admins and operators both manage people (issue 18); an operator limited to some sites may
only touch people whose every post is in their sites, and only give posts there, so no one
moves a guard of a compound they cannot see.  Retiring keeps the person (past rosters and
attendance name them) and is refused while they hold a shift this week or later or a duty
credential: those are taken off first, each checked and audited on its own page.
"""

from __future__ import annotations

from datetime import date

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.roster.model import Person, Team
from console.roster.people import COLUMNS, PeopleFileError, RowError, format_availability, read_person
from console.roster.plan import week_start
from console.roster.store import RosterStore
from console.web.auth import login_required, sees
from console.web.forms import audit, field_text
from console.web.render import render

FIELD_LIMIT = 400


def _store(request: Request) -> RosterStore:
    from console.web.routes.roster import _store as roster_store

    return roster_store(request)


def _may_post(request: Request, post: str) -> bool:
    return sees(request, post.split("/", 1)[0])


def _may_person(request: Request, person: Person) -> bool:
    """Only someone who sees every one of a person's posts may change or retire them."""
    return all(_may_post(request, post) for post in person.posts)


def _fields_of(person: Person) -> dict[str, str]:
    """The form's fields for an existing person, in the CSV's words."""
    return {
        "id": person.id,
        "name": person.name,
        "team": person.team.value,
        "posts": "; ".join(sorted(person.posts)),
        "available": format_availability(person.available),
        "trained": "yes" if person.trained else "no",
        "phone": person.phone,
        "languages": "; ".join(person.languages),
        "max_hours_week": "" if person.max_hours_week is None else str(person.max_hours_week),
        "max_hours_day": "" if person.max_hours_day is None else str(person.max_hours_day),
    }


def _find(store: RosterStore, person_id: str) -> Person | None:
    return next((p for p in store.people() if p.id == person_id), None)


def _form(
    request: Request,
    fields: dict[str, str],
    *,
    new: bool,
    status_code: int = 200,
    errors: tuple[RowError, ...] = (),
    error_key: str = "",
) -> Response:
    return render(
        request,
        "roster/person.html",
        status_code=status_code,
        fields=fields,
        new=new,
        errors=errors,
        error_key=error_key,
        teams=[team.value for team in Team],
    )


@login_required
async def person_page(request: Request) -> Response:
    """The form: empty for a new person, filled for ``?person=<id>``."""
    person_id = request.query_params.get("person", "")[:40]
    if not person_id:
        return _form(request, {"available": "always", "team": Team.VOLUNTEER.value}, new=True)
    person = await run_in_threadpool(_find, _store(request), person_id)
    if person is None or not _may_person(request, person):
        return _form(request, {}, new=True, status_code=404, error_key="roster.error.no_person")
    return _form(request, _fields_of(person), new=False)


@login_required
async def person_save(request: Request) -> Response:
    """Add a person (``new=1``: the id must never have been used) or change one, checked like a CSV row."""
    async with request.form() as form:
        fields = {column: field_text(form, column, FIELD_LIMIT) for column in COLUMNS}
        new = field_text(form, "new", 1) == "1"
    store = _store(request)
    existing = await run_in_threadpool(_find, store, fields["id"])
    if not new and (existing is None or not _may_person(request, existing)):
        return _form(request, fields, new=False, status_code=404, error_key="roster.error.no_person")
    taken = await run_in_threadpool(store.ids) if new else set()
    try:
        person = read_person(fields, taken=taken)
    except PeopleFileError as exc:
        return _form(request, fields, new=new, status_code=400, errors=exc.errors)
    if not all(_may_post(request, post) for post in person.posts):
        return _form(request, fields, new=new, status_code=403, error_key="roster.error.post_not_yours")
    await run_in_threadpool(store.put_people, [person])
    await audit(
        request,
        "roster.person_add" if new else "roster.person_change",
        person.id,
        {
            "fields": sorted(
                k for k, v in _fields_of(person).items() if existing is None or _fields_of(existing)[k] != v
            )
        },
    )
    return RedirectResponse(f"/roster/people#person-{person.id}", status_code=303)


@login_required
async def person_retire(request: Request) -> Response:
    """Take a person off the list; refused while they still hold a shift from this week on or a duty credential."""
    async with request.form() as form:
        person_id = field_text(form, "person", 40)
    store = _store(request)
    person = await run_in_threadpool(_find, store, person_id)
    if person is None or not _may_person(request, person):
        return _form(request, {}, new=True, status_code=404, error_key="roster.error.no_person")
    shifts = await run_in_threadpool(store.shifts_from, person.id, week_start(date.today()))
    if shifts:
        return _form(
            request,
            _fields_of(person),
            new=False,
            status_code=409,
            error_key="roster.error.retire_has_shifts",
        )
    if await run_in_threadpool(_holds_duty_credential, request, person.id):
        return _form(
            request,
            _fields_of(person),
            new=False,
            status_code=409,
            error_key="roster.error.retire_has_credential",
        )
    await run_in_threadpool(store.retire, person.id)
    await audit(request, "roster.person_retire", person.id, {})
    return RedirectResponse("/roster/people", status_code=303)


def _holds_duty_credential(request: Request, person_id: str) -> bool:
    from console.duty_credentials import duty_credentials

    registry = request.app.state.ctx.cards
    return registry is not None and any(c.person == person_id for c in duty_credentials(registry))


routes: list[BaseRoute] = [
    Route("/roster/people/edit", person_page, methods=["GET"]),
    Route("/roster/people/edit", person_save, methods=["POST"]),
    Route("/roster/people/retire", person_retire, methods=["POST"]),
]
