"""The running console's patrol watcher: raises ``patrol.late`` and ``patrol.missed`` when they fall due.

A late station is an absence — no event arrives to say it — so the alarm cannot be raised
as events are stored (console/web/hub.py's watcher); it is raised by the clock.  Every
:data:`INTERVAL_S` the watcher works out the rounds of every active route that started
today or yesterday (site time zone) from the stored check-ins, and hands the alarms they
call for to the alarm book, which counts each round station's source once: a restart,
a second console process or a pass repeated after a database hiccup raises nothing twice.
An alarm is raised at the first pass after its deadline, so up to :data:`INTERVAL_S` late.

A round that was over before the route was last saved raises nothing: the route was
different then (or did not exist), and a new route must not greet the operator with
yesterday's "missed" stations.  The round under way when it is saved is watched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from console.alarms import Alarm, AlarmBook
from console.db import Database
from console.patrols.model import MAX_TOLERANCE_MIN, Route
from console.patrols.rounds import RoundRecord, alarm_drafts, match_rounds
from console.patrols.store import PatrolStore

log = logging.getLogger("gatepost.console.patrols")

INTERVAL_S = 10.0


def rounds_between(
    store: PatrolStore, route: Route, zone: ZoneInfo, first_day_local: datetime, days: int, now: datetime
) -> list[RoundRecord]:
    """The records of ``route``'s rounds on ``days`` local days from ``first_day_local``'s date."""
    starts = [
        start
        for offset in range(days)
        for start in route.starts((first_day_local + timedelta(days=offset)).date(), zone)
    ]
    if not starts:
        return []
    lo = min(starts).astimezone(UTC) - timedelta(minutes=MAX_TOLERANCE_MIN)
    hi = max(starts).astimezone(UTC) + route.round_length
    return match_rounds(route, starts, store.checkins(route.site, lo, hi), now, zone)


class PatrolWatcher:
    def __init__(
        self,
        db: Database,
        alarms: AlarmBook,
        zone: ZoneInfo,
        publish: Callable[[Alarm], None] = lambda _alarm: None,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.store = PatrolStore(db)
        self.alarms = alarms
        self.zone = zone
        self.publish = publish
        self.interval_s = interval_s
        self.passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self, now: datetime | None = None) -> list[Alarm]:
        """One pass: the alarms raised (or counted) now."""
        now = datetime.now(UTC) if now is None else now
        yesterday = now.astimezone(self.zone) - timedelta(days=1)
        raised: list[Alarm] = []
        for route in self.store.routes(active_only=True):
            since = datetime.fromisoformat(route.updated_at.replace("Z", "+00:00"))
            records = rounds_between(self.store, route, self.zone, yesterday, 2, now)
            drafts = [
                draft
                for record in records
                if record.start <= now
                and record.end > since  # rounds over before the route was saved: nothing
                for draft in alarm_drafts(record, now)
            ]
            if drafts:
                raised += self.alarms.raise_drafts(drafts)
        for alarm in raised:
            self.publish(alarm)
        self.passes += 1
        return raised

    def start(self) -> PatrolWatcher:
        self._thread = threading.Thread(target=self._run, name="console-patrol-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a database hiccup must not end the patrol alarms
                log.exception("patrol pass failed; retrying")
            self._stop.wait(self.interval_s)
