"""``/flow``: entries and exits per checkpoint, charts with peaks marked, and the staffing advice.

The page reads the store for one month (hourly) and for the staffing history (half
hours) per request; at a few gates that is milliseconds, and with the store's hourly
rollup the month is a small index range even at a thousand gates.  The work runs in a
thread so the server keeps answering other pages meanwhile.  ``/flow/export.csv`` and
``/flow/export.json`` give the same figures to spreadsheets and scripts.

A user limited to some sites picks among their own checkpoints: "all posts" sums every
site's gates (``console/flow.py`` has no per-site sum), so such a user is shown their
first checkpoint instead, and a post of another site — or a bare gate name, which means
that gate at every site — is refused (403).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from console.flow import (
    ALL_POSTS,
    MAX_POSTS_IN_DETAIL,
    DayKind,
    FlowReport,
    FlowSettings,
    build_report,
    post_key,
    roster,
    split_post,
)
from console.web import scope
from console.web.auth import login_required, site_limit
from console.web.charts import ChartText, day_chart, month_chart
from console.web.forms import audit
from console.web.render import render
from console.web.spreadsheet import rows_text
from protocol import validate_name

log = logging.getLogger("gatepost.console.web.flow")

MAX_POST_CHARS = 130


class FlowQueryError(ValueError):
    """A query parameter of the flow page that cannot be used; ``key`` is its message's translation key."""

    def __init__(self, key: str, value: str, status: int = 400) -> None:
        super().__init__(f"{key}: {value!r}")
        self.key = key
        self.value = value
        self.status = status


def settings_of(request: Request) -> FlowSettings:
    return FlowSettings.from_config(getattr(request.app.state.ctx.config, "flow", None))


def parse_query(request: Request, settings: FlowSettings) -> tuple[date, str | None, DayKind | None]:
    """Date, post and day kind from the query string; bad values are :class:`FlowQueryError`."""
    params = request.query_params
    text = params.get("date", "").strip()
    if text:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise FlowQueryError("flow.error.bad_date", text[:40]) from None
        if not 2000 <= day.year <= 2200:
            raise FlowQueryError("flow.error.bad_date", text[:40])
    else:
        day = datetime.now(settings.zone).date()
        if settings.open_on == "last_full_day":
            day -= timedelta(days=1)
    post = params.get("post", "").strip() or None
    if post is not None:
        try:
            if len(post) > MAX_POST_CHARS:
                raise ValueError
            for part in post.split("/", 1):
                validate_name(part)
        except (ValueError, TypeError):
            raise FlowQueryError("flow.error.bad_post", post[:40]) from None
    kind_text = params.get("kind", "").strip()
    kind = None
    if kind_text:
        try:
            kind = DayKind(kind_text)
        except ValueError:
            raise FlowQueryError("flow.error.bad_kind", kind_text[:40]) from None
    return day, post, kind


async def _report(request: Request) -> FlowReport:
    ctx = request.app.state.ctx
    settings = settings_of(request)
    day, post, kind = parse_query(request, settings)
    sites = site_limit(request)
    if sites is not None:
        post = await _own_post(request, post, sites)
    report = await run_in_threadpool(
        build_report,
        ctx.store,
        ctx.db,
        settings,
        day=day,
        post=post,
        kind=kind,
        cache=request.app.state.plan_cache,
    )
    if sites is not None:
        report = replace(report, posts=tuple(p for p in report.posts if p.partition("/")[0] in sites))
    return report


async def _own_post(request: Request, post: str | None, sites: frozenset[str]) -> str:
    """The post a user limited to ``sites`` may see: the one asked for if theirs, else their first."""
    if post is None:
        posts = await run_in_threadpool(scope.gates, request.app.state.ctx.store, sites)
        if not posts:
            raise FlowQueryError("flow.error.no_posts", "", status=404)
        return post_key(*posts[0])
    site, _gate = split_post(post)
    if site is None or site not in sites:
        raise FlowQueryError("flow.error.other_site", post[:40], status=403)
    return post


@login_required
async def flow_page(request: Request) -> Response:
    settings = settings_of(request)
    try:
        report = await _report(request)
    except FlowQueryError as exc:
        log.info("flow page refused %s", exc)
        return render(
            request,
            "flow/page.html",
            status_code=exc.status,
            error_key=exc.key,
            error_value=exc.value,
            report=None,
        )
    t = render_translator(request)
    series = (t("flow.chart.entries"), t("flow.chart.exits"), t("flow.chart.denied"))
    day_charts = [
        (
            post,
            day_chart(
                slots,
                ChartText(
                    t(
                        "flow.chart.day_title",
                        post=t("flow.all_posts") if post == ALL_POSTS else post,
                        day=report.day.isoformat(),
                    ),
                    t("flow.chart.hour_axis"),
                    t("flow.chart.persons_axis"),
                    series,
                    t("flow.chart.peak"),
                ),
                chart_id=f"day-{i}",
            ),
        )
        for i, (post, slots) in enumerate(report.hours.items())
    ]
    month = month_chart(
        report.month,
        ChartText(
            t(
                "flow.chart.month_title",
                post=report.post or t("flow.all_posts"),
                month=report.day.strftime("%Y-%m"),
            ),
            t("flow.chart.day_axis"),
            t("flow.chart.persons_day_axis"),
            series,
            t("flow.chart.peak"),
        ),
    )
    query = request.url.query
    return render(
        request,
        "flow/page.html",
        report=report,
        settings=settings,
        day_charts=day_charts,
        month_chart=month,
        export_query=("?" + query) if query else "",
        rosters={plan.post: roster(plan.post, plan.slots, settings) for plan in report.plans},
        day_note=_day_note(report.day, settings),
        max_posts_in_detail=MAX_POSTS_IN_DETAIL,
    )


def _day_note(day: date, settings: FlowSettings) -> dict[str, Any] | None:
    """How to read the day shown: today is still filling; the default may be the last full day.

    A day under way has a tall bar at the current hour and nothing after it, which reads
    as a collapse of traffic unless the page says so.
    """
    now = datetime.now(settings.zone)
    today = now.date()
    if day == today:
        return {"key": "flow.note.today", "hour": now.strftime("%H:00"), "other": today - timedelta(days=1)}
    if day == today - timedelta(days=1):
        return {"key": "flow.note.last_full_day", "hour": "", "other": today}
    return None


def render_translator(request: Request) -> Any:
    from console.web.i18n import translator
    from console.web.render import request_lang

    return translator(request_lang(request))


async def _export_report(request: Request) -> FlowReport | Response:
    try:
        return await _report(request)
    except FlowQueryError as exc:
        return JSONResponse({"error": exc.key.rsplit(".", 1)[-1], "value": exc.value}, status_code=exc.status)


@login_required
async def export_json(request: Request) -> Response:
    report = await _export_report(request)
    if isinstance(report, Response):
        return report
    await audit(request, "flow.export", "flow", {"format": "json", "day": report.day, "post": report.post})
    return JSONResponse(
        report.to_dict(),
        headers={"Content-Disposition": f'attachment; filename="flow-{report.day}.json"'},
    )


@login_required
async def export_csv(request: Request) -> Response:
    report = await _export_report(request)
    if isinstance(report, Response):
        return report
    rows: list[list[object]] = []
    for post, slots in report.hours.items():
        for s in slots:
            rows.append(
                ["hour", post, report.day, s.label, s.entries, s.exits, s.denied, int(s.peak), "", "", ""]
            )
    for d in report.month:
        rows.append(
            ["day", report.post or "", d.day, "", d.entries, d.exits, d.denied, int(d.peak), "", "", ""]
        )
    for plan in report.plans:
        for slot in plan.slots:
            rows.append(
                [
                    "staffing",
                    plan.post,
                    report.kind.value,
                    slot.label,
                    "",
                    "",
                    "",
                    "",
                    round(slot.rate, 1),
                    slot.guards,
                    slot.delta,
                ]
            )
    header = (
        "section",
        "post",
        "day",
        "start",
        "entries",
        "exits",
        "denied",
        "peak",
        "rate",
        "guards",
        "change",
    )
    await audit(request, "flow.export", "flow", {"format": "csv", "day": report.day, "post": report.post})
    return Response(
        "".join(rows_text(header, rows)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="flow-{report.day}.csv"'},
    )


routes: list[BaseRoute] = [
    Route("/flow", flow_page, methods=["GET"], name="flow"),
    Route("/flow/export.csv", export_csv, methods=["GET"], name="flow_export_csv"),
    Route("/flow/export.json", export_json, methods=["GET"], name="flow_export_json"),
]
