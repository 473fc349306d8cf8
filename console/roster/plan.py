"""From the console's staffing advice to a week's roster problem.

The advice (:func:`console.flow.recommend`) is per post, per slot of a weekday or a weekend
day, taken from the last weeks' flow.  A roster needs people per post per hour of one
particular week, so each hour takes the most people any of its slots asks for (a roster
cannot send someone for half an hour), weekdays from the weekday advice and Saturday and
Sunday from the weekend one.  A post the flow has never seen still gets the site's
baseline, so a new gate is never left empty by the roster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta

from console.flow import DayKind, FlowSettings, PostPlan, events_buckets, history_bounds, recommend
from console.roster.model import HOURS_PER_DAY, Person, Problem, Rules


def week_start(day: date) -> date:
    """The Monday of the week ``day`` falls in: rosters are planned Monday to Sunday."""
    return day - timedelta(days=day.weekday())


def hourly_guards(plan: PostPlan) -> list[int]:
    """People per hour of the day from a plan's slots: the most any slot of the hour asks for."""
    per_hour = [0] * HOURS_PER_DAY
    for slot in plan.slots:
        hour = slot.index * slot.minutes // 60
        per_hour[hour] = max(per_hour[hour], slot.guards)
    return per_hour


def week_demand(
    posts: Sequence[str], plans: Iterable[PostPlan], settings: FlowSettings
) -> dict[str, list[int]]:
    """People wanted per post and week hour from weekday and weekend plans; the baseline elsewhere."""
    by_kind: dict[tuple[str, DayKind], list[int]] = {(p.post, p.kind): hourly_guards(p) for p in plans}
    baseline = [max(settings.baseline_guards, settings.min_guards)] * HOURS_PER_DAY
    demand: dict[str, list[int]] = {}
    for post in posts:
        hours: list[int] = []
        for day in range(7):
            kind = DayKind.WEEKEND if day >= 5 else DayKind.WEEKDAY
            hours.extend(by_kind.get((post, kind), baseline))
        demand[post] = hours
    return demand


def problem_for_week(
    db: object,
    settings: FlowSettings,
    people: Sequence[Person],
    week: date,
    *,
    posts: Sequence[str] | None = None,
    rules: Rules | None = None,
) -> Problem:
    """The roster problem of the week starting ``week`` (a Monday), from the flow before it."""
    monday = week_start(week)
    zone = settings.zone
    start, end = history_bounds(monday, settings, zone)
    history = events_buckets(db, start=start, end=end, minutes=settings.bucket_minutes)  # type: ignore[arg-type]
    plans = [plan for kind in DayKind for plan in recommend(history, settings, until=monday, kind=kind)]
    known = sorted(set(posts or ()) | {post for person in people for post in person.posts})
    return Problem(
        posts=tuple(known),
        people=tuple(people),
        demand=week_demand(known, plans, settings),
        rules=rules or Rules(),
    )
