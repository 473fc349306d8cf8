"""Logging in and out, and choosing the language.

What a login attempt is answered depends on nothing but the attempt: a wrong password
is a 401 for a real name and a made-up one alike, a (name, address) pair that failed too
often is a 429 for both, and a flood that finds the hashing queue full is a 429 that
says "busy" for every name (console/users.py, console/throttle.py).

Audit: every password actually checked is one entry (``login`` or ``login.failed``, with
the name tried and the address).  Attempts refused without a check — a locked pair, a
full queue, a password longer than anyone's — are counted and written as one
``login.refused`` entry a minute at most (:class:`RefusedLogins`): a flood must not turn
into a flood of database writes, and the log still says it happened, how much and from where.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.users import LoginOutcome, LoginResult
from console.web.auth import client_address, current_user
from console.web.i18n import LANGUAGES
from console.web.middleware import LANG_COOKIE, SESSION_COOKIE, cookie_header
from console.web.render import render

log = logging.getLogger("gatepost.console.web.session")

REFUSAL_REPORT_S = 60.0
BUSY_RETRY_S = 5


class RefusedLogins:
    """Login attempts refused without a check, tallied; :meth:`take` hands out the tally once per period.

    Taken after every login attempt (so a burst is written within a minute of the next
    attempt) and when the server stops.
    """

    def __init__(self, period: float = REFUSAL_REPORT_S) -> None:
        self.period = period
        self._lock = threading.Lock()
        self._outcomes: Counter[str] = Counter()
        self._addresses: Counter[str] = Counter()
        self._names: Counter[str] = Counter()
        self._since = time.monotonic() - period

    def add(self, outcome: str, name: str, address: str) -> None:
        with self._lock:
            self._outcomes[outcome] += 1
            self._addresses[address or "-"] += 1
            self._names[name or "-"] += 1

    def take(self, *, force: bool = False) -> dict[str, object] | None:
        """The tally since the last one, if there is any and a period has passed (or ``force``)."""
        with self._lock:
            if not self._outcomes or (not force and time.monotonic() - self._since < self.period):
                return None
            report: dict[str, object] = {
                "outcomes": dict(self._outcomes),
                "top_addresses": dict(self._addresses.most_common(5)),
                "top_names": dict(self._names.most_common(5)),
                "addresses": len(self._addresses),
                "names": len(self._names),
            }
            self._outcomes.clear()
            self._addresses.clear()
            self._names.clear()
            self._since = time.monotonic()
            return report


def write_report(ctx: Any, report: dict[str, object]) -> None:
    """A tally of refused logins as one ``login.refused`` audit entry, and a log line."""
    log.warning("login attempts refused without a check: %s", report)
    ctx.audit.record("-", "login.refused", "", report)


def refused_logins(request: Request) -> RefusedLogins:
    tally = getattr(request.app.state, "refused_logins", None)
    if tally is None:
        tally = request.app.state.refused_logins = RefusedLogins()
    return tally


def _safe_next(target: str | None) -> str:
    """Only a path on this site: ``next=//evil.example`` must not become an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:500]


async def login_page(request: Request) -> Response:
    if current_user(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return render(request, "login.html", next=_safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    ctx = request.app.state.ctx
    async with request.form() as form:
        name = str(form.get("name") or "").strip()[:64]
        password = str(form.get("password") or "")
        target = _safe_next(str(form.get("next") or "/"))
    lang = request.scope["state"].get("lang")
    address = client_address(request)
    result = await to_thread.run_sync(lambda: ctx.users.login(name, password, address=address, lang=lang))
    if result.outcome is not LoginOutcome.OK:
        await _record_failure(request, name, address, result)
    report = refused_logins(request).take()
    if report is not None:
        await to_thread.run_sync(write_report, ctx, report)
    if result.outcome is not LoginOutcome.OK:
        message = {
            LoginOutcome.LOCKED: "login.locked",
            LoginOutcome.DISABLED: "login.disabled",
            LoginOutcome.BUSY: "login.busy",
        }.get(result.outcome, "login.bad_credentials")
        response = render(
            request,
            "login.html",
            status_code=429 if result.outcome in (LoginOutcome.LOCKED, LoginOutcome.BUSY) else 401,
            next=target,
            error=message,
            minutes=max(1, round(result.locked_for_s / 60)),
            name=name,
        )
        if result.outcome is LoginOutcome.BUSY:
            response.headers["retry-after"] = str(BUSY_RETRY_S)
        return response
    await to_thread.run_sync(lambda: ctx.audit.record(name, "login", name, address=address))
    response = RedirectResponse(target, status_code=303)
    lifetime = int(ctx.users.session_lifetime.total_seconds())
    response.headers.append(
        "set-cookie",
        cookie_header(
            SESSION_COOKIE, result.token, max_age=lifetime, secure=ctx.config.web.secure_cookies
        ).decode(),
    )
    return response


async def _record_failure(request: Request, name: str, address: str, result: LoginResult) -> None:
    """A checked failure is one audit entry; a refusal without a check goes into the tally."""
    ctx = request.app.state.ctx
    if result.checked:
        detail: dict[str, object] = {"outcome": result.outcome.value}
        if result.locked_for_s:
            detail["locked_for_s"] = round(result.locked_for_s)
        await to_thread.run_sync(
            lambda: ctx.audit.record(name or "-", "login.failed", name, detail, address=address)
        )
    else:
        refused_logins(request).add(result.outcome.value, name, address)


async def logout(request: Request) -> Response:
    ctx = request.app.state.ctx
    session = request.scope["state"].get("session")
    if session is not None:
        await to_thread.run_sync(ctx.users.logout, session.token_hash)
        await to_thread.run_sync(
            lambda: ctx.audit.record(
                session.user, "logout", session.user.name, address=client_address(request)
            )
        )
    response = RedirectResponse("/login", status_code=303)
    secure = ctx.config.web.secure_cookies  # a Secure cookie is only forgotten by a Secure deletion
    response.headers.append(
        "set-cookie", cookie_header(SESSION_COOKIE, "", max_age=0, secure=secure).decode()
    )
    return response


async def set_language(request: Request) -> Response:
    ctx = request.app.state.ctx
    async with request.form() as form:
        lang = str(form.get("lang") or "")
        target = _safe_next(str(form.get("next") or "/"))
    response = RedirectResponse(target, status_code=303)
    if lang not in LANGUAGES:
        return response
    session = request.scope["state"].get("session")
    if session is not None:
        await to_thread.run_sync(ctx.users.set_session_lang, session.token_hash, lang)
    response.headers.append(
        "set-cookie",
        cookie_header(LANG_COOKIE, lang, max_age=365 * 86400, secure=ctx.config.web.secure_cookies).decode(),
    )
    return response


routes: list[BaseRoute] = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/lang", set_language, methods=["POST"]),
]
