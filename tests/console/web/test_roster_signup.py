"""Volunteer sign-up: a printed link, a phone's registration, the office's approval, shifts taken and cancelled."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.console.web.web_support import Web, csrf_of, login, make_status, post_form
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)


def _admin(web: Web) -> object:
    client = web.client()
    web.add_user("ada", "admin")
    login(client, "ada")
    return client


def _make_link(client: object) -> str:
    answer = post_form(client, "/roster/links", {"site": "longtan"}, page="/roster/people")  # type: ignore[arg-type]
    assert answer.status_code == 200
    assert "data:image/svg+xml" in answer.text  # the QR code to print
    match = re.search(r"<code>http://testserver(/join/[A-Za-z0-9_-]+)</code>", answer.text)
    assert match, answer.text
    return match.group(1)


def _sign_up(web: Web, link: str, **fields: str) -> object:
    phone = web.client()
    page = phone.get(link)
    assert page.status_code == 200 and "longtan/north" in page.text
    data = {
        "name": "李娜",
        "phone": "13800000000",
        "posts": "longtan/north",
        "lang_zh": "1",
        "from": "0",
        "to": "24",
    }
    data |= {f"day_{d}": "1" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    data |= fields
    answer = phone.post(link, data={**data, "csrf_token": csrf_of(page.text)}, follow_redirects=False)
    return phone, answer


def test_a_volunteer_signs_up_is_approved_takes_and_cancels_a_shift(web_factory: Callable[..., Web]) -> None:
    web = web_factory(watch=False)
    web.store.commit(statuses=[make_status("longtan", "north", "online")])
    admin = _admin(web)
    link = _make_link(admin)

    phone, answer = _sign_up(web, link)
    assert answer.status_code == 303  # type: ignore[attr-defined]
    mine = answer.headers["location"]  # type: ignore[attr-defined]
    page = phone.get(mine).text  # type: ignore[attr-defined]
    assert 'id="join-bookmark"' in page and 'id="me-pending"' in page

    # The office drafted this week and next, with one guard, before the volunteer was approved:
    # most hours stand open.
    from datetime import date

    from console.roster.model import Person, Team
    from console.roster.store import RosterStore

    mornings = frozenset(d * 24 + h for d in range(7) for h in range(6, 14))
    RosterStore(web.ctx.db).put_people(
        [Person("g1", "Guard", Team.GUARD, frozenset({"longtan/north"}), mornings, True)]
    )

    today = date.today().isoformat()
    next_week = date.fromordinal(date.today().toordinal() + 7).isoformat()
    for week in (today, next_week):
        assert post_form(admin, f"/roster/draft?week={week}", {}, page="/roster").status_code == 303  # type: ignore[arg-type]
        assert wait_until(
            lambda w=week: 'id="roster-drafting"' not in admin.get(f"/roster?week={w}").text, timeout=60
        )  # type: ignore[attr-defined]
    people = admin.get("/roster/people").text  # type: ignore[attr-defined]
    person = re.search(r'name="person" value="(v-[0-9a-f]+)"', people)
    assert person and "李娜" in people
    decided = post_form(
        admin,
        "/roster/people/decide",
        {"person": person.group(1), "decision": "approve"},
        page="/roster/people",
    )  # type: ignore[arg-type]
    assert decided.status_code == 303

    page = phone.get(mine).text  # type: ignore[attr-defined]
    assert 'id="me-pending"' not in page
    offer = re.search(
        r'name="week" value="([0-9-]+)">\s*<input type="hidden" name="post" value="longtan/north"><input type="hidden" name="start" value="(\d+)"><input type="hidden" name="hours" value="(\d+)">\s*<button type="submit">',
        page,
    )
    assert offer, page
    week, start, hours = offer.groups()
    took = phone.post(  # type: ignore[attr-defined]
        mine,
        data={
            "action": "take",
            "week": week,
            "post": "longtan/north",
            "start": start,
            "hours": hours,
            "csrf_token": csrf_of(page),
        },
        follow_redirects=False,
    )
    assert took.status_code == 303, took.text
    page = phone.get(mine).text  # type: ignore[attr-defined]
    assert "longtan/north" in page.split('id="me-shifts"')[1].split("</ul>")[0]
    cancelled = phone.post(  # type: ignore[attr-defined]
        mine,
        data={
            "action": "cancel",
            "week": week,
            "post": "longtan/north",
            "start": start,
            "hours": hours,
            "csrf_token": csrf_of(page),
        },
        follow_redirects=False,
    )
    assert cancelled.status_code == 303
    actions = [row[0] for row in web.ctx.db.query("SELECT action FROM audit_log ORDER BY row_id")]
    assert {
        "roster.sign_up",
        "roster.sign_up_approved",
        "roster.volunteer_take",
        "roster.volunteer_cancel",
    } <= set(actions)


def test_a_wrong_or_revoked_link_says_so(web_factory: Callable[..., Web]) -> None:
    web = web_factory(watch=False)
    web.store.commit(statuses=[make_status("longtan", "north", "online")])
    admin = _admin(web)
    link = _make_link(admin)
    stranger = web.client()
    gone = stranger.get(link + "x")
    assert gone.status_code == 404 and 'class="error"' in gone.text
    prefix = re.search(r'name="link" value="([0-9a-f]{12})"', admin.get("/roster/people").text)  # type: ignore[attr-defined]
    assert prefix
    post_form(admin, "/roster/links/revoke", {"link": prefix.group(1)}, page="/roster/people")  # type: ignore[arg-type]
    assert stranger.get(link).status_code == 404


def test_a_sign_up_without_posts_or_hours_is_refused_with_the_reason(web_factory: Callable[..., Web]) -> None:
    web = web_factory(watch=False)
    web.store.commit(statuses=[make_status("longtan", "north", "online")])
    link = _make_link(_admin(web))
    _, answer = _sign_up(web, link, posts="elsewhere/gate")
    assert answer.status_code == 400 and 'id="join-error"' in answer.text  # type: ignore[attr-defined]
    _, answer = _sign_up(web, link, **{"from": "22", "to": "8"})
    assert answer.status_code == 400  # type: ignore[attr-defined]
    assert web.ctx.db.query("SELECT COUNT(*) FROM roster_people")[0][0] == 0


def test_only_hours_the_volunteer_may_take_are_offered(web_factory: Callable[..., Web]) -> None:
    """A volunteer whose limit allows no shift at all is offered none, though hours stand open."""
    from dataclasses import replace
    from datetime import date

    from console.roster.model import Person, Team
    from console.roster.store import RosterStore

    web = web_factory(watch=False)
    web.store.commit(statuses=[make_status("longtan", "north", "online")])
    admin = _admin(web)
    link = _make_link(admin)
    phone, answer = _sign_up(web, link)
    mine = answer.headers["location"]  # type: ignore[attr-defined]
    roster = RosterStore(web.ctx.db)
    mornings = frozenset(d * 24 + h for d in range(7) for h in range(6, 14))
    roster.put_people([Person("g1", "Guard", Team.GUARD, frozenset({"longtan/north"}), mornings, True)])
    today = date.today()
    for week in (today, date.fromordinal(today.toordinal() + 7)):
        week_text = week.isoformat()
        assert post_form(admin, f"/roster/draft?week={week_text}", {}, page="/roster").status_code == 303  # type: ignore[arg-type]
        assert wait_until(
            lambda w=week_text: 'id="roster-drafting"' not in admin.get(f"/roster?week={w}").text, timeout=60
        )  # type: ignore[attr-defined]
    (volunteer,) = roster.pending()
    roster.decide(volunteer.id, approve=True)
    assert '<button type="submit">' in phone.get(mine).text.split('id="me-open"')[1]  # type: ignore[attr-defined]
    roster.put_people([replace(volunteer, max_hours_week=1)])  # shorter than the shortest shift
    offered = phone.get(mine).text.split('id="me-open"')[1].split("</ul>")[0]  # type: ignore[attr-defined]
    assert "<button" not in offered, offered[:600]
