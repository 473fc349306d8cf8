"""Who may call a page, and what a user may see and do on it.

``@login_required`` and ``@admin_required`` wrap ``async def endpoint(request)``.
Beyond the role, an operator may be limited to some sites and holds the permissions an
admin granted (console/users.py): pages filter what they read with :func:`site_limit`
and :func:`sees`, and a page that would act without the right answers :func:`refuse` —
403, a page saying why, and an audit entry naming the operator and what was wanted.

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

from console.users import Permission, Role, User

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


def site_limit(request: Request) -> frozenset[str] | None:
    """The sites the logged-in user is limited to; None when they see every site."""
    user = current_user(request)
    return None if user is None else user.site_limit


def sees(request: Request, site: str) -> bool:
    user = current_user(request)
    return user is not None and user.sees(site)


def may(request: Request, permission: Permission, site: str, gate: str | None = None) -> bool:
    user = current_user(request)
    return user is not None and user.may(permission, site, gate)


async def refuse(
    request: Request,
    action: str,
    target: str,
    detail: dict[str, object] | None = None,
    *,
    message_key: str = "error.forbidden",
) -> Response:
    """403 with a page saying why, and an audit entry ``<action>.denied`` naming the user and the target."""
    from console.web.forms import audit
    from console.web.render import render

    await audit(request, f"{action}.denied", target, detail or {})
    return render(request, "error.html", status_code=403, message_key=message_key)
