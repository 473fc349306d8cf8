"""Who may call a page: ``@login_required`` and ``@admin_required`` for ``async def endpoint(request)``.

The security middleware (:mod:`console.web.middleware`) has already turned the session
cookie into ``request.state.user`` (a :class:`console.users.User`: ``.name``,
``.role``) or ``None``.  A browser that is not logged in is sent to the login page and
back; anything else (``fetch``, ``EventSource``, curl) gets a plain 401, because a
redirect to HTML is no answer to a script.  An operator asking for an admin page gets
403 and a page saying so.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from console.users import Role, User

Endpoint = Callable[[Request], Awaitable[Response]]


def current_user(request: Request) -> User | None:
    return request.scope.get("state", {}).get("user")


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and request.method in ("GET", "HEAD")


def _login_redirect(request: Request) -> Response:
    if _wants_html(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return PlainTextResponse("login required", status_code=401)


def login_required(endpoint: Endpoint) -> Endpoint:
    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        if current_user(request) is None:
            return _login_redirect(request)
        return await endpoint(request)

    return wrapper


def admin_required(endpoint: Endpoint) -> Endpoint:
    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        user = current_user(request)
        if user is None:
            return _login_redirect(request)
        if user.role is not Role.ADMIN:
            from console.web.render import render

            return render(request, "error.html", status_code=403, message_key="error.admin_only")
        return await endpoint(request)

    return wrapper


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""
