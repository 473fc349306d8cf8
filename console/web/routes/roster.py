"""``/roster``: the week's duty roster — drafted from the advice, edited by hand, printed per post.

Every edit is checked by :mod:`console.roster.check` before it is stored: a change that
would break a hard rule (rest, hours, rotation, a post the person may not stand at) is
refused with the rule named, and every stored change is audited.  A draft is solved in a
worker thread, bounded by a time limit, so the page never waits longer than that.

``/roster/people`` lists the people and takes a CSV file of them (admins only: one file
can change everyone's posts and hours).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import date, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.flow import FlowSettings
from console.roster.check import violations
from console.roster.model import Problem
from console.roster.people import PeopleFileError, RowError, read_people
from console.roster.plan import week_start
from console.roster.store import RosterStore, StoredShift, change_shift
from console.web.auth import admin_required, client_address, login_required, sees, site_limit
from console.web.forms import PageError, audit, field_text
from console.web.render import render

log = logging.getLogger("gatepost.console.web.roster")

DRAFT_SECONDS = 10.0
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
DAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _store(request: Request) -> RosterStore:
    state = request.app.state
    store = getattr(state, "roster_store", None)
    if store is None:
        store = RosterStore(state.ctx.db)
        state.roster_store = store
    return store


def _week(request: Request) -> date:
    """The Monday of ``?week=`` (any day of it), or of this week; :class:`PageError` for a date that is none."""
    text = request.query_params.get("week", "")
    try:
        day = date.fromisoformat(text) if text else date.today()
    except ValueError:
        raise PageError("roster.error.bad_week") from None
    if not date(2000, 1, 1) <= day <= date(9000, 12, 31):
        raise PageError("roster.error.bad_week")
    return week_start(day)


def _week_or_this(request: Request) -> tuple[date, PageError | None]:
    try:
        return _week(request), None
    except PageError as exc:
        return week_start(date.today()), exc


def _settings(request: Request) -> FlowSettings:
    return FlowSettings.from_config(getattr(request.app.state.ctx.config, "flow", None))


def _problem(request: Request, store: RosterStore, week: date) -> Problem:
    from console.roster.plan import problem_for_week

    ctx = request.app.state.ctx
    return problem_for_week(ctx.db, _settings(request), store.people(), week)


def _visible(request: Request, post: str) -> bool:
    """A post (``site/gate``) is shown to, and edited by, only those who see its site."""
    return sees(request, post.split("/", 1)[0])


def _visible_summary(request: Request, summary: dict[str, object]) -> dict[str, object]:
    """The stored summary with other sites' short hours left out (the totals are the whole week's)."""
    shown = dict(summary)
    rows = summary.get("shortfalls")
    if isinstance(rows, list):
        shown["shortfalls"] = [
            row for row in rows if isinstance(row, list) and row and _visible(request, str(row[0]))
        ]
    return shown


def _grid(shifts: list[StoredShift]) -> dict[str, list[list[StoredShift]]]:
    """Per post, per day of the week, the shifts starting that day."""
    grid: dict[str, list[list[StoredShift]]] = {}
    for shift in shifts:
        days = grid.setdefault(shift.post, [[] for _ in range(7)])
        days[shift.start_hour // 24].append(shift)
    return dict(sorted(grid.items()))


async def _page(request: Request, status_code: int = 200, error: PageError | None = None) -> Response:
    store = _store(request)
    week, bad_week = _week_or_this(request)
    if bad_week is not None:
        status_code, error = 400, bad_week
    shifts, summary, people = await run_in_threadpool(
        lambda: (store.week_shifts(week), store.week_summary(week), store.people(active_only=False))
    )
    return render(
        request,
        "roster/week.html",
        status_code=status_code,
        week=week,
        previous=week - timedelta(days=7),
        following=week + timedelta(days=7),
        grid=_grid([s for s in shifts if _visible(request, s.post)]),
        status=summary[0] if summary else None,
        summary=_visible_summary(request, summary[1]) if summary else {},
        people={p.id: p for p in people if any(_visible(request, post) for post in p.posts)},
        posts=sorted({post for p in people for post in p.posts if _visible(request, post)}),
        drafting=_drafts(request).running(week),
        day_keys=DAY_KEYS,
        error_key=error.key if error else None,
        error_values=error.values if error else {},
    )


@login_required
async def week_page(request: Request) -> Response:
    return await _page(request)


class Drafts:
    """Drafts being solved, one thread per week: a solve takes up to :data:`DRAFT_SECONDS`.

    The request that asks for a draft starts it and returns at once; the week's page says
    "drafting" until the thread stores the roster.  A second request for a week already
    being drafted starts nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[date, threading.Thread] = {}

    def running(self, week: date) -> bool:
        with self._lock:
            thread = self._running.get(week)
            return thread is not None and thread.is_alive()

    def start(self, week: date, work: Callable[[], None]) -> bool:
        with self._lock:
            if week in self._running and self._running[week].is_alive():
                return False
            thread = threading.Thread(target=work, name=f"roster-draft-{week}", daemon=True)
            self._running[week] = thread
            thread.start()
            return True


def _drafts(request: Request) -> Drafts:
    state = request.app.state
    drafts = getattr(state, "roster_drafts", None)
    if drafts is None:
        drafts = Drafts()
        state.roster_drafts = drafts
    return drafts


@login_required
async def draft(request: Request) -> Response:
    """Start solving the week from the advice (greedy roster as the start); stored as a draft when done."""
    from console.roster import greedy
    from console.roster.solver import solve

    store = _store(request)
    week, bad_week = _week_or_this(request)
    if bad_week is not None:
        return await _page(request)
    if site_limit(request) is not None:  # a draft replaces every post's week: not for one site's operator
        return await _page(request, 403, PageError("roster.error.not_your_site"))
    people = await run_in_threadpool(store.people)
    if not people:
        return await _page(request, 400, PageError("roster.error.no_people"))
    user = request.state.user.name
    audit_log = request.app.state.ctx.audit
    address = client_address(request)

    def work() -> None:
        try:
            problem = _problem(request, store, week)
            result = solve(problem, time_limit_s=DRAFT_SECONDS, hint=greedy.roster(problem))
            if violations(problem, result.assignment):  # the model and the checker disagree: keep nothing
                log.error("roster draft for %s failed the checker; not stored", week)
                return
            summary: dict[str, object] = {
                "status": result.status,
                "shortfall_hours": result.shortfall_hours,
                "untrained_hours": sum(1 for s in result.shortfalls if s.trained_missing),
                "shortfalls": [
                    [s.post, s.hour, s.missing, s.trained_missing] for s in result.shortfalls[:50]
                ],
                "gap": round(result.gap, 4) if result.gap == result.gap else None,
                "seconds": round(result.seconds, 2),
            }
            store.replace_week(week, result.assignment, status="draft", made_by=user, summary=summary)
            audit_log.record(
                user,
                "roster.draft",
                week.isoformat(),
                {k: summary[k] for k in ("status", "shortfall_hours")},
                address=address,
            )
        except Exception:  # a thread's failure must be seen in the log, and must not stop the console
            log.exception("roster draft for %s failed", week)

    _drafts(request).start(week, work)
    return RedirectResponse(f"/roster?week={week.isoformat()}", status_code=303)


@login_required
async def edit(request: Request) -> Response:
    """``add`` or ``remove`` one shift; refused with the rule named if the week would break one."""
    store = _store(request)
    week, bad_week = _week_or_this(request)
    if bad_week is not None:
        return await _page(request)
    async with request.form() as form:
        action = field_text(form, "action", 16)
        person = field_text(form, "person", 40)
        post = field_text(form, "post", 100)
        try:
            day = int(field_text(form, "day", 2) or -1)
            start = int(field_text(form, "start", 2) or -1)
            hours = int(field_text(form, "hours", 2) or 0)
        except ValueError:
            return await _page(request, 400, PageError("roster.error.bad_shift"))
    if action not in ("add", "remove") or not (0 <= day < 7 and 0 <= start < 24 and 1 <= hours <= 24):
        return await _page(request, 400, PageError("roster.error.bad_shift"))
    if not _visible(request, post):
        return await _page(request, 403, PageError("roster.error.not_your_site"))
    first = day * 24 + start

    user = request.state.user.name
    span = frozenset(range(first, min(168, first + hours)))
    refused = await run_in_threadpool(
        lambda: change_shift(store, week, person, post, span, add=action == "add", made_by=user)
    )
    if refused is not None:
        return await _page(request, 400, PageError(refused, person=person))
    await audit(
        request,
        f"roster.{action}",
        f"{week.isoformat()} {person}",
        {"post": post, "day": DAY_KEYS[day], "start": start, "hours": hours},
    )
    return RedirectResponse(f"/roster?week={week.isoformat()}", status_code=303)


@login_required
async def print_page(request: Request) -> Response:
    """One post's week on one page, in Chinese and English together, for the guard post's wall."""
    from console.web.i18n import translator

    store = _store(request)
    week, bad_week = _week_or_this(request)
    if bad_week is not None:
        return await _page(request)
    post = request.query_params.get("post", "")[:100]
    shifts, people = await run_in_threadpool(
        lambda: (store.week_shifts(week, post or None), store.people(active_only=False))
    )
    return render(
        request,
        "roster/print.html",
        week=week,
        grid=_grid([s for s in shifts if _visible(request, s.post)]),
        people={p.id: p for p in people},
        day_keys=DAY_KEYS,
        zh=translator("zh"),
        en=translator("en"),
    )


@login_required
async def people_page(request: Request) -> Response:
    return await _people(request)


async def _people(
    request: Request,
    status_code: int = 200,
    errors: tuple[RowError, ...] = (),
    error_key: str = "",
    new_link: str | None = None,
) -> Response:
    store = _store(request)
    people, pending, links = await run_in_threadpool(lambda: (store.people(), store.pending(), store.links()))
    people = [p for p in people if any(_visible(request, post) for post in p.posts)]
    duty, pins = await run_in_threadpool(_duty_of, request, store)
    qr = None
    if new_link is not None:
        import segno

        qr = segno.make(new_link, error="m").svg_data_uri(scale=4)
    return render(
        request,
        "roster/people.html",
        status_code=status_code,
        people=people,
        pending=pending,
        links=links,
        new_link=new_link,
        new_link_qr=qr,
        errors=errors,
        error_key=error_key,
        day_keys=DAY_KEYS,
        duty=duty,
        pins=pins,
        card_list=request.app.state.ctx.cards is not None,
    )


def _duty_of(request: Request, store: RosterStore) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """``(person, role) -> credential`` from the card list, and ``person -> when their PIN was set``."""
    from console.duty_credentials import duty_credentials

    registry = request.app.state.ctx.cards
    held = duty_credentials(registry) if registry is not None else []
    return {(c.person, c.role.value): c.credential for c in held}, store.pin_set_at()


@admin_required
async def make_link(request: Request) -> Response:
    """A sign-up link for one site, shown once with its QR code to print (only its hash is kept)."""
    async with request.form() as form:
        site = field_text(form, "site", 64)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", site):
        return await _people(request, 400, error_key="roster.error.bad_site")
    token = await run_in_threadpool(_store(request).make_link, site, request.state.user.name)
    await audit(request, "roster.link_made", site, {})
    url = str(request.base_url).rstrip("/") + f"/join/{token}"
    return await _people(request, new_link=url)


@admin_required
async def revoke_link(request: Request) -> Response:
    async with request.form() as form:
        prefix = field_text(form, "link", 12)
    if not re.fullmatch(r"[0-9a-f]{12}", prefix):
        return await _people(request, 400, error_key="roster.error.bad_link")
    await run_in_threadpool(_store(request).revoke_link, prefix)
    await audit(request, "roster.link_revoked", prefix, {})
    return RedirectResponse("/roster/people", status_code=303)


@admin_required
async def decide(request: Request) -> Response:
    """Approve or refuse a volunteer's sign-up."""
    async with request.form() as form:
        person = field_text(form, "person", 40)
        approve = field_text(form, "decision", 10) == "approve"
    if not await run_in_threadpool(_store(request).decide, person, approve):
        return await _people(request, 400, error_key="roster.error.not_pending")
    await audit(request, "roster.sign_up_approved" if approve else "roster.sign_up_refused", person, {})
    return RedirectResponse("/roster/people", status_code=303)


@admin_required
async def people_import(request: Request) -> Response:
    async with request.form() as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await _people(request, 400, error_key="roster.error.no_file")
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return await _people(request, 400, error_key="roster.error.file_too_large")
    try:
        people = read_people(data)
    except PeopleFileError as exc:
        return await _people(
            request, 400, errors=exc.errors, error_key=f"roster.people_error.{exc.reason.value}"
        )
    count = await run_in_threadpool(_store(request).put_people, people)
    await audit(request, "roster.people_import", upload.filename or "", {"people": count})
    return RedirectResponse("/roster/people", status_code=303)


EXPORT_COLUMNS = ("week", "person", "name", "team", "post", "date", "start", "end", "hours")


@login_required
async def export(request: Request) -> Response:
    """The week's shifts as CSV or JSON lines, one row a shift, posts limited to the user's sites."""
    from console.web.spreadsheet import table_download

    fmt = request.path_params["fmt"]
    if fmt not in ("csv", "json"):
        return render(request, "error.html", status_code=404, message_key="error.not_found")
    store = _store(request)
    week, bad_week = _week_or_this(request)
    if bad_week is not None:
        return await _page(request)
    shifts, people = await run_in_threadpool(
        lambda: (store.week_shifts(week), store.people(active_only=False))
    )
    names = {p.id: p for p in people}
    rows = []
    for s in shifts:
        if not _visible(request, s.post):
            continue
        person = names.get(s.person)
        day = week + timedelta(days=s.start_hour // 24)
        start = s.start_hour % 24
        rows.append(
            [
                week.isoformat(),
                s.person,
                person.name if person else "",
                person.team.value if person else "",
                s.post,
                day.isoformat(),
                f"{start:02d}:00",
                f"{(start + s.hours) % 24:02d}:00",
                s.hours,
            ]
        )
    await audit(request, "export", f"roster.{fmt}", {"week": week.isoformat()})
    body, media, headers = table_download(EXPORT_COLUMNS, rows, fmt, f"roster-{week.isoformat()}")
    return Response(body, media_type=media, headers=headers)


routes: list[BaseRoute] = [
    Route("/roster", week_page, methods=["GET"]),
    Route("/roster/draft", draft, methods=["POST"]),
    Route("/roster/edit", edit, methods=["POST"]),
    Route("/roster/print", print_page, methods=["GET"]),
    Route("/roster/export.{fmt:str}", export, methods=["GET"]),
    Route("/roster/people", people_page, methods=["GET"]),
    Route("/roster/people", people_import, methods=["POST"]),
    Route("/roster/links", make_link, methods=["POST"]),
    Route("/roster/links/revoke", revoke_link, methods=["POST"]),
    Route("/roster/people/decide", decide, methods=["POST"]),
]
