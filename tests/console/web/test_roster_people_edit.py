"""One person added, changed and taken off on a page: the CSV's checks, site limits, audit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from console.roster.plan import week_start
from tests.console.web.web_support import PASSWORD, Web, login, post_form

pytestmark = pytest.mark.timeout(90)

GOOD = {
    "new": "1",
    "id": "g7",
    "name": "王强",
    "team": "guard",
    "posts": "longtan/north; longtan/east",
    "available": "Mon-Fri 08-18; Sat 17-22",
    "trained": "yes",
    "phone": "13800000007",
    "languages": "zh; en",
    "max_hours_week": "40",
    "max_hours_day": "",
}


def _client(web: Web, name: str, role: str = "operator", sites: str | None = None) -> object:
    web.ctx.users.add(name, PASSWORD, role, sites=sites)
    client = web.client()
    login(client, name)
    return client


def _people(web: Web) -> dict[str, object]:
    from console.roster.store import RosterStore

    return {p.id: p for p in RosterStore(web.ctx.db).people()}


def test_an_operator_adds_and_changes_a_person_checked_like_a_csv_row(
    web_factory: Callable[..., Web],
) -> None:
    web = web_factory(watch=False)
    client = _client(web, "olga")
    added = post_form(client, "/roster/people/edit", GOOD, page="/roster/people/edit")  # type: ignore[arg-type]
    assert added.status_code == 303, added.text
    person = _people(web)["g7"]
    assert person.name == "王强" and person.trained and person.max_hours_week == 40  # type: ignore[attr-defined]
    assert person.posts == {"longtan/north", "longtan/east"}  # type: ignore[attr-defined]
    assert 8 in person.available and 7 not in person.available and 5 * 24 + 17 in person.available  # type: ignore[attr-defined]

    # The edit form shows the hours in the words they were typed in; saving them back changes nothing.
    form = client.get("/roster/people/edit?person=g7").text  # type: ignore[attr-defined]
    assert 'value="Mon-Fri 08-18; Sat 17-22"' in form
    changed = post_form(
        client,  # type: ignore[arg-type]
        "/roster/people/edit",
        {**GOOD, "new": "0", "phone": "13900000000", "trained": "no"},
        page="/roster/people/edit?person=g7",
    )
    assert changed.status_code == 303
    person = _people(web)["g7"]
    assert person.phone == "13900000000" and not person.trained  # type: ignore[attr-defined]
    audits = web.ctx.db.query(
        "SELECT action, target, detail FROM audit_log WHERE action LIKE 'roster.person%'"
    )
    assert [(a, t) for a, t, _ in audits] == [("roster.person_add", "g7"), ("roster.person_change", "g7")]
    assert "phone" in audits[1][2] and "trained" in audits[1][2] and "name" not in audits[1][2]

    # A second "new" with the same id is refused: ids are never reused.
    again = post_form(client, "/roster/people/edit", GOOD, page="/roster/people/edit")  # type: ignore[arg-type]
    assert again.status_code == 400 and "<li>Id:" in again.text


def test_every_mistake_is_named_by_field_and_nothing_is_stored(web_factory: Callable[..., Web]) -> None:
    web = web_factory(watch=False)
    client = _client(web, "olga")
    bad = {
        **GOOD,
        "id": "bad id",
        "team": "boss",
        "posts": "",
        "available": "Someday 8-9",
        "max_hours_day": "99",
    }
    answer = post_form(client, "/roster/people/edit", bad, page="/roster/people/edit")  # type: ignore[arg-type]
    assert answer.status_code == 400
    for field in ("Id", "Team", "Posts", "Hours offered", "Most hours a day"):
        assert f"<li>{field}:" in answer.text, field
    assert _people(web) == {}


def test_a_site_limited_operator_touches_only_their_sites_people(web_factory: Callable[..., Web]) -> None:
    web = web_factory(watch=False)
    admin = _client(web, "ada", "admin")
    assert post_form(admin, "/roster/people/edit", GOOD, page="/roster/people/edit").status_code == 303  # type: ignore[arg-type]
    limited = _client(web, "lin", sites="xishan")
    assert limited.get("/roster/people/edit?person=g7").status_code == 404  # type: ignore[attr-defined]
    refused = post_form(
        limited,  # type: ignore[arg-type]
        "/roster/people/edit",
        {**GOOD, "id": "x1", "posts": "longtan/north"},
        page="/roster/people/edit",
    )
    assert refused.status_code == 403 and "x1" not in _people(web)
    retired = post_form(limited, "/roster/people/retire", {"person": "g7"}, page="/roster/people")  # type: ignore[arg-type]
    assert retired.status_code == 404 and "g7" in _people(web)


def test_retiring_waits_until_no_shift_is_left(web_factory: Callable[..., Web]) -> None:
    from console.roster.store import RosterStore

    web = web_factory(watch=False)
    client = _client(web, "olga")
    assert post_form(client, "/roster/people/edit", GOOD, page="/roster/people/edit").status_code == 303  # type: ignore[arg-type]
    store = RosterStore(web.ctx.db)
    week = week_start(date.today())
    store.replace_week(
        week,
        {("g7", "longtan/north"): frozenset(range(8, 16))},
        status="edited",
        made_by="test",
        summary={},
    )
    held = post_form(client, "/roster/people/retire", {"person": "g7"}, page="/roster/people")  # type: ignore[arg-type]
    assert held.status_code == 409 and "g7" in _people(web)
    store.replace_week(week, {}, status="edited", made_by="test", summary={})
    gone = post_form(client, "/roster/people/retire", {"person": "g7"}, page="/roster/people")  # type: ignore[arg-type]
    assert gone.status_code == 303 and "g7" not in _people(web)
    assert web.ctx.db.query("SELECT active FROM roster_people WHERE id = 'g7'")[0][0] == 0
