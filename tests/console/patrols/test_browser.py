"""The patrol pages in a real Chromium, in English and Chinese: a route imported from CSV, a mistake refused
with its line and column, today's rounds, a round's record and its bilingual print.  Screenshots go to
docs/screenshots/patrols-*.png."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from console.patrols.store import PatrolStore
from protocol import Event
from protocol.duty import PATROL_CHECKIN, PatrolCheck
from tests.console.web.pages_support import SHOTS, browser_login, served, web_console

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
ZONE = ZoneInfo("Asia/Shanghai")


def _checkin(gate: str, seq: int, at: datetime, reader: str) -> Event:
    return Event(
        id=uuid.uuid4().hex,
        site="longtan",
        gate=gate,
        boot="4" * 32,
        seq=seq,
        time=at,
        clock_trusted=True,
        type=PATROL_CHECKIN,
        data=PatrolCheck(person="pg-1", name="巡逻员 周明", reader=reader).model_dump(mode="json"),
    )


def test_patrol_pages_in_both_languages(browser_page: Any, tmp_path: Path) -> None:
    page = browser_page
    SHOTS.mkdir(parents=True, exist_ok=True)
    with web_console(tmp_path) as console, served(console) as base:
        browser_login(page, base, console)
        page.goto(f"{base}/patrols")
        assert page.locator("#routes tr.empty").count() == 1

        bad = tmp_path / "bad.csv"
        bad.write_text("route,site,gate,offset\nloop,longtan,north,soon\n", encoding="utf-8")
        page.set_input_files("#routes-import input[type=file]", str(bad))
        page.click("#routes-import button")
        assert "line 2, column offset" in page.inner_text("#patrols-errors")

        # Today's first round started an hour ago: station 1 checked on time, station 2 late.
        start = datetime.now(ZONE).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        routes = tmp_path / "routes.csv"
        routes.write_text(
            "route,site,gate,reader,offset,tolerance,first,last,every\n"
            f"east loop,longtan,north,card,0,5,{start:%H:%M},{start:%H:%M},60\n"
            "east loop,longtan,building-3,,20,5,,,\n",
            encoding="utf-8",
        )
        page.set_input_files("#routes-import input[type=file]", str(routes))
        page.click("#routes-import button")
        page.wait_for_selector("#routes >> text=east loop")
        (route,) = PatrolStore(console.ctx.db).routes()
        utc = start.astimezone(UTC)
        console.ctx.store.commit(
            [
                _checkin("north", 1, utc + timedelta(minutes=2), "card"),
                _checkin("building-3", 1, utc + timedelta(minutes=29), "card"),
            ]
        )
        page.screenshot(path=str(SHOTS / "patrols-routes.en.png"), full_page=True)

        round_id = f"{route.id}-{start:%Y%m%dT%H%M}"
        page.goto(f"{base}/patrols/rounds?date={start.date().isoformat()}")
        page.click(f"#round-{round_id} a >> nth=0")
        page.wait_for_selector("#round-stations")
        text = page.inner_text("#round-stations")
        assert "巡逻员 周明" in text and "on time" in text and "late (+9 min)" in text
        page.screenshot(path=str(SHOTS / "patrols-round.en.png"), full_page=True)
        page.click("#lang-zh")
        page.wait_for_selector("text=巡逻记录")
        text = page.inner_text("#round-stations")
        assert "准时" in text and "迟到（迟9分钟）" in text.replace(" ", "")
        page.screenshot(path=str(SHOTS / "patrols-round.zh.png"), full_page=True)
        page.goto(f"{base}/patrols")
        assert "巡逻路线" in page.inner_text("h1")

        page.goto(f"{base}/patrols/rounds/{round_id}/print")
        content = page.inner_text("#print-stations")
        assert "准时" in content and "on time" in content and "late" in content and "迟到" in content
        page.screenshot(path=str(SHOTS / "patrols-print.png"), full_page=True)
