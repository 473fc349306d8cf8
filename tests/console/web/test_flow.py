"""/flow: charts, staffing table and advice from events stored through the real store, in both languages."""

from __future__ import annotations

import csv
import io
import random
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from console.flow import day_bounds
from console.store import EventStore
from protocol import Event
from tests.console.web.pages_support import Console, audit_actions, web_console
from tests.console.web.test_staffing import evening_peak_rate

UNTIL = date(2026, 11, 30)  # a Monday: the roster for it comes from the weekdays before
FLOW = {"capacity_per_guard": 12, "baseline_guards": 2, "min_guards": 1, "timezone": "Asia/Shanghai"}
"""A tenth of the article's flow and a tenth of a guard's capacity: the same advice from 10x fewer events."""


def _history(path: Path, scale: float = 0.1) -> int:
    """Four weeks of access decisions at longtan/north shaped like the evening-peak day, and a quiet side door."""
    rng = random.Random(3)
    events: list[Event] = []
    seq = {"north": 0, "side": 0}
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Asia/Shanghai")
    for offset in range(28, 0, -1):
        day = UNTIL - timedelta(days=offset)
        start, _ = day_bounds(day, zone)
        weekend = day.weekday() >= 5
        for slot in range(48):
            rate = evening_peak_rate(slot * 30) * scale * (0.6 if weekend else 1.0)
            for gate, n in (("north", round(rate / 2 * rng.uniform(0.92, 1.08))), ("side", 1)):
                for _ in range(n):
                    seq[gate] += 1
                    at = start + timedelta(minutes=30 * slot, seconds=rng.uniform(0, 1799))
                    out = rng.random() < 0.3
                    data = {"credential": "pass", "granted": True, "reason": "granted"}
                    if out:
                        data["direction"] = "out"
                    events.append(
                        Event(
                            id=uuid.uuid4().hex,
                            site="longtan",
                            gate=gate,
                            boot="a" * 32,
                            seq=seq[gate],
                            time=at,
                            clock_trusted=True,
                            type="access.scan",
                            data=data,
                        )
                    )
    with EventStore(path) as store:
        store.commit(events)
    return len(events)


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per module (about 7,500 events), copied for each test."""
    path = tmp_path_factory.mktemp("flow-history") / "events.db"
    _history(path)
    return path


@pytest.fixture
def console(tmp_path: Path, history_db: Path) -> Iterator[Console]:
    shutil.copyfile(history_db, tmp_path / "events.db")
    with web_console(tmp_path, flow=FLOW) as c:
        yield c


def test_flow_page_shows_charts_table_and_the_evening_advice(console: Console) -> None:
    client = console.client("operator")
    page = client.get("/flow", params={"date": UNTIL.isoformat(), "post": "longtan/north"})
    assert page.status_code == 200, page.text
    html = page.text
    assert 'data-window="18:00–19:30" data-delta="1"' in html
    assert 'data-window="20:00–21:00" data-delta="-1"' in html
    assert "add 1 guard 18:00–19:30 at longtan/north (peak " in html
    assert "one fewer 20:00–21:00 at longtan/north" in html
    # the month chart is an SVG with a bar per day and the busiest days marked
    svgs = [m for m in html.split("<svg")[1:]]
    assert len(svgs) >= 1
    month = ET.fromstring("<svg" + svgs[-1].split("</svg>")[0] + "</svg>")
    bars = [g for g in month.iter("{http://www.w3.org/2000/svg}g") if "bar" in (g.get("class") or "")]
    assert len(bars) == 30
    assert any("peak" in (g.get("class") or "") for g in bars)
    assert 'href="/flow/export.csv?' in html and 'href="/flow/export.json?' in html


def test_day_chart_marks_the_evening_peak(console: Console) -> None:
    client = console.client("operator")
    page = client.get("/flow", params={"date": "2026-11-27"})  # a Friday with history
    assert page.status_code == 200
    start = page.text.index('<figure class="chart-box" data-post="longtan/north">')
    svg = page.text[start:].split(">", 1)[1].split("</figure>")[0]
    root = ET.fromstring(svg)
    peaks = [
        g.get("data-label")
        for g in root.iter("{http://www.w3.org/2000/svg}g")
        if "peak" in (g.get("class") or "")
    ]
    # 18:00-19:00 is all evening peak; 19:00-20:00 half of it (about 245 of 310: right at the 80% line)
    assert "18:00" in peaks and set(peaks) <= {"18:00", "19:00"}


def test_exports(console: Console) -> None:
    client = console.client("operator")
    query = {"date": UNTIL.isoformat(), "post": "longtan/north"}
    data = client.get("/flow/export.json", params=query).json()
    assert data["post"] == "longtan/north" and data["kind"] == "weekday"
    (plan,) = data["staffing"]
    assert any(a.startswith("add 1 guard 18:00–19:30") for a in plan["advice"])
    rows = list(csv.DictReader(io.StringIO(client.get("/flow/export.csv", params=query).text)))
    staffing = [r for r in rows if r["section"] == "staffing" and r["start"] == "18:00"]
    assert staffing and staffing[0]["guards"] == "3" and staffing[0]["change"] == "1"
    assert len([r for r in rows if r["section"] == "day"]) == 30
    assert audit_actions(console).count("flow.export") == 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"date": "yesterday"}, "is not a day like"),
        ({"date": "1900-01-01"}, "is not a day like"),
        ({"post": "../../etc"}, "is not a checkpoint"),
        ({"post": "x" * 500}, "is not a checkpoint"),
        ({"kind": "holiday"}, "neither weekday nor weekend"),
    ],
)
def test_bad_query_is_a_clear_message(console: Console, query: dict[str, str], message: str) -> None:
    client = console.client("operator")
    page = client.get("/flow", params=query)
    assert page.status_code == 400 and message in page.text and 'id="flow-error"' in page.text
    export = client.get("/flow/export.json", params=query)
    assert export.status_code == 400 and "error" in export.json()


def test_login_required_and_chinese(console: Console) -> None:
    assert console.client(None).get("/flow").status_code == 303
    assert console.client(None).get("/flow/export.csv", headers={"accept": "*/*"}).status_code == 401
    page = console.client("operator", lang="zh").get("/flow", params={"date": UNTIL.isoformat()})
    assert page.status_code == 200
    assert "排班建议" in page.text and "增加 1 名保安" in page.text and "人/小时" in page.text


def test_empty_store(tmp_path: Path) -> None:
    with web_console(tmp_path) as console:
        page = console.client("operator").get("/flow")
        assert page.status_code == 200
        assert "No entries or exits were recorded on this day." in page.text


def test_flow_page_in_a_browser(tmp_path: Path, browser_page) -> None:
    """At the article's scale (310/h at the evening peak, 120 persons per guard-hour): pickers, charts, advice."""
    from tests.console.web.pages_support import SHOTS, browser_login, served

    _history(tmp_path / "events.db", scale=1.0)
    page = browser_page
    with web_console(tmp_path, flow={"baseline_guards": 2}) as console, served(console) as base:
        browser_login(page, base, console)
        page.goto(f"{base}/flow?date=2026-11-27")
        page.select_option("select[name=post]", "longtan/north")
        page.fill("input[name=date]", UNTIL.isoformat())
        page.click(".flow-filters button[type=submit]")
        page.wait_for_url("**/flow?date=2026-11-30&post=longtan%2Fnorth*")
        advice = page.locator("li.advice-add").first
        assert "18:00–19:30" in advice.inner_text()
        assert page.locator("svg.chart g.bar.peak").count() >= 2  # day and month charts both mark peaks
        page.goto(f"{base}/flow?date=2026-11-27&post=longtan%2Fnorth&kind=weekday")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "console-flow.png"), full_page=True)
        page.context.close()  # ends the live-event stream, so the server stops at once


def test_all_of_many_posts_is_one_summed_chart_and_only_the_changes(console: Console) -> None:
    """A district: past MAX_POSTS_IN_DETAIL posts, "all posts" sums the day and lists only rosters to change."""
    from console.flow import MAX_POSTS_IN_DETAIL

    client = console.client("operator")
    few = client.get("/flow", params={"date": "2026-11-27"}).text
    assert few.count('<figure class="chart-box" data-post="longtan/') == 2  # north and side, each its own
    assert 'id="changes-only"' not in few
    # quiet gates that only ever reported a status: the district grows past the detail limit
    with EventStore(console.tmp / "events.db") as store:
        from protocol import GateState, GateStatus

        store.commit(
            statuses=[
                GateStatus(state=GateState.ONLINE, site="outer", gate=f"g{i:02d}", boot="b" * 32)
                for i in range(MAX_POSTS_IN_DETAIL)
            ]
        )
    page = client.get("/flow", params={"date": "2026-11-27"})
    assert page.status_code == 200
    html = page.text
    assert '<figure class="chart-box" data-post="">' in html  # one chart: every post summed
    assert 'data-post="longtan/north">' not in html.split('<section class="staffing"')[0]
    assert 'id="changes-only"' in html and f"{MAX_POSTS_IN_DETAIL + 2} checkpoints" in html
    staffing = html.split('<section class="staffing"')[1]
    assert '<article class="post-plan" data-post="longtan/north">' in staffing  # its roster changes
    articles = staffing.split('<article class="post-plan"')[1:]
    assert articles and all('<ul class="advice">' in a for a in articles)  # no "no change" entries
    assert '<option value="outer/g00"' in html  # every gate is in the picker
    # the summed day is the same bars as north and side added up
    summed = client.get("/flow/export.json", params={"date": "2026-11-27"}).json()["hours"][""]
    north = client.get("/flow/export.json", params={"date": "2026-11-27", "post": "longtan/north"}).json()
    side = client.get("/flow/export.json", params={"date": "2026-11-27", "post": "longtan/side"}).json()
    for total, a, b in zip(
        summed, north["hours"]["longtan/north"], side["hours"]["longtan/side"], strict=True
    ):
        assert total["entries"] == a["entries"] + b["entries"]


def test_plans_for_all_posts_are_worked_out_once_then_refreshed_behind_the_page() -> None:
    import threading

    from console.flow import PlanCache

    cache = PlanCache(ttl_s=60)
    calls: list[str] = []

    def make(label: str) -> list:
        calls.append(label)
        return [label]  # type: ignore[list-item]

    assert cache.get(("a",), lambda: make("first")) == ["first"]
    assert cache.get(("a",), lambda: make("again")) == ["first"] and calls == ["first"]
    assert cache.get(("b",), lambda: make("other")) == ["other"]
    # past its time a plan is still served at once, while a fresh one is worked out behind it
    stale = PlanCache(ttl_s=0)
    stale.get(("a",), lambda: make("old"))
    release = threading.Event()
    refreshed = threading.Event()

    def slow() -> list:
        release.wait(5)
        refreshed.set()
        return ["new"]  # type: ignore[list-item]

    assert stale.get(("a",), slow) == ["old"]  # not blocked by the slow refresh
    assert stale.get(("a",), lambda: make("not twice")) == ["old"]  # one refresh at a time
    release.set()
    assert refreshed.wait(5)
    stale.submit(lambda: None)  # runs after the refresh on the one worker thread
    stale._worker.submit(lambda: None).result(5)
    assert stale.get(("a",), lambda: ["newer"]) == ["new"]  # type: ignore[list-item]
    assert "not twice" not in calls
    stale.close()
    cache.close()


def test_the_console_works_out_todays_staffing_when_it_starts(console: Console) -> None:
    """The first operator to open /flow for all posts should not wait for weeks of events to be read."""
    import time

    from starlette.testclient import TestClient

    from console.web.app import create_app

    app = create_app(console.ctx, watch=True)
    with TestClient(app):
        deadline = time.monotonic() + 20
        while not app.state.plan_cache._plans and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.plan_cache._plans, "nothing was worked out at start"
