"""The roster and the volunteer sign-up in a real Chromium, in English and Chinese, with screenshots.

The office imports its people, drafts the week and prints a post's roster; a volunteer
opens the sign-up link on a phone-sized screen, registers, is approved, and takes an
open shift.  Screenshots go to docs/screenshots/ (roster-*.png, join-*.png).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.console.web.web_support import PASSWORD, Web, make_status, serve

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
PEOPLE = (
    "\n".join(
        ["id,name,team,posts,available,trained,phone"]
        + [f"g{n},保安{n},guard,longtan/north;longtan/east,Mon-Sun 06-14,yes,1380000000{n}" for n in range(3)]
        + [f"s{n},Staff {n},staff,longtan/east,Mon-Fri 08-18,no," for n in range(2)]
    )
    + "\n"
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def served(web: Web) -> Iterator[tuple[Web, str]]:
    web.add_user("ada", "admin")
    web.store.commit(
        statuses=[make_status("longtan", "north", "online"), make_status("longtan", "east", "online")]
    )
    server = serve(web)
    try:
        yield web, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def _login(page: Any, base: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#name", "ada")
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url(f"{base}/")


def _draft(page: Any, base: str, week: str) -> None:
    page.goto(f"{base}/roster?week={week}")
    page.click("#roster-draft")
    for _ in range(120):
        page.goto(f"{base}/roster?week={week}")
        if page.locator("#roster-drafting").count() == 0:
            return
        page.wait_for_timeout(500)
    raise AssertionError("the draft never finished")


def test_office_roster_and_volunteer_sign_up_in_both_languages(
    served: tuple[Web, str], browser_page: Any, tmp_path: Path
) -> None:
    web, base = served
    page = browser_page
    SHOTS.mkdir(parents=True, exist_ok=True)
    _login(page, base)

    page.goto(f"{base}/roster/people")
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")
    page.set_input_files("#people-import input[type=file]", str(people))
    page.click("#people-import button")
    page.wait_for_selector("text=保安2")

    today = date.today()
    following = date.fromordinal(today.toordinal() + 7)
    for week in (today, following):
        _draft(page, base, week.isoformat())
    page.goto(f"{base}/roster?week={today.isoformat()}")
    assert page.locator("table.roster").count() >= 1
    assert "person-hours below the advice" in page.inner_text("#roster-status")
    page.screenshot(path=str(SHOTS / "roster-week.en.png"), full_page=True)
    page.click("#lang-zh")
    page.wait_for_selector("text=值班表")
    assert "比建议少" in page.inner_text("#roster-status")
    page.screenshot(path=str(SHOTS / "roster-week.zh.png"), full_page=True)

    page.goto(f"{base}/roster/print?week={today.isoformat()}&post=longtan/north")
    assert "值班表" in page.content() and "Duty roster" in page.content()
    page.screenshot(path=str(SHOTS / "roster-print.png"), full_page=True)

    # The office makes the sign-up link (shown once, with its QR code).
    page.goto(f"{base}/roster/people")
    page.fill("#make-link input[name=site]", "longtan")
    page.click("#make-link button")
    link = page.inner_text("#new-link code")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/join/[A-Za-z0-9_-]+", link)

    # A volunteer on a phone, in Chinese.
    phone_context = page.context.browser.new_context(
        viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True
    )
    phone = phone_context.new_page()
    phone.set_default_timeout(10_000)
    try:
        phone.goto(link)
        assert "志愿者报名" in phone.content()
        phone.fill("input[name=name]", "李娜")
        phone.fill("input[name=phone]", "13912345678")
        phone.check("input[value='longtan/north']")
        for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
            phone.check(f"input[name=day_{day}]")
        phone.fill("input[name=from]", "14")
        phone.fill("input[name=to]", "22")
        phone.screenshot(path=str(SHOTS / "join-phone.zh.png"), full_page=True)
        phone.click("#join-submit")
        phone.wait_for_selector("#me-pending")
        mine = phone.url

        page.goto(f"{base}/roster/people")
        page.click("#pending button[value=approve]")
        page.wait_for_selector("#pending .empty")

        phone.goto(mine)
        phone.wait_for_selector("#me-open")
        offers = phone.locator("#me-open button")
        assert offers.count() >= 1, phone.inner_text("#me-open")
        offers.first.click()
        phone.wait_for_selector("#me-shifts form")
        assert "longtan/north" in phone.inner_text("#me-shifts")
        phone.screenshot(path=str(SHOTS / "join-me.zh.png"), full_page=True)
        phone.click("#lang-en")
        phone.wait_for_selector("text=My shifts")
        phone.screenshot(path=str(SHOTS / "join-me.en.png"), full_page=True)
    finally:
        phone_context.close()
    actions = {row[0] for row in web.ctx.db.query("SELECT action FROM audit_log")}
    assert {"roster.people_import", "roster.draft", "roster.sign_up", "roster.volunteer_take"} <= actions
