"""Which day /flow opens on, and what the page says about reading it (a day under way is half empty)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from console.config import load_config
from gatepost.demo import _configure_flow
from simulator.site import SimulatedSite
from tests.console.web.pages_support import web_console

ZONE = "Asia/Shanghai"


def _today() -> datetime:
    return datetime.now(ZoneInfo(ZONE))


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("lang", "note"), [("en", "This is the last full day"), ("zh", "这是最近一个完整日")]
)
def test_last_full_day_opens_on_yesterday_and_links_today(tmp_path: Path, lang: str, note: str) -> None:
    with web_console(tmp_path, flow={"timezone": ZONE, "open_on": "last_full_day"}) as console:
        today = _today().date()
        page = console.client("operator", lang=lang).get("/flow")
    assert page.status_code == 200
    yesterday = today - timedelta(days=1)
    assert f'name="date" value="{yesterday}"' in page.text
    assert note in page.text
    assert f'href="/flow?date={today}"' in page.text


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("lang", "note"), [("en", "Today is still under way"), ("zh", "今天尚未结束")])
def test_today_by_default_says_it_is_still_filling_and_links_the_last_full_day(
    tmp_path: Path, lang: str, note: str
) -> None:
    with web_console(tmp_path, flow={"timezone": ZONE}) as console:
        now = _today()
        page = console.client("operator", lang=lang).get("/flow")
    assert f'name="date" value="{now.date()}"' in page.text
    assert note in page.text and f"{now:%H}:00" in page.text
    assert f'href="/flow?date={now.date() - timedelta(days=1)}"' in page.text


def test_an_older_day_asked_for_has_no_note(tmp_path: Path) -> None:
    with web_console(tmp_path, flow={"timezone": ZONE}) as console:
        page = console.client("operator").get("/flow", params={"date": "2026-01-05"})
    assert 'id="flow-day-note"' not in page.text


def test_the_demo_opens_the_flow_page_on_the_last_full_day(tmp_path: Path) -> None:
    site = SimulatedSite(tmp_path, gates=["north"])
    _configure_flow(site, ZONE)
    assert load_config(site.console_config()).flow.open_on == "last_full_day"
