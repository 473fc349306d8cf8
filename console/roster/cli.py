"""``gatepost console roster``: people in from a CSV file, a week's draft from the advice, and its check.

The web pages for the roster are not built yet (issue 18); these commands are how a site
office uses the solver today, and what the pages will call.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from console.roster.model import Shortfall

if TYPE_CHECKING:
    from console.flow import FlowSettings
    from console.store import EventStore


def add_roster_parser(commands: argparse._SubParsersAction) -> None:
    roster = commands.add_parser("roster", help="duty rosters from the staffing advice (docs/roster.md)")
    sub = roster.add_subparsers(dest="roster_command", required=True)

    people = sub.add_parser("import-people", help="add or update people from a CSV file")
    people.add_argument("--config", "-c", type=Path, required=True)
    people.add_argument("file", type=Path)
    people.set_defaults(func=_import_people)

    draft = sub.add_parser("draft", help="solve a week's roster from the advice and store it as a draft")
    draft.add_argument("--config", "-c", type=Path, required=True)
    draft.add_argument(
        "--week", type=date.fromisoformat, required=True, help="any day of the week (YYYY-MM-DD)"
    )
    draft.add_argument("--seconds", type=float, default=10.0, help="the solver's time limit")
    draft.add_argument("--by", default="cli", help="who made it, for the record")
    draft.set_defaults(func=_draft)

    show = sub.add_parser("show", help="print a week's roster, post by post and day by day")
    show.add_argument("--config", "-c", type=Path, required=True)
    show.add_argument("--week", type=date.fromisoformat, required=True)
    show.add_argument("--post", default=None)
    show.set_defaults(func=_show)


def _open(config_path: Path) -> tuple[EventStore, FlowSettings] | None:
    from console.config import load_config
    from console.flow import FlowSettings
    from console.store import EventStore
    from protocol.configfile import load_or_report

    config = load_or_report(load_config, config_path)
    if config is None:
        return None
    return EventStore(config.store.target), FlowSettings.from_config(config.flow)


def _import_people(args: argparse.Namespace) -> int:
    from console.roster.people import PeopleFileError, read_people
    from console.roster.store import RosterStore

    try:
        people = read_people(args.file.read_bytes())
    except OSError as exc:
        print(f"gatepost console roster: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    except PeopleFileError as exc:
        for error in exc.errors or ():
            print(f"{args.file}: {error}", file=sys.stderr)
        if not exc.errors:
            print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    opened = _open(args.config)
    if opened is None:
        return 2
    store, _ = opened
    with store:
        written = RosterStore(store.db).put_people(people)
    print(f"{written} people imported from {args.file}")
    return 0


def _draft(args: argparse.Namespace) -> int:
    from console.roster import greedy
    from console.roster.check import violations
    from console.roster.plan import problem_for_week, week_start
    from console.roster.solver import solve
    from console.roster.store import RosterStore

    opened = _open(args.config)
    if opened is None:
        return 2
    store, settings = opened
    monday = week_start(args.week)
    with store:
        rosters = RosterStore(store.db)
        people = rosters.people()
        if not people:
            print("gatepost console roster: no people yet (import-people first)", file=sys.stderr)
            return 1
        problem = problem_for_week(store.db, settings, people, monday)
        result = solve(problem, time_limit_s=args.seconds, hint=greedy.roster(problem))
        broken = violations(problem, result.assignment)
        if broken:  # the model and the checker disagree: never store such a roster
            print(f"gatepost console roster: solver roster breaks {broken[0].rule}", file=sys.stderr)
            return 1
        summary = {
            "status": result.status,
            "shortfall_hours": result.shortfall_hours,
            "untrained_hours": sum(1 for s in result.shortfalls if s.trained_missing),
            "gap": result.gap,
            "seconds": round(result.seconds, 2),
        }
        count = rosters.replace_week(
            monday, result.assignment, status="draft", made_by=args.by, summary=summary
        )
    print(f"week of {monday}: {count} shifts, {_describe(result.shortfalls)} ({result.status})")
    return 0


def _describe(shortfalls: tuple[Shortfall, ...]) -> str:
    if not shortfalls:
        return "the advice met at every post and hour"
    by_post: dict[str, int] = defaultdict(int)
    for s in shortfalls:
        by_post[s.post] += s.missing
    worst = ", ".join(f"{post} {hours} h" for post, hours in sorted(by_post.items(), key=lambda x: -x[1])[:3])
    return f"{sum(by_post.values())} person-hours short of the advice ({worst})"


def _show(args: argparse.Namespace) -> int:
    from console.roster.plan import week_start
    from console.roster.store import RosterStore

    opened = _open(args.config)
    if opened is None:
        return 2
    store, _ = opened
    monday = week_start(args.week)
    with store:
        rosters = RosterStore(store.db)
        names = {p.id: p.name for p in rosters.people(active_only=False)}
        shifts = rosters.week_shifts(monday, args.post)
        summary = rosters.week_summary(monday)
    if summary is None:
        print(f"no roster for the week of {monday}", file=sys.stderr)
        return 1
    print(f"week of {monday} ({summary[0]})")
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    for shift in shifts:
        day, hour = divmod(shift.start_hour, 24)
        print(
            f"{shift.post:<24} {days[day]} {hour:02d}:00–{(hour + shift.hours) % 24:02d}:00"
            f"  {names.get(shift.person, shift.person)}"
        )
    return 0
