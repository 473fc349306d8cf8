"""No database or Pillow work on the event loop: a write lock held by ingest stalls one request, not all.

Every page and live stream shares one event loop.  While ingest holds SQLite's write lock a
statement waits up to the busy timeout, and a phone photo takes Pillow a good part of a
second; either, on the loop, would freeze every browser at once.  These tests record each
statement on the console's database and each thumbnail made on the loop's own thread.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import console.thumbnails
from tests.console.web.pages_support import Console, audit_actions, csrf_of, web_console
from tests.console.web.web_support import make_event
from tests.offices import create_office

CARD = "wiegand26:13:13067"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Console]:
    create_office(tmp_path / "office", site="longtan", site_id=7).close()
    with web_console(tmp_path, office=tmp_path / "office", cards=True) as c:
        yield c


def _on_the_loop() -> bool:
    """Running on the app's event loop: TestClient runs it on a thread of its own.

    The main thread may hold a running loop too (the browser tests' Playwright keeps one
    for the whole session), and this test's own calls run there: not the app's.
    """
    if threading.current_thread() is threading.main_thread():
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def on_the_loop(site: Console, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What ran on the event loop's thread: statements on the console database, thumbnails."""
    found: list[str] = []

    def watch(owner: object, name: str) -> None:
        real: Callable[..., Any] = getattr(owner, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            if _on_the_loop():
                found.append(f"{name} {str(args[0])[:60] if args else ''}")
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, watched)

    for name in ("query", "execute", "executemany"):
        watch(site.ctx.db, name)
    watch(console.thumbnails, "make_thumbnail")
    return found


def _photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 400), (180, 120, 90)).save(out, "JPEG")
    return out.getvalue()


def test_pages_that_change_things_leave_the_database_and_pillow_to_worker_threads(
    site: Console, on_the_loop: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("console.web.routes.passes.PUBLISH_TIMEOUT_S", 0.5)  # no broker listens here
    site.ctx.alarms.observe_events([make_event("longtan", "north", 1, "door.forced")])  # one for the badge
    client = site.client("operator")
    csrf = csrf_of(client, "/passes/new")
    person = {"csrf_token": csrf, "holder": "王小明", "unit": "3-2-501", "role": "resident"}
    photo = {"photo": ("face.jpg", _photo(), "image/jpeg")}
    assert client.post("/passes/new", data=person, files=photo).status_code == 303
    assert client.get("/passes/1/card.pdf").status_code == 200
    revoke = {"csrf_token": csrf, "reason": "lost", "confirm": "yes"}
    assert client.post("/passes/1/revoke", data=revoke).status_code == 303
    assert client.post("/passes/publish", data={"csrf_token": csrf}).status_code == 502
    card = {"csrf_token": csrf, "credential": CARD, "holder": "王小明"}
    assert client.post("/cards/new", data=card, files=photo).status_code == 303
    assert (
        client.post(f"/cards/{CARD}/remove", data={"csrf_token": csrf, "confirm": "yes"}).status_code == 303
    )
    assert client.get("/flow/export.csv").status_code == 200
    assert client.get("/flow/export.json").status_code == 200
    page = client.get("/passes")
    assert 'id="alarm-badge" data-count="1"' in page.text  # the badge still counts, off the loop
    assert on_the_loop == []
    assert {"pass.issue", "pass.print", "pass.revoke", "pass.publish", "card.add", "card.remove"} <= set(
        audit_actions(site)
    )
    assert audit_actions(site).count("flow.export") == 2
