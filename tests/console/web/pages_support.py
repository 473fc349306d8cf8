"""A real web console around temporary stores, for the passes, cards and flow page tests.

Everything is real: the app from ``console.web.app.create_app``, SQLite stores in
``tmp_path``, a site office on disk, users logged in through ``UserStore.login``, and
the CSRF token read back from a rendered form as a browser would.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.testclient import TestClient

from console.config import ConsoleConfig
from console.store import EventStore
from console.web.app import build_context, create_app
from console.web.context import WebContext
from console.web.middleware import SESSION_COOKIE

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Console:
    ctx: WebContext
    app: object
    tmp: Path

    def client(self, role: str | None = "operator", lang: str = "en") -> TestClient:
        client = TestClient(self.app, base_url="http://127.0.0.1", follow_redirects=False)
        client.headers["accept"] = "text/html"
        client.cookies.set("gp_lang", lang)
        if role is not None:
            name = f"{role}1"
            if self.ctx.users.get(name) is None:
                self.ctx.users.add(name, PASSWORD, role)
                if role == "operator":  # these pages' tests act as an operator who issues passes
                    self.ctx.users.grant(name, "passes", "*")
            result = self.ctx.users.login(name, PASSWORD, lang=lang)
            client.cookies.set(SESSION_COOKIE, result.token)
        return client


def csrf_of(client: TestClient, path: str = "/passes") -> str:
    page = client.get(path)
    match = _CSRF.search(page.text)
    assert match, f"no CSRF field on {path}: {page.status_code}"
    return match.group(1)


def audit_actions(console: Console) -> list[str]:
    return [e.action for e in console.ctx.audit.entries()]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def web_console(
    tmp: Path, *, office: Path | None = None, cards: bool = False, flow: dict[str, object] | None = None
) -> Iterator[Console]:
    settings: dict[str, object] = {
        "store": {"path": str(tmp / "events.db")},
        # a port nobody listens on: these tests must never reach a broker running on this machine
        "mqtt": {"host": "127.0.0.1", "port": closed_port()},
    }
    settings["web"] = {"office": str(office)} if office is not None else {}
    if flow is not None:
        settings["flow"] = flow
    if cards:
        settings["cards"] = {
            "site": "longtan",
            "registry": str(tmp / "cards.db"),
            "thumbnails": str(tmp / "thumbnails"),
        }
    config = ConsoleConfig.model_validate(settings)
    with EventStore(config.store.path) as store:
        ctx = build_context(config, store)
        try:
            yield Console(ctx, create_app(ctx, watch=False), tmp)
        finally:
            if ctx.cards is not None:
                ctx.cards.close()
            ctx.db.close()


SHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


@contextmanager
def served(console: Console) -> Iterator[str]:
    """The console's app under a real uvicorn on a free port; yields its base URL."""
    from console.web.serve import WebServer

    server = WebServer(console.ctx, "127.0.0.1", closed_port())
    server.app = console.app
    server.server.config.app = console.app
    assert server.start(), "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def browser_login(page: object, base: str, console: Console, role: str = "operator") -> None:
    name = f"{role}1"
    if console.ctx.users.get(name) is None:
        console.ctx.users.add(name, PASSWORD, role)
        if role == "operator":
            console.ctx.users.grant(name, "passes", "*")
    page.goto(f"{base}/login")  # type: ignore[attr-defined]
    page.fill("#name", name)  # type: ignore[attr-defined]
    page.fill("#password", PASSWORD)  # type: ignore[attr-defined]
    page.click("#login")  # type: ignore[attr-defined]
    page.wait_for_url(f"{base}/")  # type: ignore[attr-defined]
