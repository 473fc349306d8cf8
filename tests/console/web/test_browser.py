"""The web console in a real Chromium: log in, watch a live event arrive, acknowledge an alarm, switch language.

The console runs under uvicorn in a thread on a free port, with the real watcher; events
are committed to the real store the way the ingestor commits them, and the page must
show them without reloading (Server-Sent Events).  Screenshots of the main pages go to
docs/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from console.db import now_text
from console.store import LinkKind, LinkState
from tests.console.web.web_support import PASSWORD, Web, make_event, make_status, serve

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


@pytest.fixture
def served(web: Web) -> Iterator[tuple[Web, str]]:
    web.add_user("ana")
    web.ctx.users.grant("ana", "unlock", "longtan")  # the overview shows unlock where it is granted
    now = datetime.now(UTC)
    web.store.commit(
        [
            make_event(
                "longtan", "north", 1, "agent.started", at=now, version="0.1.0", clock_trusted=True, backlog=0
            ),
            make_event(
                "longtan",
                "north",
                2,
                at=now,
                credential="pass",
                granted=True,
                reason="granted",
                holder="Li Wei",
                unit="3-2-401",
                reader="scanner",
            ),
            make_event("longtan", "building-3", 1, "door.locked", at=now, cause="start"),
        ],
        [
            make_status(
                "longtan",
                "north",
                "online",
                backlog=0,
                clock_trusted=True,
                version="0.1.0",
                revocation_version=7,
                revocation_stale=False,
            ),
            make_status("longtan", "building-3", "online", backlog=2, clock_trusted=True, version="0.1.0"),
            make_status("longtan", "east", "offline"),
        ],
        # an ingestor connected to the broker (console/ingest.py records it): states are confirmed
        link=LinkState("console", LinkKind.CONNECTED, "2000-01-01T00:00:00.000000Z", now_text()),
    )
    server = serve(web)
    try:
        yield web, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def _login(page: Any, base: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#name", "ana")
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url(f"{base}/")


def test_login_live_event_alarm_ack_and_language(served: tuple[Web, str], browser_page: Any):
    web, base = served
    page = browser_page
    _login(page, base)
    page.wait_for_selector("body[data-live='open']")
    assert page.locator("#gate-longtan-east .state-offline").count() == 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "console-overview.png"), full_page=True)

    # A new event arrives while the page is open: the row appears without a reload.
    page.goto(f"{base}/events")
    page.wait_for_selector("body[data-live='open']")
    marker = page.evaluate("() => (window.__marker = Math.random())")
    web.store.commit(
        [
            make_event(
                "longtan",
                "north",
                3,
                at=datetime.now(UTC),
                credential="pass",
                granted=False,
                reason="revoked",
                holder="Zhang San",
                reader="scanner",
            )
        ]
    )
    web.app.state.watcher.poke()
    page.wait_for_selector("#events tbody tr:first-child >> text=Zhang San")
    assert page.evaluate("() => window.__marker") == marker  # same document: nothing reloaded
    page.screenshot(path=str(SHOTS / "console-events.png"), full_page=True)

    # The overview follows the gate live too.
    page.goto(f"{base}/")
    page.wait_for_selector("body[data-live='open']")
    web.store.commit([make_event("longtan", "building-3", 2, "door.forced", at=datetime.now(UTC))])
    web.app.state.watcher.poke()
    page.wait_for_selector("#gate-longtan-building-3 .door-forced")

    # The forced door raised an alarm; acknowledge it with a note.
    page.goto(f"{base}/alarms")
    row = page.locator("#alarms tbody tr.open", has_text="Door forced open")
    row.wait_for()
    open_before = page.locator("#alarms tbody tr.open").count()  # the offline east gate raised one too
    page.screenshot(path=str(SHOTS / "console-alarms.png"), full_page=True)
    row.locator("input[name=note]").fill("checked on camera: a mover")
    row.locator("button[type=submit]").click()
    page.wait_for_function(
        f"() => document.querySelectorAll('#alarms tbody tr.open').length === {open_before - 1}"
    )
    forced = next(a for a in web.ctx.alarms.list() if a.kind == "door.forced")
    assert (forced.acked_by, forced.note) == ("ana", "checked on camera: a mover")

    # Switch to Chinese, and the choice sticks across pages.
    page.click("#lang-zh")
    page.wait_for_selector("text=告警")
    page.goto(f"{base}/events")
    assert "事件" in page.inner_text("h1")
    page.click("#lang-en")
    page.wait_for_selector("h1 >> text=Events")
