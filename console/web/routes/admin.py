"""Admin pages: the audit log and the console's users, their sites and what they are granted."""

from __future__ import annotations

import logging
import re

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.users import Permission, Role, UserError, UserProblem, sites_text
from console.web.auth import admin_required, current_user
from console.web.forms import audit
from console.web.queries import parse_row_id
from console.web.render import render

log = logging.getLogger("gatepost.console.web.admin")

_ACTION = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


@admin_required
async def audit_page(request: Request) -> Response:
    ctx = request.app.state.ctx
    action = request.query_params.get("action", "")
    action = action if _ACTION.match(action) else ""
    before_row_id = parse_row_id(request.query_params.get("before"))
    entries, actions = await to_thread.run_sync(
        lambda: (
            ctx.audit.entries(action=action or None, before_row_id=before_row_id, limit=200),
            ctx.audit.actions(),
        )
    )
    return render(
        request,
        "audit.html",
        entries=entries,
        actions=actions,
        action=action,
        next_before=entries[-1].row_id if len(entries) == 200 else None,
    )


async def _users_page(
    request: Request, status_code: int = 200, error: tuple[str, dict[str, object]] | None = None
) -> Response:
    ctx = request.app.state.ctx
    users = await to_thread.run_sync(ctx.users.list)
    return render(
        request,
        "users.html",
        status_code=status_code,
        users=users,
        roles=list(Role),
        permissions=list(Permission),
        sites_text=sites_text,
        error=error,
    )


@admin_required
async def users_page(request: Request) -> Response:
    return await _users_page(request)


@admin_required
async def users_change(request: Request) -> Response:
    """One form per action: ``add``, ``password``, ``role``, ``disable``, ``enable``, ``sites``,
    ``grant``, ``revoke``."""
    ctx = request.app.state.ctx
    admin = current_user(request)
    async with request.form() as form:
        action = str(form.get("action") or "")
        name = str(form.get("name") or "").strip()
        password = str(form.get("password") or "")
        role = str(form.get("role") or "operator")
        sites = str(form.get("sites") or "*")[:1000]
        permission = str(form.get("permission") or "")[:32]
        scope = str(form.get("scope") or "").strip()[:70]
    detail: dict[str, object]
    try:
        if action == "add":
            await to_thread.run_sync(lambda: ctx.users.add(name, password, role, sites=sites))
            detail = {"role": role, "sites": sites}
        elif action == "sites":
            limit = await to_thread.run_sync(ctx.users.set_sites, name, sites)
            detail = {"sites": sites_text(limit)}
        elif action == "grant":
            by = admin.name if admin is not None else "-"
            grant = await to_thread.run_sync(lambda: ctx.users.grant(name, permission, scope, by=by))
            detail = {"permission": grant.permission.value, "scope": grant.scope}
        elif action == "revoke":
            held = await to_thread.run_sync(ctx.users.revoke, name, permission, scope)
            detail = {"permission": permission, "scope": scope, "held": held}
        elif action == "password":
            await to_thread.run_sync(ctx.users.set_password, name, password)
            detail = {}
        elif action == "role":
            if admin is not None and name == admin.name:
                raise UserError(UserProblem.OWN_ROLE, "you cannot change your own role")
            await to_thread.run_sync(ctx.users.set_role, name, role)
            detail = {"role": role}
        elif action in ("disable", "enable"):
            if admin is not None and name == admin.name:
                raise UserError(UserProblem.OWN_ACCOUNT, "you cannot disable yourself")
            await to_thread.run_sync(ctx.users.set_disabled, name, action == "disable")
            detail = {}
        else:
            raise UserError(UserProblem.UNKNOWN_ACTION, "unknown action")
    except UserError as exc:
        log.info("user change %s %r refused: %s", action, name, exc)
        return await _users_page(
            request, status_code=400, error=(f"users.error.{exc.reason.value}", exc.values)
        )
    await audit(request, f"user.{action}", name, detail)
    return RedirectResponse("/users", status_code=303)


routes: list[BaseRoute] = [
    Route("/audit", audit_page, methods=["GET"]),
    Route("/users", users_page, methods=["GET"]),
    Route("/users", users_change, methods=["POST"]),
]
