"""``gatepost console patrols``: routes in from a CSV file, and a day's rounds printed — without the web console.

The same checks and the same round records as the pages (``/patrols``): an installer can
load a site's routes before the console is first opened, and an office can read a day's
rounds over SSH.  Changes made here are not in the web console's audit log (there is no
web user); the routes' ``updated_by`` says ``--by``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from console.store import EventStore


def add_patrols_parser(commands: argparse._SubParsersAction) -> None:
    patrols = commands.add_parser("patrols", help="patrol routes and rounds (docs/patrols.md)")
    sub = patrols.add_subparsers(dest="patrols_command", required=True)

    load = sub.add_parser("import", help="add or replace routes from a CSV file (one row a station)")
    load.add_argument("--config", "-c", type=Path, required=True)
    load.add_argument("--by", default="cli", help="who changed them, for the record")
    load.add_argument("file", type=Path)
    load.set_defaults(func=_import)

    rounds = sub.add_parser("rounds", help="print a day's rounds, station by station")
    rounds.add_argument("--config", "-c", type=Path, required=True)
    rounds.add_argument("--date", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today)")
    rounds.set_defaults(func=_rounds)


def _open(config_path: Path) -> tuple[EventStore, ZoneInfo] | None:
    from console.config import load_config
    from console.flow import FlowSettings
    from console.store import EventStore
    from protocol.configfile import load_or_report

    config = load_or_report(load_config, config_path)
    if config is None:
        return None
    return EventStore(config.store.target), FlowSettings.from_config(config.flow).zone


def _import(args: argparse.Namespace) -> int:
    from console.patrols.importer import RoutesFileError, read_routes
    from console.patrols.store import PatrolStore, RouteExists

    try:
        routes = read_routes(args.file.read_bytes())
    except OSError as exc:
        print(f"gatepost console patrols: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    except RoutesFileError as exc:
        for error in exc.errors:
            print(f"{args.file}: {error}", file=sys.stderr)
        if not exc.errors:
            print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    opened = _open(args.config)
    if opened is None:
        return 2
    store, _zone = opened
    with store:
        try:
            count = PatrolStore(store.db).put_routes(routes, args.by)
        except RouteExists as exc:
            print(f"gatepost console patrols: {exc}", file=sys.stderr)
            return 1
    print(f"{count} routes imported from {args.file}")
    return 0


def _rounds(args: argparse.Namespace) -> int:
    from console.patrols.store import PatrolStore
    from console.patrols.watcher import rounds_between

    opened = _open(args.config)
    if opened is None:
        return 2
    store, zone = opened
    now = datetime.now(UTC)
    day = args.date or datetime.now(zone).date()
    start = datetime.combine(day, datetime.min.time(), zone)
    with store:
        patrols = PatrolStore(store.db)
        records = [
            record
            for route in patrols.routes()
            for record in rounds_between(patrols, route, zone, start, 1, now)
            if record.start <= now
        ]
    if not records:
        print(f"no rounds begun on {day.isoformat()}")
    for record in sorted(records, key=lambda r: (r.start, r.route.site, r.route.name)):
        print(f"{record.id}  {record.route.site}/{record.route.name}  {record.local_start:%Y-%m-%d %H:%M}")
        for s in record.stations:
            checked = f"{s.check.at.astimezone(zone):%H:%M:%S} {s.check.person}" if s.check else "-"
            late = f" +{s.late_min} min" if s.late_min else ""
            print(
                f"  {s.index + 1:>2} {s.station.label:<28} {s.expected.astimezone(zone):%H:%M}"
                f" {checked:<22} {s.state.value}{late}"
            )
        for c in record.extras:
            print(f"     extra {c.gate}/{c.reader} {c.at.astimezone(zone):%H:%M:%S} {c.person}")
    return 0
