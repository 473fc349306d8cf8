"""Logging in and out, and choosing the language."""

from __future__ import annotations

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.users import LoginOutcome
from console.web.auth import client_address, current_user
from console.web.i18n import LANGUAGES
from console.web.middleware import LANG_COOKIE, SESSION_COOKIE, cookie_header
from console.web.render import render


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
    result = await to_thread.run_sync(lambda: ctx.users.login(name, password, lang=lang))
    address = client_address(request)
    if result.outcome is not LoginOutcome.OK:
        detail = {"outcome": result.outcome.value}
        if result.locked_for_s:
            detail["locked_for_s"] = round(result.locked_for_s)
        await to_thread.run_sync(
            lambda: ctx.audit.record(name or "-", "login.failed", name, detail, address=address)
        )
        message = {
            LoginOutcome.LOCKED: "login.locked",
            LoginOutcome.DISABLED: "login.disabled",
        }.get(result.outcome, "login.bad_credentials")
        return render(
            request,
            "login.html",
            status_code=429 if result.outcome is LoginOutcome.LOCKED else 401,
            next=target,
            error=message,
            minutes=max(1, round(result.locked_for_s / 60)),
            name=name,
        )
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
    response.headers.append("set-cookie", cookie_header(SESSION_COOKIE, "", max_age=0).decode())
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
