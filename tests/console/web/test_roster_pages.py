"""The roster pages: people in from CSV, a week drafted from the advice, edits checked and audited, print."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.console.web.web_support import Web, csrf_of, login, post_form
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

PEOPLE = (
    "\n".join(
        ["id,name,team,posts,available,trained,phone"]
        + [f"g{n},Guard {n},guard,longtan/north,always,yes,1380000000{n}" for n in range(4)]
        + ["v1,李娜,volunteer,longtan/north,Mon-Fri 17-22,no,"]
    )
    + "\n"
)


def _admin(web: Web) -> object:
    client = web.client()
    web.add_user("ada", "admin")
    login(client, "ada")
    return client


def _import(client: object, text: str) -> object:
    csrf = csrf_of(client.get("/roster/people").text)  # type: ignore[attr-defined]
    return client.post(  # type: ignore[attr-defined]
        "/roster/people",
        data={"csrf_token": csrf},
        files={"file": ("people.csv", text.encode(), "text/csv")},
        follow_redirects=False,
    )


def test_people_import_then_draft_edit_and_print(web_factory: Callable[..., Web]) -> None:
    web = web_factory(watch=False)
    client = _admin(web)
    assert _import(client, PEOPLE).status_code == 303
    people = client.get("/roster/people").text  # type: ignore[attr-defined]
    assert "李娜" in people and "Guard 3" in people

    week = "2026-12-07"
    drafted = post_form(client, f"/roster/draft?week={week}", {}, page=f"/roster?week={week}")  # type: ignore[arg-type]
    assert drafted.status_code == 303
    assert wait_until(
        lambda: 'id="roster-drafting"' not in client.get(f"/roster?week={week}").text, timeout=60
    )  # type: ignore[attr-defined]
    page = client.get(f"/roster?week={week}").text  # type: ignore[attr-defined]
    assert "longtan/north" in page and "Guard" in page
    assert 'id="roster-status"' in page

    # A shift that breaks the rest rule is refused with the rule named; nothing changes.
    before = web.ctx.db.query("SELECT COUNT(*) FROM roster_shifts")[0][0]
    refused = post_form(
        client,  # type: ignore[arg-type]
        f"/roster/edit?week={week}",
        {"action": "add", "person": "g0", "post": "longtan/north", "day": "0", "start": "0", "hours": "24"},
        page=f"/roster?week={week}",
    )
    assert refused.status_code == 400
    assert "g0" in refused.text and 'id="roster-error"' in refused.text
    assert web.ctx.db.query("SELECT COUNT(*) FROM roster_shifts")[0][0] == before

    # The volunteer may stand Monday evening: added, audited, shown.
    added = post_form(
        client,  # type: ignore[arg-type]
        f"/roster/edit?week={week}",
        {"action": "add", "person": "v1", "post": "longtan/north", "day": "0", "start": "18", "hours": "2"},
        page=f"/roster?week={week}",
    )
    assert added.status_code == 303
    assert "李娜" in client.get(f"/roster?week={week}").text  # type: ignore[attr-defined]
    actions = {row[0] for row in web.ctx.db.query("SELECT action FROM audit_log")}
    assert {"roster.people_import", "roster.draft", "roster.add"} <= actions

    printed = client.get(f"/roster/print?week={week}&post=longtan/north").text  # type: ignore[attr-defined]
    assert "值班表" in printed and "Duty roster" in printed and "星期一" in printed and "Monday" in printed


def test_a_bad_people_file_names_each_line(web_factory: Callable[..., Web]) -> None:
    web = web_factory(watch=False)
    client = _admin(web)
    answer = _import(client, "id,name,team,posts\nbad id,X,boss,\n")
    assert answer.status_code == 400
    assert "line 2, column id" in answer.text and "line 2, column team" in answer.text  # type: ignore[attr-defined]
    assert web.ctx.db.query("SELECT COUNT(*) FROM roster_people")[0][0] == 0


def test_operators_see_the_roster_but_only_admins_import_people(web_factory: Callable[..., Web]) -> None:
    web = web_factory(watch=False)
    client = web.client()
    web.add_user("olga")
    login(client, "olga")
    assert client.get("/roster").status_code == 200
    assert _import(client, PEOPLE).status_code in (302, 303, 403)
    assert web.ctx.db.query("SELECT COUNT(*) FROM roster_people")[0][0] == 0


def test_both_languages_have_every_roster_word() -> None:
    from console.web.i18n import catalogues

    en = {k for k in catalogues()["en"] if k.startswith("roster.")}
    zh = {k for k in catalogues()["zh"] if k.startswith("roster.")}
    assert en == zh


def test_the_week_exports_as_csv_and_json_and_stays_within_a_users_sites(
    web_factory: Callable[..., Web],
) -> None:
    import json

    web = web_factory(watch=False)
    admin = _admin(web)
    text = PEOPLE + "h1,Other,guard,hilltop/gate,always,yes,\n"
    assert _import(admin, text).status_code == 303
    week = "2026-12-07"
    assert post_form(admin, f"/roster/draft?week={week}", {}, page="/roster").status_code == 303  # type: ignore[arg-type]
    assert wait_until(
        lambda: 'id="roster-drafting"' not in admin.get(f"/roster?week={week}").text, timeout=60
    )  # type: ignore[attr-defined]
    csv_text = admin.get(f"/roster/export.csv?week={week}").text  # type: ignore[attr-defined]
    assert csv_text.splitlines()[0] == '"week","person","name","team","post","date","start","end","hours"'
    assert "longtan/north" in csv_text and "hilltop/gate" in csv_text
    lines = [json.loads(line) for line in admin.get(f"/roster/export.json?week={week}").text.splitlines()]  # type: ignore[attr-defined]
    assert lines and {"week", "person", "post", "hours"} <= set(lines[0])

    web.ctx.users.add("olga", "operator-password-1", "operator", sites="longtan")
    olga = web.client()
    login(olga, "olga", "operator-password-1")
    assert "hilltop/gate" not in olga.get(f"/roster?week={week}").text
    assert "hilltop/gate" not in olga.get(f"/roster/export.csv?week={week}").text
    refused = post_form(
        olga,
        f"/roster/edit?week={week}",
        {"action": "add", "person": "h1", "post": "hilltop/gate", "day": "2", "start": "8", "hours": "4"},
        page=f"/roster?week={week}",
    )
    assert refused.status_code == 403
    assert post_form(olga, f"/roster/draft?week={week}", {}, page="/roster").status_code == 403
