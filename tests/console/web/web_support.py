"""Helpers for the web console tests: a console around a temporary SQLite store, real users and sessions.

``Web`` is built the whole context the way ``console run`` does (``build_context``), so
the routes, middleware, alarms and audit run against the real database code.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from console.store import EventStore
from console.web.context import WebContext
from protocol import Event, GateState, GateStatus

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Web:
    ctx: WebContext
    store: EventStore
    app: Any
    tmp_path: Path

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://testserver", headers={"accept": "text/html"})

    def add_user(self, name: str, role: str = "operator") -> str:
        self.ctx.users.add(name, PASSWORD, role)
        return name


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    page = client.get("/login")
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": csrf_of(page.text), "next": "/"},
        follow_redirects=False,
    )


def post_form(client: TestClient, url: str, data: dict[str, str], *, page: str = "/") -> Any:
    token = csrf_of(client.get(page).text)
    return client.post(url, data={**data, "csrf_token": token}, follow_redirects=False)


def make_event(
    site: str, gate: str, seq: int, type_: str = "access.scan", *, at: datetime | None = None, **data: Any
) -> Event:
    return Event(
        id=uuid.uuid4().hex,
        site=site,
        gate=gate,
        boot="0" * 32,
        seq=seq,
        time=at or datetime(2026, 11, 29, 10, 0, tzinfo=UTC) + timedelta(seconds=seq),
        clock_trusted=True,
        type=type_,
        data=data,
    )


def make_status(site: str, gate: str, state: str, **extra: Any) -> GateStatus:
    return GateStatus(state=GateState(state), site=site, gate=gate, boot="0" * 32, **extra)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(web: Web) -> Any:
    """The app under a real uvicorn in a thread on a free port (a ``WebServer``); call ``.stop()``."""
    from console.web.serve import WebServer

    server = WebServer(web.ctx, "127.0.0.1", free_port())
    server.app = web.app  # the app (and watcher) the test already holds
    server.server.config.app = web.app
    assert server.start(), "uvicorn did not start"
    return server
