"""``/join/{link}``: volunteers sign up on their phones, and pick and cancel their own shifts.

No app and no account: a compound's office prints a link (and its QR code) for its site;
a volunteer opens it, registers, and is given a page of their own (a second secret in
its address, shown once: "bookmark this page").  An admin approves the sign-up on the
People page; from then on the volunteer's page lists the open hours at the posts they
offered — where this week's or next week's roster falls short of the advice — and the
shifts they hold.  Taking a shift goes through the same rule checker as an operator's
edit, and everything is audited under the volunteer's id.

Both secrets are 128-bit random and kept only as hashes; a wrong one is a 404 that says
so, the same for a revoked link.  A link takes at most :data:`MAX_PENDING` sign-ups
waiting for approval, so a leaked link cannot fill the People page.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.flow import FlowSettings
from console.roster.check import shortfalls
from console.roster.model import Person, Team
from console.roster.plan import problem_for_week, week_start
from console.roster.store import RosterStore, broken_rule, change_shift, with_hours
from console.web.auth import client_address
from console.web.forms import field_text
from console.web.render import render
from console.web.routes.roster import DAY_KEYS

log = logging.getLogger("gatepost.console.web.join")

MAX_PENDING = 200
MAX_OPEN_SHIFTS = 12


@dataclass(frozen=True, slots=True)
class OpenShift:
    week: date
    post: str
    start_hour: int
    hours: int

    @property
    def day(self) -> str:
        return DAY_KEYS[self.start_hour // 24]

    @property
    def date(self) -> date:
        return self.week + timedelta(days=self.start_hour // 24)


def _store(request: Request) -> RosterStore:
    from console.web.routes.roster import _store as shared

    return shared(request)


def _settings(request: Request) -> FlowSettings:
    return FlowSettings.from_config(getattr(request.app.state.ctx.config, "flow", None))


def _not_found(request: Request) -> Response:
    return render(request, "roster/join_gone.html", status_code=404)


def _site_posts(request: Request, site: str) -> list[str]:
    return [f"{s}/{g}" for s, g in request.app.state.ctx.store.gates() if s == site]


async def join_page(request: Request) -> Response:
    link = request.path_params["link"]
    store = _store(request)
    site = await run_in_threadpool(store.link_site, link)
    if site is None:
        return _not_found(request)
    posts = await run_in_threadpool(_site_posts, request, site)
    return render(request, "roster/join.html", site=site, posts=posts, day_keys=DAY_KEYS, error_key=None)


async def join(request: Request) -> Response:
    link = request.path_params["link"]
    store = _store(request)
    site = await run_in_threadpool(store.link_site, link)
    if site is None:
        return _not_found(request)
    posts_here = await run_in_threadpool(_site_posts, request, site)
    async with request.form() as form:
        name = field_text(form, "name", 60)
        phone = field_text(form, "phone", 30)
        languages = tuple(x for x in ("zh", "en") if form.get(f"lang_{x}"))
        posts = frozenset(str(p) for p in form.getlist("posts") if str(p) in posts_here)
        days = [i for i, key in enumerate(DAY_KEYS) if form.get(f"day_{key}")]
        try:
            first, last = int(field_text(form, "from", 2)), int(field_text(form, "to", 2))
        except ValueError:
            first, last = -1, -1

    def refuse(key: str) -> Response:
        return render(
            request,
            "roster/join.html",
            status_code=400,
            site=site,
            posts=posts_here,
            day_keys=DAY_KEYS,
            error_key=key,
        )

    if not name or not phone:
        return refuse("join.error.name_phone")
    if not posts:
        return refuse("join.error.posts")
    if not days or not (0 <= first < last <= 24):
        return refuse("join.error.hours")
    if await run_in_threadpool(store.count_pending, link) >= MAX_PENDING:
        return refuse("join.error.full")
    person = Person(
        id=f"v-{secrets.token_hex(4)}",
        name=name,
        team=Team.VOLUNTEER,
        posts=posts,
        available=frozenset(d * 24 + h for d in days for h in range(first, last)),
        phone=phone,
        languages=languages,
    )
    secret = await run_in_threadpool(store.sign_up, person, link)
    await run_in_threadpool(
        lambda: request.app.state.ctx.audit.record(
            f"volunteer:{person.id}", "roster.sign_up", site, {"name": name}, address=client_address(request)
        )
    )
    return RedirectResponse(f"/join/{link}/me/{secret}?new=1", status_code=303)


def _open_shifts(request: Request, store: RosterStore, person: Person) -> list[OpenShift]:
    """Hours this week and next where the roster falls short at this person's posts, in blocks they could take."""
    settings = _settings(request)
    now = datetime.now(settings.zone)
    this_week = week_start(now.date())
    found: list[OpenShift] = []
    for week in (this_week, this_week + timedelta(days=7)):
        if store.week_summary(week) is None:
            continue  # no roster yet: nothing is open before the office drafts one
        people = store.people(active_only=False)
        problem = problem_for_week(request.app.state.ctx.db, settings, store.people(), week)
        assignment = store.week_assignment(week)
        earliest = (now.weekday() * 24 + now.hour + 1) if week == this_week else 0
        short = sorted(
            (s.post, s.hour)
            for s in shortfalls(problem, assignment)
            if s.missing and s.post in person.posts and s.hour in person.available and s.hour >= earliest
        )
        block: list[tuple[str, int]] = []
        for post, hour in [*short, ("", -1)]:
            if block and (
                post != block[-1][0]
                or hour != block[-1][1] + 1
                or len(block) == problem.rules.max_shift_hours
            ):
                candidate = OpenShift(week, block[0][0], block[0][1], len(block))
                span = frozenset(range(candidate.start_hour, candidate.start_hour + candidate.hours))
                trial = with_hours(assignment, person.id, candidate.post, span, add=True) or {}
                # Only shifts this person may take without breaking a rule: a refusal after a tap is no help.
                if (
                    len(block) >= problem.rules.min_shift_hours
                    and broken_rule(people, trial, person.id) is None
                ):
                    found.append(candidate)
                block = []
            if post:
                block.append((post, hour))
            if len(found) >= MAX_OPEN_SHIFTS:
                return found
    return found


def _own_shifts(store: RosterStore, person: Person, today: date) -> list[OpenShift]:
    this_week = week_start(today)
    return [
        OpenShift(week, s.post, s.start_hour, s.hours)
        for week in (this_week, this_week + timedelta(days=7))
        for s in store.week_shifts(week)
        if s.person == person.id
    ]


async def me_page(request: Request, status_code: int = 200, error_key: str | None = None) -> Response:
    link, secret = request.path_params["link"], request.path_params["secret"]
    store = _store(request)

    def load() -> tuple[Person, bool, list[OpenShift], list[OpenShift]] | None:
        if store.link_site(link) is None:
            return None
        found = store.person_by_secret(secret)
        if found is None:
            return None
        person, pending = found
        today = datetime.now(_settings(request).zone).date()
        if pending:
            return person, True, [], []
        return person, False, _open_shifts(request, store, person), _own_shifts(store, person, today)

    loaded = await run_in_threadpool(load)
    if loaded is None:
        return _not_found(request)
    person, pending, open_shifts, own = loaded
    return render(
        request,
        "roster/me.html",
        status_code=status_code,
        person=person,
        pending=pending,
        open_shifts=open_shifts,
        own=own,
        new=request.query_params.get("new") == "1",
        here=f"/join/{link}/me/{secret}",
        error_key=error_key,
    )


async def me_change(request: Request) -> Response:
    """``take`` an open shift or ``cancel`` one of one's own (not one already begun)."""
    link, secret = request.path_params["link"], request.path_params["secret"]
    store = _store(request)
    async with request.form() as form:
        action = field_text(form, "action", 10)
        post = field_text(form, "post", 100)
        week_text = field_text(form, "week", 10)
        try:
            week = week_start(date.fromisoformat(week_text))
            first, hours = int(field_text(form, "start", 3)), int(field_text(form, "hours", 2))
        except ValueError:
            return await me_page(request, 400, "join.error.bad_shift")

    def work() -> str | None:
        if store.link_site(link) is None:
            return "gone"
        found = store.person_by_secret(secret)
        if found is None or found[1]:
            return "gone"
        person = found[0]
        now = datetime.now(_settings(request).zone)
        this_week = week_start(now.date())
        if week not in (this_week, this_week + timedelta(days=7)) or not (
            0 <= first < 168 and 1 <= hours <= 24
        ):
            return "join.error.bad_shift"
        if week == this_week and first <= now.weekday() * 24 + now.hour:
            return "join.error.started"
        if action not in ("take", "cancel") or (action == "take" and post not in person.posts):
            return "join.error.bad_shift"
        span = frozenset(range(first, min(168, first + hours)))
        refused = change_shift(
            store, week, person.id, post, span, add=action == "take", made_by=f"volunteer:{person.id}"
        )
        if refused == "roster.error.no_such_shift":
            return "join.error.bad_shift"
        if refused is not None:
            return refused
        request.app.state.ctx.audit.record(
            f"volunteer:{person.id}",
            f"roster.volunteer_{action}",
            f"{week.isoformat()} {post}",
            {"start": first, "hours": hours},
            address=client_address(request),
        )
        return None

    refused = await run_in_threadpool(work)
    if refused == "gone":
        return _not_found(request)
    if refused is not None:
        return await me_page(request, 400, refused)
    return RedirectResponse(f"/join/{link}/me/{secret}", status_code=303)


routes: list[BaseRoute] = [
    Route("/join/{link}", join_page, methods=["GET"]),
    Route("/join/{link}", join, methods=["POST"]),
    Route("/join/{link}/me/{secret}", me_page, methods=["GET"]),
    Route("/join/{link}/me/{secret}", me_change, methods=["POST"]),
]
