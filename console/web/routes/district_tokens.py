"""The admin's page for the district's pull-API tokens: make one (shown once), see them, revoke one.

The same :class:`~console.district.tokens.TokenStore` as ``gatepost console district-token``;
the plain token is in the answer to the POST that made it and nowhere else.
"""

from __future__ import annotations

import logging

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.district.tokens import TokenError
from console.web.auth import admin_required, current_user
from console.web.forms import audit
from console.web.render import render
from console.web.routes.api_v1 import tokens

log = logging.getLogger("gatepost.console.web.district")


async def _page(
    request: Request, *, status_code: int = 200, made: tuple[str, str] | None = None, error: str | None = None
) -> Response:
    store = await to_thread.run_sync(tokens, request)
    listed = await to_thread.run_sync(store.list)
    return render(
        request, "district/tokens.html", status_code=status_code, tokens=listed, made=made, error=error
    )


@admin_required
async def tokens_page(request: Request) -> Response:
    return await _page(request)


@admin_required
async def tokens_change(request: Request) -> Response:
    async with request.form() as form:
        action = str(form.get("action") or "")
        label = str(form.get("label") or "")[:200]
        sites = str(form.get("sites") or "*")[:1000]
        token_id = str(form.get("token_id") or "")[:40]
    store = await to_thread.run_sync(tokens, request)
    admin = current_user(request)
    if action == "create":
        try:
            token, plain = await to_thread.run_sync(
                lambda: store.create(label, sites, by=admin.name if admin is not None else "-")
            )
        except TokenError as exc:
            log.info("district token refused: %s", exc)
            return await _page(request, status_code=400, error=str(exc))
        await audit(request, "district.token_create", token.token_id, {"sites": token.sites_text})
        return await _page(request, made=(token.token_id, plain))
    if action == "revoke":
        revoked = await to_thread.run_sync(store.revoke, token_id)
        await audit(request, "district.token_revoke", token_id, {"revoked": revoked})
        return RedirectResponse("/district/tokens", status_code=303)
    return await _page(request, status_code=400, error="unknown action")


routes: list[BaseRoute] = [
    Route("/district/tokens", tokens_page, methods=["GET"]),
    Route("/district/tokens", tokens_change, methods=["POST"]),
]
