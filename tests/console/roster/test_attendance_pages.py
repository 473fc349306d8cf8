"""The attendance page and exports, duty credentials and PINs on the people page: scoping, bad input, audit."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.config import ConsoleConfig
from console.duty_credentials import duty_credentials
from console.roster.store import RosterStore
from console.store import EventStore
from console.web.app import build_context, create_app
from edge.guard.pin import verify_pin
from protocol.duty import DUTY_CHECK_OUT, DutyMethod, DutyRole
from tests.console.roster.attendance_support import DAY, duty_event, local, seed_roster
from tests.console.web.pages_support import closed_port
from tests.console.web.web_support import Web, login, post_form

pytestmark = pytest.mark.timeout(90)
SITE, OTHER = "longtan", "beiyuan"
CARD = "wiegand26:13:13067"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    config = ConsoleConfig.model_validate(
        {
            "store": {"path": str(tmp_path / "events.db")},
            "mqtt": {"host": "127.0.0.1", "port": closed_port()},
            "cards": {
                "site": SITE,
                "registry": str(tmp_path / "cards.db"),
                "thumbnails": str(tmp_path / "t"),
            },
        }
    )
    store = EventStore(config.store.path)
    ctx = build_context(config, store, endpoint=None)
    instance = Web(ctx, store, create_app(ctx, watch=False), tmp_path)
    seed_roster(ctx.db, SITE, other_site=OTHER)
    store.commit(
        [
            duty_event(SITE, "north", 1, local(8, 2), "g0", name="王伟"),
            duty_event(SITE, "north", 2, local(8, 40), "g1", name="Li Na", method=DutyMethod.PIN),
            duty_event(SITE, "north", 3, local(12, 3), "g0", type_=DUTY_CHECK_OUT),
            duty_event(SITE, "north", 4, local(16, 5), "g1", type_=DUTY_CHECK_OUT),
            duty_event(OTHER, "west", 1, local(8, 0), "o1", name="Other One"),
            duty_event(OTHER, "west", 2, local(12, 0), "o1", type_=DUTY_CHECK_OUT),
        ]
    )
    yield instance
    ctx.db.close()
    store.close()


def _client(web: Web, name: str, role: str = "operator", sites: str | None = None):  # type: ignore[no-untyped-def]
    web.add_user(name, role)
    if sites is not None:
        web.ctx.users.set_sites(name, sites)
    client = web.client()
    login(client, name)
    return client


def test_the_page_names_late_arrivals_and_no_shows_per_post(web: Web):
    client = _client(web, "ada", "admin")
    page = client.get(f"/roster/attendance?date={DAY}")
    assert page.status_code == 200
    html = page.text
    for text in ("longtan/north", "longtan/east", "beiyuan/west", "王伟", "Li Na", "Zhao Lei"):
        assert text in html
    assert 'class="shift-late"' in html and "40 min" in html  # g1 came at 08:40 for 08:00
    assert 'class="shift-no_show"' in html and "did not come" in html  # g2 never checked in at east
    assert "personal PIN" in html  # how g1 checked in
    visible = re.sub(r"<[^>]+>", " ", re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S))
    assert not re.findall(r"\b(?:roster|duty_method)\.[a-z_.]+", visible), "a label key shown raw"
    assert post_form(client, "/lang", {"lang": "zh", "next": "/roster/attendance"}).status_code == 303
    chinese = client.get(f"/roster/attendance?date={DAY}").text
    assert "迟到" in chinese and "缺勤" in chinese and "个人 PIN" in chinese
    assert post_form(client, "/lang", {"lang": "en", "next": "/roster/attendance"}).status_code == 303
    only_north = client.get(f"/roster/attendance?date={DAY}&post=longtan/north").text
    assert "longtan/north" in only_north and "Zhao Lei" not in only_north


def test_a_user_of_one_site_sees_and_exports_only_its_posts(web: Web):
    client = _client(web, "ola", sites=SITE)
    html = client.get(f"/roster/attendance?date={DAY}").text
    assert "longtan/north" in html and "beiyuan/west" not in html and "Other One" not in html
    refused = client.get(f"/roster/attendance?date={DAY}&post=beiyuan/west")
    assert refused.status_code == 403 and "Other One" not in refused.text
    exported = client.get(f"/roster/attendance/export.csv?date={DAY}")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["post"] for r in rows} == {"longtan/north", "longtan/east"}
    assert client.get(f"/roster/attendance/export.json?date={DAY}&post=beiyuan/west").status_code == 403


def test_exports_carry_every_shift_and_are_audited(web: Web):
    client = _client(web, "ada", "admin")
    exported = client.get(f"/roster/attendance/export.json?date={DAY}&post=longtan/north")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/json")
    rows = [json.loads(line) for line in exported.text.splitlines()]
    by_person = {r["person"]: r for r in rows}
    assert (
        by_person["g0"]["status"] == "on_time"
        and by_person["g0"]["checked_in"] == "2026-11-30T08:02:00+08:00"
    )
    assert by_person["g1"]["status"] == "late" and by_person["g1"]["late_minutes"] == 40
    assert by_person["g1"]["rostered_from"] == "2026-11-30T08:00:00+08:00"
    assert (by_person["g1"]["on_duty_until"], by_person["g1"]["method"]) == (
        "2026-11-30T16:05:00+08:00",
        "pin",
    )
    csv_text = client.get(f"/roster/attendance/export.csv?date={DAY}").text
    assert csv_text.splitlines()[0].startswith('"date","post","person"')
    audited = web.ctx.db.query("SELECT action, target FROM audit_log WHERE action = 'export' ORDER BY row_id")
    assert [tuple(r) for r in audited] == [("export", "attendance.json"), ("export", "attendance.csv")]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("date=2026-13-01", 400),
        ("date=yesterday", 400),
        ("date=1900-01-01", 400),
        ("date=2026-11-30&post=longtan", 400),
        ("date=2026-11-30&post=Longtan/North", 400),
        ("date=2026-11-30&post=" + "a" * 40 + "/b", 400),
        ("date=2026-11-30&post=%00/%0a", 400),
    ],
)
def test_bad_input_is_refused_with_a_reason(web: Web, query: str, status: int):
    client = _client(web, "ada", "admin")
    page = client.get(f"/roster/attendance?{query}")
    assert page.status_code == status and 'id="attendance-error"' in page.text
    assert client.get(f"/roster/attendance/export.csv?{query}").status_code == status
    assert client.get(f"/roster/attendance/export.xml?date={DAY}").status_code == 404


def test_duty_credentials_go_into_the_card_list_and_follow_changes(web: Web):
    client = _client(web, "ada", "admin")
    registry = web.ctx.cards
    assert registry is not None
    before = registry.version

    def duty(person: str, role: str, action: str, credential: str = ""):  # type: ignore[no-untyped-def]
        form = {"person": person, "role": role, "action": action, "credential": credential}
        return post_form(client, "/roster/people/duty", form, page="/roster/people")

    assert duty("g0", "staff", "give", CARD).status_code == 303
    entry = registry.get(f"duty:{CARD}")
    assert entry is not None and (entry.holder, entry.unit, entry.zones) == ("王伟", "staff:g0", 0)
    assert registry.version > before
    assert CARD in client.get("/roster/people").text

    assert duty("g0", "staff", "give", "wiegand26:13:99").status_code == 303  # a new card replaces the old
    assert registry.get(f"duty:{CARD}") is None and registry.get("duty:wiegand26:13:99") is not None
    assert duty("g0", "patrol", "give", CARD).status_code == 303
    assert {(c.role, c.credential) for c in duty_credentials(registry, "g0")} == {
        (DutyRole.STAFF, "wiegand26:13:99"),
        (DutyRole.PATROL, CARD),
    }

    taken = duty("g1", "staff", "give", "wiegand26:13:99")  # g0's card: one card, one person
    assert taken.status_code == 400 and "someone else" in taken.text
    assert duty("g1", "staff", "give", "not a credential").status_code == 400
    assert duty("g1", "boss", "give", CARD).status_code == 400
    assert duty("nobody", "staff", "give", "wiegand26:13:5").status_code == 400
    elsewhere = duty("o1", "staff", "give", "wiegand26:13:6")  # o1 stands at beiyuan; the list is longtan's
    assert elsewhere.status_code == 400 and "reach none of their gates" in elsewhere.text

    assert duty("g0", "staff", "remove").status_code == 303
    assert [c.role for c in duty_credentials(registry, "g0")] == [DutyRole.PATROL]
    actions = [
        r[0] for r in web.ctx.db.query("SELECT action FROM audit_log WHERE action LIKE 'roster.duty%'")
    ]
    assert actions == ["roster.duty_credential_given"] * 3 + ["roster.duty_credential_removed"]

    operator = _client(web, "ola")
    form = {"person": "g1", "role": "staff", "action": "give", "credential": "wiegand26:13:7"}
    assert post_form(operator, "/roster/people/duty", form, page="/roster/people").status_code == 403
    assert registry.get("duty:wiegand26:13:7") is None


def test_a_personal_pin_is_kept_only_as_the_gates_hash(web: Web):
    client = _client(web, "ada", "admin")
    form = {"person": "g1", "action": "set", "pin": "864209"}
    assert post_form(client, "/roster/people/pin", form, page="/roster/people").status_code == 303
    stored = RosterStore(web.ctx.db).pins()["g1"]
    assert verify_pin("864209", stored) and not verify_pin("864208", stored)
    assert "864209" not in client.get("/roster/people").text
    dump = "\n".join(str(row) for row in web.ctx.db.query("SELECT * FROM audit_log"))
    assert "roster.pin_set" in dump and "864209" not in dump
    for bad in ("12", "abcdef", "1234567890123", ""):
        refused = post_form(client, "/roster/people/pin", {**form, "pin": bad}, page="/roster/people")
        assert refused.status_code == 400
    assert RosterStore(web.ctx.db).pins()["g1"] == stored
    cleared = {"person": "g1", "action": "clear"}
    assert post_form(client, "/roster/people/pin", cleared, page="/roster/people").status_code == 303
    assert "g1" not in RosterStore(web.ctx.db).pins()
