"""The gates page says what has not arrived: open gaps, events held at the gate and since when,
and a state the console can no longer vouch for."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from console.db import now_text
from console.gaps import GapWatch
from console.store import LinkKind, LinkState
from tests.console.web.web_support import Web, login, make_event, make_status


def _row(page: str, gate: str) -> str:
    match = re.search(rf'<tr id="gate-s1-{gate}".*?</tr>', page, re.S)
    assert match, f"no row for {gate}"
    return match.group(0)


def test_overview_shows_open_gaps_and_what_each_gate_holds(web: Web) -> None:
    web.add_user("ana")
    reported = datetime(2026, 11, 29, 2, 30, 5, tzinfo=UTC)  # 10:30:05 on the site's clock
    web.store.commit(
        [make_event("s1", "north", seq) for seq in (*range(1, 40), *range(46, 60))],
        [
            make_status("s1", "north", "online", backlog=12, time=reported),
            make_status("s1", "east", "online"),
        ],
    )
    GapWatch(web.store, web.ctx.alarms, alarm_after_s=3600).step()
    stamp = now_text()
    web.store.commit(link=LinkState("console", LinkKind.CONNECTED, "2000-01-01T00:00:00.000000Z", stamp))
    with web.client() as client:
        login(client, "ana")
        page = client.get("/").text
    north, east = _row(page, "north"), _row(page, "east")
    assert "40-45" in north and "6 missing" in north
    assert re.search(r'data-field="backlog">12 <span class="muted">· 2026-11-29 10:30:05', north)
    assert "unconfirmed" not in north  # received on the console's current connection, which is alive
    assert 'data-field="gaps">0<' in east


def test_overview_says_unconfirmed_since_the_console_lost_the_broker(web: Web) -> None:
    web.add_user("ana")
    web.store.commit([], [make_status("s1", "north", "online", backlog=0)])
    lost = now_text()
    web.store.commit(link=LinkState("console", LinkKind.LOST, lost, lost))
    with web.client() as client:
        login(client, "ana")
        north = _row(client.get("/").text, "north")
    assert 'class="warn unconfirmed">unconfirmed since' in north


def test_quarantined_events_are_off_the_events_page_but_listed_when_asked_for(web: Web) -> None:
    from console.store import EventFlag

    web.add_user("ana")
    genuine = make_event("s1", "north", 1, granted=True)
    forged = make_event("s1", "north", 2, "door.forced", at=datetime(8999, 1, 1, tzinfo=UTC))
    web.store.commit([genuine, forged], flags=[0, int(EventFlag.FUTURE)])
    with web.client() as client:
        login(client, "ana")
        page = client.get("/events").text
        flagged = client.get("/events?flagged=1").text
    assert genuine.id in page and forged.id not in page
    assert forged.id in flagged and genuine.id not in flagged and "quarantined" in flagged
    assert 'data-live="event"' not in flagged  # a flagged view is not live


def test_flow_export_can_leave_out_a_gates_flood(web: Web) -> None:
    from console.store import EventFlag

    web.add_user("ana")
    at = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    events = [make_event("s1", "north", seq, at=at, granted=False) for seq in range(1, 6)]
    web.store.commit(events, flags=[0, 0, *[int(EventFlag.FLOOD)] * 3])
    query = "start=2026-11-29T00:00:00&end=2026-11-30T00:00:00&gate=north"
    with web.client() as client:
        login(client, "ana")
        plain = client.get(f"/export/flow.json?{query}").json()
        without = client.get(f"/export/flow.json?{query}&exclude_flagged=1").json()
    assert [row["denied"] for row in plain] == [5]
    assert [row["denied"] for row in without] == [2]
