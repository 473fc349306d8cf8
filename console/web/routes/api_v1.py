"""``/api/v1``: the district's read-only pull API, authenticated by a bearer token, not a login.

No session, cookie or CSRF token is involved (the middleware skips ``/api/`` GETs): a
browser's login grants nothing here, and a token grants nothing elsewhere.  Every
answer is JSON, refusals included, with a reason a script can log.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from console.district.config import PrivacyConfig
from console.district.openapi import document
from console.district.pull import DEFAULT_LIMIT, MAX_LIMIT, events_page, flow_page, parse_flow_key
from console.district.records import Privacy
from console.district.tokens import DistrictToken, TokenStore

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gatepost-district"'}


def _error(status: int, why: str) -> Response:
    return JSONResponse({"error": why}, status_code=status, headers=_CHALLENGE if status == 401 else None)


def tokens(request: Request) -> TokenStore:
    store = getattr(request.app.state, "district_tokens", None)
    if store is None:
        store = request.app.state.district_tokens = TokenStore(request.app.state.ctx.db)
    return store


def _setup(request: Request) -> tuple[Privacy, str]:
    found = getattr(request.app.state, "district_privacy", None)
    if found is None:
        config = request.app.state.ctx.config
        section = getattr(config, "district", None)
        privacy = Privacy(section.privacy if section is not None else PrivacyConfig())
        found = request.app.state.district_privacy = (
            privacy,
            section.name if section is not None else config.name,
        )
    return found


async def _token(request: Request) -> DistrictToken | Response:
    header = request.headers.get("authorization", "")
    scheme, _, plain = header.partition(" ")
    if scheme.lower() != "bearer" or not plain.strip():
        return _error(401, "a district token is required: Authorization: Bearer <token>")
    store = await to_thread.run_sync(tokens, request)
    token = await to_thread.run_sync(store.authenticate, plain.strip())
    if token is None:
        return _error(401, "unknown or revoked token")
    return token


def _int(request: Request, name: str, default: int, low: int, high: int) -> int | Response:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or len(text) > 19:
        return _error(400, f"{name} must be a whole number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        return _error(400, f"{name} must be a whole number from {low} to {high}")
    return value


def _sites(request: Request, token: DistrictToken) -> frozenset[str] | Response | None:
    site = request.query_params.get("site")
    if site is None or site == "":
        return token.sites
    if not token.sees(site):
        return _error(403, "this token does not cover that site")
    return frozenset({site})


def _time(text: str | None) -> datetime | None:
    if not text or len(text) > 40:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def events(request: Request) -> Response:
    token = await _token(request)
    if isinstance(token, Response):
        return token
    after = _int(request, "after", 0, 0, 2**63 - 1)
    limit = _int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    sites = _sites(request, token)
    for value in (after, limit, sites):
        if isinstance(value, Response):
            return value
    privacy, console = _setup(request)
    store = request.app.state.ctx.store
    page: dict[str, Any] = await to_thread.run_sync(
        lambda: events_page(store, after=after, limit=limit, sites=sites, privacy=privacy, console=console)
    )
    return JSONResponse(page)


async def flow(request: Request) -> Response:
    token = await _token(request)
    if isinstance(token, Response):
        return token
    start = _time(request.query_params.get("start"))
    if start is None:
        return _error(400, "start must be an ISO 8601 time, like 2026-11-29T00:00:00Z")
    end_text = request.query_params.get("end")
    end = _time(end_text) if end_text else datetime.now(UTC)
    if end is None:
        return _error(400, "end must be an ISO 8601 time, like 2026-11-30T00:00:00Z")
    after_text = request.query_params.get("after")
    after = parse_flow_key(after_text) if after_text else None
    if after_text and after is None:
        return _error(400, "after must be the next_after of a previous page")
    limit = _int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    sites = _sites(request, token)
    for value in (limit, sites):
        if isinstance(value, Response):
            return value
    _privacy, console = _setup(request)
    store = request.app.state.ctx.store
    page: dict[str, Any] = await to_thread.run_sync(
        lambda: flow_page(store, start=start, end=end, after=after, limit=limit, sites=sites, console=console)
    )
    return JSONResponse(page)


async def openapi(_request: Request) -> Response:
    return JSONResponse(document())


routes: list[BaseRoute] = [
    Route("/api/v1/events", events, methods=["GET"]),
    Route("/api/v1/flow", flow, methods=["GET"]),
    Route("/api/v1/openapi.json", openapi, methods=["GET"]),
]
