"""Patrol routes in the console database (component ``patrols``), and the check-ins read from the events.

A route is one row, its stations a JSON list in it: a route is read and written whole,
and never half-written.  Rounds are **not stored**: they are worked out from the route
and the ``patrol.checkin`` events in the event store (:mod:`console.patrols.rounds`).
The ingest already stores each event exactly once, so a round cannot count a check-in
twice or lose one, and a late delivery from a gate's outbox simply appears in the round
it belongs to the next time it is read.  Alarms are exactly once by their source.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from console.db import Database, IntegrityError, Migration, format_time, now_text
from console.patrols.model import Route, Station, parse_clock
from console.patrols.rounds import CheckIn
from console.store import NOT_FACT
from protocol.duty import PATROL_CHECKIN

COMPONENT = "patrols"
_COLUMNS = "id, site, name, stations, first_start, last_start, every_min, active, updated_at, updated_by"


def _migrations() -> list[Migration]:
    return [
        Migration(
            1,
            "patrol routes: stations, schedule, active",
            (
                """CREATE TABLE patrol_routes (
                    id          {pk},
                    site        TEXT NOT NULL,
                    name        TEXT NOT NULL,
                    stations    TEXT NOT NULL,
                    first_start TEXT NOT NULL,
                    last_start  TEXT NOT NULL,
                    every_min   INTEGER NOT NULL,
                    active      INTEGER NOT NULL DEFAULT 1,
                    updated_at  TEXT NOT NULL,
                    updated_by  TEXT NOT NULL,
                    UNIQUE (site, name)
                )""",
            ),
        ),
    ]


class RouteExists(ValueError):
    """Another route of the site has that name."""


def _stations_json(route: Route) -> str:
    return json.dumps(
        [
            {"gate": s.gate, "reader": s.reader, "offset": s.offset_min, "tolerance": s.tolerance_min}
            for s in route.stations
        ]
    )


def _route(row: tuple[Any, ...]) -> Route:
    rid, site, name, stations, first, last, every, active, updated_at, updated_by = row
    return Route(
        site=site,
        name=name,
        stations=tuple(
            Station(s["gate"], int(s["offset"]), int(s["tolerance"]), s.get("reader"))
            for s in json.loads(stations)
        ),
        first=parse_clock(first),
        last=parse_clock(last),
        every_min=int(every),
        active=bool(active),
        id=int(rid),
        updated_at=updated_at,
        updated_by=updated_by,
    )


class PatrolStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate(COMPONENT, _migrations())

    def routes(self, *, active_only: bool = False, sites: frozenset[str] | None = None) -> list[Route]:
        sql = f"SELECT {_COLUMNS} FROM patrol_routes"
        if active_only:
            sql += " WHERE active = 1"
        routes = [_route(row) for row in self.db.query(sql + " ORDER BY site, name")]
        return [r for r in routes if sites is None or r.site in sites]

    def route(self, route_id: int) -> Route | None:
        rows = self.db.query(f"SELECT {_COLUMNS} FROM patrol_routes WHERE id = ?", (route_id,))
        return _route(rows[0]) if rows else None

    def save(self, route: Route, user: str) -> Route:
        """Add the route (``id`` 0) or replace the stored one of that id; :class:`RouteExists` for a taken name."""
        values = (
            route.site,
            route.name,
            _stations_json(route),
            f"{route.first:%H:%M}",
            f"{route.last:%H:%M}",
            route.every_min,
            int(route.active),
            now_text(),
            user,
        )
        try:
            if route.id:
                self.db.execute(
                    "UPDATE patrol_routes SET site = ?, name = ?, stations = ?, first_start = ?, last_start = ?,"
                    " every_min = ?, active = ?, updated_at = ?, updated_by = ? WHERE id = ?",
                    (*values, route.id),
                )
                rid = route.id
            else:
                rows = self.db.query(
                    "INSERT INTO patrol_routes (site, name, stations, first_start, last_start, every_min, active,"
                    " updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    values,
                )
                rid = int(rows[0][0])
        except IntegrityError:
            raise RouteExists(f"{route.site} already has a route named {route.name!r}") from None
        stored = self.route(rid)
        assert stored is not None
        return stored

    def put_routes(self, routes: list[Route], user: str) -> int:
        """Add or replace routes by (site, name), all in one transaction (the CSV import)."""
        with self.db.transaction():
            for route in routes:
                rows = self.db.query(
                    "SELECT id, active FROM patrol_routes WHERE site = ? AND name = ?",
                    (route.site, route.name),
                )
                self.save(replace(route, id=int(rows[0][0]) if rows else 0), user)
        return len(routes)

    def checkins(self, site: str, start: datetime, end: datetime) -> list[CheckIn]:
        """The site's ``patrol.checkin`` events whose matching time lies in [``start``, ``end``).

        The matching time is the gate's when it trusted its clock, else the console's
        receipt; events quarantined or back-dated (``NOT_FACT``) are left out.
        """
        lo, hi = format_time(start), format_time(end)
        rows = self.db.query(
            "SELECT id, gate, time, clock_trusted, data, received_at, flags FROM events"
            " WHERE type = ? AND site = ? AND ((time >= ? AND time < ?) OR (received_at >= ? AND received_at < ?))",
            (PATROL_CHECKIN, site, lo, hi, lo, hi),
        )
        out: list[CheckIn] = []
        for event_id, gate, time, trusted, data, received_at, flags in rows:
            if flags and int(flags) & int(NOT_FACT):
                continue
            at_text = time if trusted else received_at
            if not lo <= at_text < hi:
                continue
            try:
                payload = json.loads(data)
                person = str(payload["person"])
                reader = str(payload["reader"])
            except (ValueError, KeyError, TypeError):
                continue  # not a PatrolCheck: the ingest stores what the protocol allows, so this is old data
            out.append(
                CheckIn(
                    event_id,
                    site,
                    gate,
                    reader,
                    person,
                    str(payload.get("name", "")),
                    datetime.fromisoformat(at_text.replace("Z", "+00:00")),
                    bool(trusted),
                )
            )
        return out
