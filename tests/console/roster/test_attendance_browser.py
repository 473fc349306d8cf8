"""The attendance page in a real Chromium, in English and in Chinese, with screenshots.

An admin gives a guard a staff credential and a PIN on the people page, then reads the
day's attendance: a late arrival and a no-show named, the hour short of its roster
marked.  Screenshots go to docs/screenshots/ (roster-attendance.{en,zh}.png).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.roster.attendance_support import DAY
from tests.console.roster.test_attendance_pages import web  # noqa: F401 - the same console, cards and roster
from tests.console.web.web_support import PASSWORD, Web, serve

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def served(web: Web) -> Iterator[tuple[Web, str]]:  # noqa: F811
    web.add_user("ada", "admin")
    server = serve(web)
    try:
        yield web, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_attendance_in_both_languages(served: tuple[Web, str], browser_page: Any) -> None:
    console, base = served
    page = browser_page
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{base}/login")
    page.fill("#name", "ada")
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url(f"{base}/")

    page.goto(f"{base}/roster/people")
    row = page.locator("#person-g0 td.duty-staff form")
    row.locator("input[name=credential]").fill("wiegand26:13:13067")
    row.locator("button[value=give]").click()
    page.wait_for_selector("#person-g0 td.duty-staff code")
    assert console.ctx.cards is not None and console.ctx.cards.get("duty:wiegand26:13:13067") is not None
    pin = page.locator("#person-g1 td.duty-pin form")
    pin.locator("input[name=pin]").fill("864209")
    pin.locator("button[value=set]").click()
    page.wait_for_selector("#person-g1 td.duty-pin >> text=set")

    page.goto(f"{base}/roster")
    page.click("#roster-attendance")
    page.fill("#attendance-filter input[name=date]", DAY.isoformat())
    page.click("#attendance-filter button")
    page.wait_for_selector("#post-longtan-north")
    north = page.inner_text("#post-longtan-north")
    assert "late (40 min)" in north and "on time" in north and "personal PIN" in north
    assert "did not come" in page.inner_text("#post-longtan-east")
    assert page.locator("#post-longtan-north tr.short").count() == 0  # both came, if one late
    assert page.locator("#post-longtan-east tr.short").count() == 4  # 08-12 with nobody
    page.screenshot(path=str(SHOTS / "roster-attendance.en.png"), full_page=True)

    page.click("#lang-zh")
    page.wait_for_selector("text=考勤")
    north = page.inner_text("#post-longtan-north")
    assert "迟到（40 分钟）" in north or "迟到 (40 分钟)" in north
    assert "准时" in north and "个人 PIN" in north
    assert "缺勤" in page.inner_text("#post-longtan-east")
    page.screenshot(path=str(SHOTS / "roster-attendance.zh.png"), full_page=True)

    with page.expect_download() as download:
        page.click("#attendance-csv")
    assert download.value.suggested_filename == f"attendance-{DAY.isoformat()}.csv"
