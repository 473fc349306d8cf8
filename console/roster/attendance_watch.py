"""The ``post.understaffed`` alarm: a post with fewer people on duty than the advice, for too long.

Every ``interval_s`` the watch looks at each post that has a stored roster for the
current site-local day, counts the people checked in there now (console.roster.attendance,
from the stored duty events) and compares that with the staffing advice for the hour (the
same demand the roster was drafted from: console.roster.plan).  A post that stays below
the advice for longer than ``[roster] understaffed_after_minutes`` raises one alarm per
post (``site``/``gate`` of the post) through :meth:`console.alarms.AlarmBook.raise_or_update`;
the console closes it (``acked_by`` ``(console)``) once the post is staffed again.  A new
stretch below the advice after that is a new source, so a new alarm.

When a stretch began is kept in memory: after a console restart a post still short waits
the full time again before its alarm, which errs towards one alarm late rather than an
alarm for a stretch nobody measured.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from console.alarms import Alarm, AlarmBook, AlarmKind
from console.db import format_time
from console.flow import FlowSettings
from console.roster.attendance import day_bounds, present_now, roster_spans
from console.roster.plan import problem_for_week, week_start
from console.roster.store import RosterStore
from console.store import EventStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PostCount:
    post: str
    present: int
    advice: int


class UnderstaffedWatch:
    """Raises and closes ``post.understaffed``; ``step(now)`` is one pass, ``start()`` runs them in a thread."""

    def __init__(
        self,
        events: EventStore,
        roster: RosterStore,
        alarms: AlarmBook,
        settings: FlowSettings,
        *,
        after_minutes: float = 15.0,
        interval_s: float = 60.0,
        on_alarm: Callable[[Alarm, bool], None] | None = None,
    ) -> None:
        self.events = events
        self.roster = roster
        self.alarms = alarms
        self.settings = settings
        self.after = timedelta(minutes=after_minutes)
        self.interval_s = interval_s
        self.on_alarm = on_alarm
        self._below_since: dict[str, datetime] = {}
        self._demand: tuple[date, dict[str, list[int]]] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> UnderstaffedWatch:
        self._thread = threading.Thread(target=self._run, name="console-understaffed", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a database hiccup must not end the watch
                log.exception("understaffed watch pass failed; retrying")
            self._stop.wait(self.interval_s)

    def _week_demand(self, week: date) -> dict[str, list[int]]:
        """People wanted per post and week hour, from the flow before the week (read once a week)."""
        if self._demand is None or self._demand[0] != week:
            problem = problem_for_week(self.events.db, self.settings, self.roster.people(), week)
            self._demand = (week, {post: list(hours) for post, hours in problem.demand.items()})
        return self._demand[1]

    def counts(self, now: datetime) -> list[PostCount]:
        """Each post rostered today: people on duty now and the advice for this hour."""
        zone = self.settings.zone
        local = now.astimezone(zone)
        start, end = day_bounds(local.date(), zone)
        posts = sorted({span.post for span in roster_spans(self.roster, start, end, zone)})
        if not posts:
            return []
        week = week_start(local.date())
        demand = self._week_demand(week)
        hour = local.weekday() * 24 + local.hour
        present = present_now(self.events, now, posts)
        baseline = max(self.settings.baseline_guards, self.settings.min_guards)
        return [
            PostCount(post, len(present[post]), demand[post][hour] if post in demand else baseline)
            for post in posts
        ]

    def step(self, now: datetime | None = None) -> list[Alarm]:
        """One look at every rostered post; returns the alarms opened, changed or closed."""
        now = now or datetime.now(UTC)
        changed: list[Alarm] = []
        counts = self.counts(now)
        short = {c.post for c in counts if c.present < c.advice}
        for count in counts:
            site, _, gate = count.post.partition("/")
            if count.post in short:
                since = self._below_since.setdefault(count.post, now)
                if now - since >= self.after:
                    result = self.alarms.raise_or_update(
                        AlarmKind.POST_UNDERSTAFFED,
                        site,
                        gate,
                        [f"{count.post}@{format_time(since)}"],
                        format_time(since),
                        {
                            "post": count.post,
                            "present": count.present,
                            "advice": count.advice,
                            "since": format_time(since),
                        },
                    )
                    if result is not None and result[1]:
                        changed.append(self._told(result[0], True))
        for post in list(self._below_since):
            if post not in short:
                del self._below_since[post]
        for alarm in self.alarms.list(open_only=True, limit=1000):
            post = f"{alarm.site}/{alarm.gate}"
            if alarm.kind == AlarmKind.POST_UNDERSTAFFED.value and post not in short:
                cleared = self.alarms.clear(
                    AlarmKind.POST_UNDERSTAFFED, alarm.site, alarm.gate, "staffed again (console)"
                )
                if cleared is not None:
                    changed.append(self._told(cleared, False))
        return changed

    def _told(self, alarm: Alarm, opened: bool) -> Alarm:
        if self.on_alarm is not None:
            try:
                self.on_alarm(alarm, opened)
            except Exception:  # a live page's trouble must not stop the watch
                log.exception("could not tell the web console about %s", alarm.kind)
        return alarm


def start_understaffed_watch(config: Any, store: EventStore, web: Any) -> UnderstaffedWatch | None:
    """The watch for ``console run``; ``None`` (and a log line) if its tables cannot be opened."""
    try:
        roster = RosterStore(store.db)
        alarms = AlarmBook(store.db)
    except Exception as exc:
        log.error("the understaffed alarm is off: %s", exc)
        return None
    return UnderstaffedWatch(
        store,
        roster,
        alarms,
        FlowSettings.from_config(config.flow),
        after_minutes=config.roster.understaffed_after_minutes,
        on_alarm=web.publish_alarm if web is not None else None,
    ).start()
