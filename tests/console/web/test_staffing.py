"""Staffing advice from flow data: a synthetic month shaped like the source article's evening peak.

The Longtan communities added guards for the 18:00–19:30 return and took one away at
20:00–21:00; the console must reach that advice from the data alone.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from console.db import Database
from console.flow import (
    DayKind,
    FlowBucket,
    FlowSettings,
    day_bounds,
    events_buckets,
    guards_for,
    percentile,
    recommend,
)
from console.store import EventStore
from protocol import Event

ZONE = "Asia/Shanghai"
SETTINGS = FlowSettings(timezone=ZONE, capacity_per_guard=120, min_guards=1, baseline_guards=2)


def evening_peak_rate(minute: int) -> float:
    """Persons per hour at a main gate on a weekday, by minute of the local day."""
    hour = minute / 60
    if hour < 6:
        return 20
    if hour < 7:
        return 100
    if hour < 9:
        return 200  # the morning leaving for work
    if hour < 18:
        return 150
    if hour < 19.5:
        return 310  # the evening return: the article's peak
    if hour < 20:
        return 180
    if hour < 21:
        return 60  # everyone is home
    return 140


def synthetic_month(
    end: date, *, days: int = 35, gate: str = "north", odd_day: date | None = None, seed: int = 7
) -> list[FlowBucket]:
    """Half-hour buckets for ``days`` days before ``end``, with ±8% noise and an optional festival."""
    rng = random.Random(seed)
    zone = SETTINGS.zone
    buckets = []
    for offset in range(days, 0, -1):
        day = end - timedelta(days=offset)
        start, _ = day_bounds(day, zone)
        weekend = day.weekday() >= 5
        for slot in range(48):
            rate = evening_peak_rate(slot * 30) * (0.6 if weekend else 1.0)
            if day == odd_day:
                rate *= 4
            load = round(rate / 2 * rng.uniform(0.92, 1.08))
            buckets.append(
                FlowBucket("longtan", gate, start + timedelta(minutes=30 * slot), 30, entries=load)
            )
    return buckets


def test_advice_adds_at_the_evening_peak_and_removes_after_it() -> None:
    until = date(2026, 11, 30)
    (plan,) = recommend(synthetic_month(until), SETTINGS, until=until, kind=DayKind.WEEKDAY)
    texts = [a.text() for a in plan.advice]
    add = [a for a in plan.advice if a.delta > 0]
    fewer = [a for a in plan.advice if a.delta < 0]
    assert [(a.window, a.delta) for a in add] == [("18:00–19:30", 1)], texts
    assert ("20:00–21:00", -1) in [(a.window, a.delta) for a in fewer], texts
    assert add[0].text().startswith("add 1 guard 18:00–19:30 at longtan/north (peak ")
    assert 290 <= add[0].rate <= 340
    assert any(t.startswith("one fewer 20:00–21:00 at longtan/north (at most ") for t in texts), texts
    assert len(plan.days) == SETTINGS.days
    assert all(d.weekday() < 5 and d < until for d in plan.days)


def test_one_odd_day_does_not_drive_the_roster() -> None:
    until = date(2026, 11, 30)
    odd = date(2026, 11, 18)  # a Wednesday: four times the usual flow all day
    (plan,) = recommend(synthetic_month(until, odd_day=odd), SETTINGS, until=until, kind=DayKind.WEEKDAY)
    assert odd in plan.days
    assert [(a.window, a.delta) for a in plan.advice if a.delta > 0] == [("18:00–19:30", 1)]


def test_a_bigger_peak_asks_for_two_more_guards() -> None:
    until = date(2026, 11, 30)

    def evening(b: FlowBucket) -> bool:
        local = b.start.astimezone(SETTINGS.zone)
        return 18 * 60 <= local.hour * 60 + local.minute < 19 * 60 + 30

    buckets = [
        FlowBucket(
            b.site, b.gate, b.start, b.minutes, entries=round(b.entries * 1.3) if evening(b) else b.entries
        )
        for b in synthetic_month(until)
    ]  # about 400/h: four guards of 120/h, two more than the baseline
    (plan,) = recommend(buckets, SETTINGS, until=until, kind=DayKind.WEEKDAY)
    assert [(a.window, a.delta, a.guards) for a in plan.advice if a.delta > 0] == [("18:00–19:30", 2, 4)]
    assert next(a.text() for a in plan.advice if a.delta > 0).startswith("add 2 guards 18:00–19:30")


def test_weekends_are_planned_apart_and_days_without_data_are_left_out() -> None:
    until = date(2026, 11, 30)
    buckets = [
        b for b in synthetic_month(until) if b.start.astimezone(SETTINGS.zone).date() != date(2026, 11, 21)
    ]
    (plan,) = recommend(buckets, SETTINGS, until=until, kind=DayKind.WEEKEND)
    assert all(d.weekday() >= 5 for d in plan.days)
    assert date(2026, 11, 21) not in plan.days  # a Saturday the gate was down: no evidence, not zero
    # weekend flow is 60% of a weekday's: the evening peak (186/h) still needs 2, nothing to add
    assert not [a for a in plan.advice if a.delta > 0]


def test_min_guards_and_capacity() -> None:
    assert guards_for(0, SETTINGS) == 1
    assert guards_for(120, SETTINGS) == 2 - 1
    assert guards_for(121, SETTINGS) == 2
    assert guards_for(0, FlowSettings(min_guards=0)) == 0
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([1, 2, 3, 4, 5], 80) == pytest.approx(4.2)
    assert percentile([], 80) == 0


def _event(site: str, gate: str, seq: int, when: datetime, type_: str, data: dict[str, object]) -> Event:
    return Event(
        id=uuid.uuid4().hex,
        site=site,
        gate=gate,
        boot="b" * 32,
        seq=seq,
        time=when,
        clock_trusted=True,
        type=type_,
        data=data,
    )


def test_counts_from_stored_events(tmp_path: Path) -> None:
    """Entries, exits and denials per half hour, counted by SQL from real stored events."""
    path = tmp_path / "events.db"
    at = datetime(2026, 11, 27, 10, 5, tzinfo=UTC)  # 18:05 in Shanghai
    events = [
        _event("longtan", "north", 1, at, "access.scan", {"granted": True, "reason": "granted"}),
        _event("longtan", "north", 2, at, "access.scan", {"granted": True, "direction": "out"}),
        _event("longtan", "north", 3, at + timedelta(minutes=30), "access.scan", {"granted": False}),
        _event("longtan", "north", 4, at, "door.opened", {}),
        _event("longtan", "door1", 1, at, "door.access_granted", {"credential": "em4100:01"}),
        _event("longtan", "door1", 2, at, "door.access_denied", {"credential": "em4100:02"}),
    ]
    with EventStore(path) as store:
        store.commit(events)
    db = Database(path)
    try:
        start, end = day_bounds(date(2026, 11, 27), SETTINGS.zone)
        buckets = events_buckets(db, start=start, end=end, minutes=30)
        got = {
            (b.gate, b.start.astimezone(SETTINGS.zone).strftime("%H:%M")): (b.entries, b.exits, b.denied)
            for b in buckets
        }
        assert got == {
            ("north", "18:00"): (1, 1, 0),
            ("north", "18:30"): (0, 0, 1),
            ("door1", "18:00"): (1, 0, 1),
        }
        only = events_buckets(db, start=start, end=end, site="longtan", gate="door1", minutes=60)
        assert [(b.gate, b.minutes, b.load) for b in only] == [("door1", 60, 2)]
        with pytest.raises(ValueError):
            events_buckets(db, start=start, end=end, minutes=7)
    finally:
        db.close()


def test_flow_section_of_the_console_configuration(tmp_path: Path) -> None:
    from console.config import ConfigError, load_config

    good = tmp_path / "good.toml"
    good.write_text("[flow]\ncapacity_per_guard = 100\nbaseline_guards = 2\nbucket_minutes = 15\n")
    settings = FlowSettings.from_config(load_config(good).flow)
    assert (settings.capacity_per_guard, settings.baseline_guards, settings.bucket_minutes) == (100, 2, 15)
    bad = tmp_path / "bad.toml"
    bad.write_text('[flow]\ntimezone = "Mars/Olympus"\nbucket_minutes = 7\ncapacity = 3\n')
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    text = str(caught.value)
    assert "bad.toml:2: flow.timezone" in text and "Mars/Olympus" in text
    assert "bad.toml:3: flow.bucket_minutes" in text and "bad.toml:4: flow.capacity" in text
