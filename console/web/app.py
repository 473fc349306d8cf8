"""The web console's ASGI application: routes, static files, the security middleware, lifespan.

``create_app(ctx)`` is all a server (``gatepost console run``, a test, uvicorn) needs.  The
lifespan starts what lives as long as the server — the watcher that turns stored events
into live updates and alarms, the command client's and the health listener's broker
connections — and stops
them, ending open event streams first so that shutdown does not wait on browsers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from console.flow import PlanCache
from console.web.context import WebContext
from console.web.hub import GateBoard, Hub, Watcher
from console.web.middleware import SecurityMiddleware
from console.web.render import render

if TYPE_CHECKING:
    from console.config import ConsoleConfig
    from console.store import EventStore
    from protocol.mqtt import BrokerEndpoint

log = logging.getLogger("gatepost.console.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"


def routes() -> list[BaseRoute]:
    """Every page, stream and file the console serves; the bad-input tests walk this table."""
    from console.web.routes import (
        admin,
        alarms,
        api_v1,
        attendance,
        cards,
        district_tokens,
        events,
        flow,
        gates,
        join,
        passes,
        roster,
        session,
        vehicles,
    )

    return [
        *session.routes,
        *gates.routes,
        *events.routes,
        *alarms.routes,
        *admin.routes,
        *passes.routes,
        *cards.routes,
        *vehicles.routes,
        *flow.routes,
        *attendance.routes,
        *roster.routes,
        *join.routes,
        *api_v1.routes,
        *district_tokens.routes,
        Route("/healthz", _health, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]


async def _health(_request: Request) -> Response:
    return PlainTextResponse("ok")


async def _not_found(request: Request, _exc: Exception) -> Response:
    return render(request, "error.html", status_code=404, message_key="error.not_found")


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("error serving %s %s: %s", request.method, request.url.path, exc, exc_info=exc)
    return render(request, "error.html", status_code=500, message_key="error.internal")


def create_app(ctx: WebContext, *, watch: bool = True) -> Starlette:
    """The application around ``ctx``; ``watch=False`` leaves the watcher to the caller (tests)."""
    board = GateBoard()
    watcher = Watcher(ctx.store, ctx.db, ctx.alarms, ctx.hub, board)
    plan_cache = PlanCache()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ctx.hub.bind(asyncio.get_running_loop())
        if ctx.commands is not None:
            ctx.commands.start()
        if ctx.health is not None:
            ctx.health.start()
        if watch:
            await asyncio.to_thread(watcher.start)
            plan_cache.submit(lambda: _work_out_todays_staffing(ctx, plan_cache))
        try:
            yield
        finally:
            await asyncio.to_thread(_write_last_refusals, app, ctx)
            plan_cache.close()
            ctx.hub.close()
            if watch:
                await asyncio.to_thread(watcher.stop)
            if ctx.commands is not None:
                ctx.commands.stop()
            if ctx.health is not None:
                ctx.health.stop()

    app = Starlette(
        routes=routes(),
        middleware=[Middleware(SecurityMiddleware, context=lambda: ctx)],
        exception_handlers={404: _not_found, 500: _server_error},
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.board = board
    app.state.watcher = watcher
    app.state.plan_cache = plan_cache
    return app


def _write_last_refusals(app: Starlette, ctx: WebContext) -> None:
    """The tally of refused logins not yet in the audit log (console/web/routes/session.py)."""
    from console.web.routes.session import write_report

    tally = getattr(app.state, "refused_logins", None)
    report = tally.take(force=True) if tally is not None else None
    if report is not None:
        try:
            write_report(ctx, report)
        except Exception:  # stopping must not fail over a log entry
            log.warning("could not write the last refused-login tally", exc_info=True)


def _work_out_todays_staffing(ctx: WebContext, cache: PlanCache) -> None:
    """Fill the staffing cache for today's all-posts view, so the first operator does not wait for it."""
    from datetime import datetime

    from console.flow import FlowSettings, build_report

    settings = FlowSettings.from_config(getattr(ctx.config, "flow", None))
    try:
        build_report(ctx.store, ctx.db, settings, day=datetime.now(settings.zone).date(), cache=cache)
    except Exception:  # the page works it out when asked; a failure here must not stop the console
        log.warning("could not work out today's staffing at start", exc_info=True)


def store_url(config: ConsoleConfig) -> str:
    """The console database: ``[store] url`` when set, else the SQLite file at ``[store] path``."""
    url = getattr(config.store, "url", None)
    return str(url) if url else str(config.store.path)


def failover_endpoints(endpoint: BrokerEndpoint, failover: list[str]) -> list[BrokerEndpoint]:
    """``endpoint``'s identity at each ``host:port`` of ``[mqtt] failover``."""
    from dataclasses import replace

    from protocol.mqtt import parse_host_port

    return [replace(endpoint, host=host, port=port) for host, port in map(parse_host_port, failover)]


def build_context(
    config: ConsoleConfig, store: EventStore, *, endpoint: BrokerEndpoint | None = None
) -> WebContext:
    """Open everything the web console needs beside the event store (same database)."""
    from datetime import timedelta

    from console.alarms import AlarmBook, AlarmRules
    from console.audit import AuditLog
    from console.commands import CommandClient, OfficeCommandSigner
    from console.db import Database
    from console.health import HealthListener
    from console.users import UserStore

    db = Database(store_url(config))
    web = config.web
    # The site's other brokers (docs/failover.md): commands and health go through all of them.
    failover = [] if endpoint is None else failover_endpoints(endpoint, config.mqtt.failover)
    cards = None
    if config.cards is not None:
        from console.credentials import CardRegistry

        cards = CardRegistry(config.cards.registry)
    return WebContext(
        config=config,
        db=db,
        store=store,
        audit=AuditLog(db),
        alarms=AlarmBook(db, AlarmRules(web.alarm_denials, web.alarm_window_s)),
        users=UserStore(
            db,
            session_lifetime=timedelta(hours=web.session_hours),
            idle_timeout=timedelta(minutes=web.idle_minutes),
        ),
        commands=CommandClient(
            endpoint,
            name=config.name,
            signer=OfficeCommandSigner(web.office) if web.office is not None else None,
            failover=failover,
        )
        if endpoint is not None
        else None,
        hub=Hub(),
        office_dir=web.office,
        cards=cards,
        health=HealthListener(endpoint, site=config.site, failover=failover)
        if endpoint is not None
        else None,
    )
