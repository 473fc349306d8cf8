"""The demo's rostered day (issue 18): people, today's roster, a patrol route, and a patrol guard who is late once.

Before the console starts, :func:`prepare` writes into the console's own database what a
site office would have entered: four guards and a patrol guard (``console.roster``), a
small fixed roster for today (morning and evening shifts at each post, stored as the
week's draft), and a patrol route over the OSDP door's two readers.  The patrol guard's
credential goes into the site's door-card list as a duty entry
(``duty:wiegand26:77:4242``, unit ``patrol:pg-1``; protocol/duty.py), so a gate that
knows duty credentials records a ``patrol.checkin`` and keeps the door shut.

The demo runs a compressed day, but a patrol round is real minutes (the console's
watcher reads the wall clock), so the route's first round is placed **three minutes
before the demo starts**: station 1 (``osdp-in``, on the hour ± 5 min) is still on time,
and station 2 (``osdp-out``, expected at minute 1 ± 1) is already past its deadline. The
console's patrol watcher raises that ``patrol.late`` at its first pass, seconds after
the console is up; :class:`PatrolGuard` then presents the patrol card at station 1 (on
time) and at station 2 (late, marked ``late +N min`` on the round's record), and walks
each later round on time.  A round is worked out from stored events only, so without a
gate that records patrol check-ins (the gate side of issue 18), the record shows the
stations overdue and then missed; the late alarm is raised either way.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

log = logging.getLogger("gatepost.demo.patrol")

PATROL_GUARD = "pg-1"
PATROL_NAME = "巡逻员 周明"
PATROL_CARD = (77, 4242)
"""An H10301 card's facility and number: the gate reads it as ``wiegand26:77:4242``."""
ROUTE_NAME = "demo round"
LEAD_MIN = 3
"""How many minutes before the demo starts its first round began."""


@dataclass(frozen=True, slots=True)
class DemoPatrol:
    route_id: int
    first_round: datetime
    """Local start of the first round."""
    stations: tuple[str, ...]
    shifts: int


def patrol_credential() -> str:
    facility, card = PATROL_CARD
    return f"wiegand26:{facility}:{card}"


def prepare(
    console_db: Path, card_registry: Path | None, site: str, posts: list[str], door: str, zone: ZoneInfo
) -> DemoPatrol:
    """People, today's roster and the route into the console's database; the patrol card into the card list."""
    from console.db import Database
    from console.patrols.model import Route, Station
    from console.patrols.store import PatrolStore
    from console.roster.model import Person, Team
    from console.roster.plan import week_start
    from console.roster.store import RosterStore

    now = datetime.now(zone).replace(second=0, microsecond=0)
    first = now - timedelta(minutes=LEAD_MIN)
    last = min(first + timedelta(hours=9), first.replace(hour=23, minute=59))
    all_posts = [f"{site}/{gate}" for gate in posts]
    week = week_start(now.date())
    day = (now.date() - week).days
    people = [
        Person(f"g-{n}", name, Team.GUARD, frozenset(all_posts), frozenset(range(168)), trained=True)
        for n, name in enumerate(("保安 李强", "保安 王芳", "Guard Chen", "Guard Zhao"))
    ]
    people.append(Person(PATROL_GUARD, PATROL_NAME, Team.GUARD, frozenset(all_posts), frozenset(range(168))))
    assignment: dict[tuple[str, str], frozenset[int]] = {}
    for index, post in enumerate(all_posts[:2]):  # two posts, an early and a late shift each
        assignment[people[2 * index].id, post] = frozenset(range(day * 24 + 6, day * 24 + 14))
        assignment[people[2 * index + 1].id, post] = frozenset(range(day * 24 + 14, day * 24 + 22))
    route = Route(
        site,
        ROUTE_NAME,
        (Station(door, 0, 5, "osdp-in"), Station(door, 1, 1, "osdp-out")),
        time(first.hour, first.minute),
        time(last.hour, last.minute),
        60,
    )
    db = Database(console_db)
    try:
        roster = RosterStore(db)
        roster.put_people(people)
        shifts = roster.replace_week(
            week, assignment, status="draft", made_by="demo", summary={"status": "demo"}
        )
        patrols = PatrolStore(db)
        existing = {r.name: r for r in patrols.routes() if r.site == site}
        if ROUTE_NAME in existing:  # a --state run continued: today's schedule replaces it
            route = replace(route, id=existing[ROUTE_NAME].id)
        stored = patrols.save(route, "demo")
    finally:
        db.close()
    if card_registry is not None:
        from console.credentials import CardRegistry
        from protocol.credentials import CardEntry
        from protocol.duty import DutyRole, duty_credential, duty_unit

        with CardRegistry(card_registry) as registry:
            registry.put(
                [
                    CardEntry(
                        duty_credential(patrol_credential()),
                        PATROL_NAME,
                        duty_unit(DutyRole.PATROL, PATROL_GUARD),
                    )
                ]
            )
    return DemoPatrol(stored.id, first, tuple(s.label for s in route.stations), shifts)


class PatrolGuard:
    """The simulated patrol guard: presents the patrol card at the OSDP door's readers, one station late.

    Round 1: station 1 at once (on time), station 2 a few seconds later (already late).
    Later rounds: station 1 half a minute into the round, station 2 a minute in (on time).
    """

    def __init__(self, readers: dict[str, object], patrol: DemoPatrol, zone: ZoneInfo) -> None:
        self.readers = readers
        self.patrol = patrol
        self.zone = zone
        self.presented: list[tuple[str, datetime]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-patrol-guard", daemon=True)

    def start(self) -> PatrolGuard:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _present(self, reader: str) -> None:
        target = self.readers.get(reader)
        if target is None:
            return
        try:
            target.present_card(*PATROL_CARD)  # type: ignore[attr-defined]
            self.presented.append((reader, datetime.now(self.zone)))
        except Exception:  # a reader gone at shutdown: the demo goes on
            log.warning("patrol guard could not present at %s", reader, exc_info=True)

    def _bus_up(self) -> bool:
        """Wait until the gate polls the readers (their replies are on the wire), then a little for its card list."""
        while not self._stop.is_set():
            if all(getattr(reader, "writes", [None]) for reader in self.readers.values()):
                return not self._stop.wait(3.0)
            self._stop.wait(0.2)
        return False

    def _run(self) -> None:
        if not self._bus_up():  # a card shown before the gate polls would wait in the reader
            return
        self._present("osdp-in")
        if self._stop.wait(4.0):
            return
        self._present("osdp-out")
        start = self.patrol.first_round
        while True:
            start += timedelta(hours=1)
            for offset_s, reader in ((30, "osdp-in"), (60, "osdp-out")):
                wait = (start + timedelta(seconds=offset_s) - datetime.now(self.zone)).total_seconds()
                if self._stop.wait(max(0.0, wait)):
                    return
                self._present(reader)
