"""The rules that turn duty events into time on duty, against the stored roster (console/roster/attendance.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from console.roster.attendance import report
from console.store import EventStore
from protocol.duty import DUTY_CHECK_OUT
from tests.console.roster.attendance_support import DAY, ZONE, duty_event, local, seed_roster


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(tmp_path / "events.db") as instance:
        yield instance


def _north(store: EventStore, site: str, now_hour: int = 23):  # type: ignore[no-untyped-def]
    posts = report(store, seed_roster(store.db, site), DAY, ZONE, now=local(now_hour))
    return next(p for p in posts if p.post == f"{site}/north")


def test_a_card_shown_twice_is_one_time_on_duty(store: EventStore, unique_name: str):
    site = unique_name
    store.commit(
        [
            duty_event(site, "north", 1, local(7, 58), "g0"),
            duty_event(site, "north", 2, local(7, 59), "g0"),  # shown again: not a second person
            duty_event(site, "north", 3, local(12, 0), "g0", type_=DUTY_CHECK_OUT),
        ]
    )
    north = _north(store, site)
    assert [d.person for d in north.hours[9].present] == ["g0"]
    assert north.hours[9].short == 1  # g1 never came
    assert [d.person for d in north.hours[13].present] == []


def test_a_night_shift_begun_yesterday_and_a_check_out_without_a_check_in(
    store: EventStore, unique_name: str
):
    site = unique_name
    store.commit(
        [
            duty_event(site, "north", 1, local(0) - timedelta(hours=2), "g1"),  # Sunday 22:00, still on
            duty_event(site, "north", 2, local(6, 0), "g0", type_=DUTY_CHECK_OUT),  # never checked in
        ]
    )
    north = _north(store, site, now_hour=10)
    assert [d.person for d in north.hours[0].present] == ["g1"]
    assert [d.person for d in north.hours[9].present] == ["g1"]  # until now
    assert north.hours[11].present == []  # after now: nobody yet
    kept = {s.span.person: s.status for s in north.shifts}
    assert kept == {"g0": "no_show", "g1": "on_time"}


def test_a_shift_not_yet_begun_is_not_a_no_show(store: EventStore, unique_name: str):
    kept = {s.span.person: s.status for s in _north(store, unique_name, now_hour=7).shifts}
    assert kept == {"g0": "upcoming", "g1": "upcoming"}
