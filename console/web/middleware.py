"""One middleware in front of every route: session, language, CSRF and security headers.

- **Session**: the ``gp_session`` cookie (HttpOnly, SameSite=Strict) is looked up in
  :class:`console.users.UserStore`; ``request.state.user`` is the user or ``None``.
  Reading a static file or ``/healthz`` is the same for everyone, so costs no lookup.  For a
  page (a request that accepts HTML) the same worker thread also counts the open alarms
  for the navigation's badge (``request.state.open_alarms``), so that rendering never
  waits on the database on the event loop.
- **Language**: the session's choice, else the ``gp_lang`` cookie, else
  ``Accept-Language`` — in ``request.state.lang``.
- **CSRF**: every POST/PUT/PATCH/DELETE must carry the token of its session (or, before
  login, of the ``gp_csrf`` cookie) as form field ``csrf_token`` or header
  ``X-CSRF-Token``, and an ``Origin`` header, when sent, must be this host.  SameSite=Strict
  alone already stops most cross-site posts; the token also covers old browsers and
  a sibling site on the same domain.  The form body is read here (bounded by
  :data:`MAX_BODY_BYTES`, or :data:`MAX_ANONYMOUS_BODY_BYTES` without a session: nobody
  may make the server buffer 64 MiB before logging in) and replayed to the route unchanged.
- **Headers**: a Content-Security-Policy that allows only our own scripts, no framing,
  no sniffing.

A pure ASGI middleware rather than ``BaseHTTPMiddleware`` so that Server-Sent Event
streams and large exports pass through without being buffered.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

from anyio import to_thread
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console.users import Session
from console.web.i18n import LANGUAGES, negotiate

log = logging.getLogger("gatepost.console.web")

SESSION_COOKIE = "gp_session"
CSRF_COOKIE = "gp_csrf"
LANG_COOKIE = "gp_lang"
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_ANONYMOUS_BODY_BYTES = 64 * 1024
"""The body a visitor without a session may send: the login and language forms are a few hundred bytes."""
SESSIONLESS_PATHS = ("/static/", "/healthz", "/api/")
"""Path prefixes a GET of which is answered the same for everyone: no session lookup for them.
``/api/`` answers by its bearer token alone (console/web/routes/api_v1.py): a login grants nothing there."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def cookie_header(name: str, value: str, *, max_age: int | None = None, secure: bool = False) -> bytes:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode("latin-1")


def _cookie_name(set_cookie: bytes) -> bytes:
    return set_cookie.split(b"=", 1)[0].strip()


def _cookies(headers: Headers) -> dict[str, str]:
    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header is an anonymous visitor, not an error
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, context: Callable[[], Any]) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = self.context()
        headers = Headers(scope=scope)
        cookies = _cookies(headers)
        session = None
        state = scope.setdefault("state", {})
        sessionless = scope["path"].startswith(SESSIONLESS_PATHS) and scope["method"] in SAFE_METHODS
        token = None if sessionless else cookies.get(SESSION_COOKIE)
        if token:
            page = "text/html" in headers.get("accept", "")
            session, state["open_alarms"] = await to_thread.run_sync(_session_of, ctx, token, page)
        state["user"] = session.user if session else None
        state["session"] = session
        lang = (session.lang if session else None) or cookies.get(LANG_COOKIE)
        state["lang"] = lang if lang in LANGUAGES else negotiate(headers.get("accept-language"))
        new_cookies: list[bytes] = []
        secure = bool(ctx.config.web.secure_cookies)
        if session is not None:
            state["csrf"] = session.csrf
        else:
            anonymous = cookies.get(CSRF_COOKIE, "")
            if len(anonymous) < 20 or len(anonymous) > 100:
                anonymous = secrets.token_urlsafe(32)
                new_cookies.append(cookie_header(CSRF_COOKIE, anonymous, secure=secure))
            state["csrf"] = anonymous
        if token and session is None:  # expired or unknown: forget it in the browser too
            new_cookies.append(cookie_header(SESSION_COOKIE, "", max_age=0, secure=secure))

        if scope["method"] not in SAFE_METHODS:
            limit = MAX_BODY_BYTES if session is not None else MAX_ANONYMOUS_BODY_BYTES
            refusal, receive = await self._check_csrf(scope, receive, headers, state["csrf"], limit)
            if refusal is not None:
                status, why = refusal
                log.warning(
                    "refused %s %s from %s: %s",
                    scope["method"],
                    scope["path"],
                    (scope.get("client") or ("?",))[0],
                    why,
                )
                label = {403: "forbidden", 413: "too large"}.get(status, "bad request")
                response = PlainTextResponse(f"{label}: {why}", status_code=status)
                await response(scope, receive, self._wrap_send(send, new_cookies))
                return
        await self.app(scope, receive, self._wrap_send(send, new_cookies))

    def _wrap_send(self, send: Send, new_cookies: list[bytes]) -> Send:
        """Add the security headers, and this middleware's cookies unless the response sets the same one.

        The route's cookie wins: a login answering a browser that still sent a stale
        session cookie sets the new session, and the middleware's "forget the stale one"
        must not come after it and delete it (the first login then failed silently).
        """

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in _SECURITY_HEADERS if name not in present]
                chosen = {_cookie_name(value) for name, value in headers if name.lower() == b"set-cookie"}
                headers += [(b"set-cookie", c) for c in new_cookies if _cookie_name(c) not in chosen]
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

    async def _check_csrf(
        self, scope: Scope, receive: Receive, headers: Headers, expected: str, limit: int
    ) -> tuple[tuple[int, str] | None, Receive]:
        """Why the request is refused, as (status, reason), or None; and a ``receive`` that replays the body.

        The body is read here whichever way the token comes (form field or
        ``X-CSRF-Token`` header), so ``limit`` bytes bound every request.
        """
        origin = headers.get("origin")
        if origin and origin != "null":
            host = headers.get("host", "")
            if origin.split("://", 1)[-1] != host:
                return (403, "cross-origin request"), receive
        supplied = headers.get("x-csrf-token")
        content_type = headers.get("content-type", "")
        is_form = content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))
        if supplied is None and not is_form:
            return (403, "missing CSRF token"), receive
        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            return (413, "request body too large"), receive
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return (400, "client went away"), receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return (413, "request body too large"), receive
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if supplied is None:
            try:
                supplied = await _form_field(scope, body, "csrf_token")
            except _MalformedForm as exc:
                return (400, f"malformed form: {exc}"), receive
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if not supplied or not expected or not hmac.compare_digest(supplied.encode(), expected.encode()):
            return (403, "bad or missing CSRF token"), replay
        return None, replay


def _session_of(ctx: Any, token: str, page: bool) -> tuple[Session | None, int | None]:
    """The cookie's session and, for a logged-in page, the open-alarm count its badge shows."""
    from console.web.scope import open_alarm_count

    session = ctx.users.session(token)
    if session is None or not page:
        return session, None
    return session, open_alarm_count(ctx, session.user.site_limit)


class _MalformedForm(ValueError):
    """A body that says it is a form and is not one (or breaks a size limit of a form)."""


async def _form_field(scope: Scope, body: bytes, name: str) -> str | None:
    sent = False

    async def once() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request(dict(scope), once)
    try:
        async with request.form(max_files=1000, max_fields=10000) as form:
            value = form.get(name)
            return value if isinstance(value, str) else None
    except HTTPException as exc:  # Starlette's refusal: too many fields, a part too large, a bad boundary
        raise _MalformedForm(str(exc.detail)) from None
    except MultiPartException as exc:  # the same, where Starlette does not wrap it
        raise _MalformedForm(exc.message) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _MalformedForm(type(exc).__name__) from None
