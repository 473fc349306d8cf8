"""Rendering a page: one Jinja environment, and the values every template may use.

``render(request, "events/list.html", events=...)`` adds ``t`` (translate into the
request's language), ``lang``, ``user``, ``csrf_field()`` (the hidden input every POST
form carries), ``csrf_token``, ``request`` and the navigation's ``open_alarms``.
Autoescaping is on for every template: pass codes, holder names and notes come from
outside and must never become markup.  Rendering runs on the event loop, so it reads
nothing from the database: what a page shows was fetched in a worker thread before
(the alarm count by the middleware, with the session).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from console.web.i18n import LANGUAGE_NAMES, LANGUAGES, translator
from console.web.labels import label_helpers

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


DEFAULT_ZONE = "Asia/Shanghai"


def local_time(value: object, zone: tzinfo) -> str:
    """A stored UTC time (``2026-11-29T10:31:07.123456Z``) as the site's wall clock: ``2026-11-29 18:31:07``.

    Guards read times against the clock on the gatehouse wall, not UTC; the zone's name
    is on every page (``tz_name``), and exports keep UTC.  Text that is not a time is
    shown as it came rather than failing the page.
    """
    text = str(value or "")
    if not text:
        return "–"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text[:32]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


@pass_context
def _short_time(context: Context, value: object) -> str:
    zone = context.get("site_zone")
    return local_time(value, zone if isinstance(zone, tzinfo) else UTC)


environment.filters["short_time"] = _short_time


def zone_name(request: Request) -> str:
    """The site's time zone (``[flow] timezone``; Asia/Shanghai by default)."""
    app_ctx = getattr(request.app.state, "ctx", None)
    flow = getattr(getattr(app_ctx, "config", None), "flow", None)
    return str(getattr(flow, "timezone", None) or DEFAULT_ZONE)


def request_lang(request: Request) -> str:
    lang = request.scope.get("state", {}).get("lang")
    return lang if lang in LANGUAGES else "en"


def template_context(request: Request, **ctx: Any) -> dict[str, Any]:
    state = request.scope.get("state", {})
    token = state.get("csrf", "")
    if state.get("open_alarms") is not None and "open_alarms" not in ctx:
        ctx["open_alarms"] = state["open_alarms"]  # the nav's badge, counted beside the session lookup
    lang = request_lang(request)
    tz_name = zone_name(request)
    t = translator(lang)

    def age(since: object) -> str:
        parts = age_parts(since, datetime.now(UTC)) if since else None
        return t(parts[0], n=parts[1]) if parts else ""

    return {
        "age": age,
        "tz_name": tz_name,
        "site_zone": _zone(tz_name),
        "request": request,
        "t": t,
        "lang": lang,
        "languages": LANGUAGE_NAMES,
        "user": state.get("user"),
        "csrf_token": token,
        "csrf_field": lambda: Markup(f'<input type="hidden" name="csrf_token" value="{escape(token)}">'),
        "path": request.url.path,
        **label_helpers(t),
        **ctx,
    }


def age_parts(since: object, now: datetime) -> tuple[str, int] | None:
    """How long ago ``since`` (stored ISO UTC text) was, as an i18n key and a count: ``("age.h", 3)``.

    Rounded down to the largest unit that is at least 1, because the operator asks "is
    this list hours or days old", not for the minute.
    """
    try:
        moment = datetime.fromisoformat(str(since).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds >= 86_400:
        return "age.d", seconds // 86_400
    if seconds >= 3600:
        return "age.h", seconds // 3600
    return "age.min", seconds // 60


@functools.cache
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):  # the config validates it; never fail a page over it
        return UTC


def render(request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    page = environment.get_template(template).render(template_context(request, **ctx))
    return HTMLResponse(page, status_code=status_code)
