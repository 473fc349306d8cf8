"""The daily flow profile, its Poisson sampling, the compressed live day and the written history."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
import statistics
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from console.store import EventStore
from edge.outbox import Outbox, continue_numbering
from protocol import Event
from simulator.day import (
    EVENING_PEAK,
    EVENING_QUIET,
    SLOTS_PER_DAY,
    CompressedDay,
    Direction,
    GateKind,
    ProfiledArrivals,
    day_passages,
    hourly,
    next_arrival,
    slots,
)
from simulator.history import (
    HistoryGate,
    HistoryPlan,
    generate,
    history_boot,
    site_gates,
    write_history,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY = date(2026, 3, 16)
SATURDAY = date(2026, 3, 21)


def window_rate(kind: GateKind, window: tuple[float, float], *, weekend: bool = False) -> float:
    """Mean expected passages (entries + exits) per hour over a window of local clock hours."""
    start, end = (round(h * 4) for h in window)
    chosen = slots(kind, weekend=weekend)[start:end]
    return sum(s.entries + s.exits for s in chosen) / ((end - start) / 4)


# -- the profile's shape ----------------------------------------------------------------


@pytest.mark.parametrize("kind", list(GateKind))
@pytest.mark.parametrize("weekend", [False, True])
def test_the_evening_peak_hour_has_the_days_most_entries(kind: GateKind, weekend: bool):
    entries = [e for e, _ in hourly(kind, weekend=weekend)]
    assert max(range(24), key=entries.__getitem__) == 18
    assert entries[18] > 1.4 * max(entries[h] for h in range(24) if h not in (18, 19))


@pytest.mark.parametrize("kind", list(GateKind))
def test_twenty_to_twenty_one_is_well_below_the_evening_peak(kind: GateKind):
    peak = window_rate(kind, EVENING_PEAK)
    quiet = window_rate(kind, EVENING_QUIET)
    assert quiet < 0.45 * peak


@pytest.mark.parametrize("kind", list(GateKind))
def test_weekday_mornings_are_the_exit_peak_and_midday_is_a_lull(kind: GateKind):
    by_hour = hourly(kind)
    exits = [x for _, x in by_hour]
    assert max(range(24), key=exits.__getitem__) in (7, 8)
    midday = statistics.mean(e + x for e, x in by_hour[10:12] + by_hour[13:15])
    assert midday < 0.5 * (by_hour[8][0] + by_hour[8][1])
    assert midday < 0.5 * (by_hour[18][0] + by_hour[18][1])


@pytest.mark.parametrize("kind", list(GateKind))
def test_weekends_are_flatter(kind: GateKind):
    def peak_to_mean(weekend: bool) -> float:
        totals = [s.entries + s.exits for s in slots(kind, weekend=weekend)]
        return max(totals) / statistics.mean(totals)

    assert peak_to_mean(True) < 0.8 * peak_to_mean(False)


def test_main_gate_volume_asks_for_more_guards_at_the_peak_and_fewer_after():
    """Sized for the article: at ~120 people a guard-hour, +1..2 guards 18:00–19:30, one 20:00–21:00."""
    per_guard = 120
    peak = window_rate(GateKind.PEDESTRIAN, EVENING_PEAK)
    quiet = window_rate(GateKind.PEDESTRIAN, EVENING_QUIET)
    daytime = window_rate(GateKind.PEDESTRIAN, (13.0, 15.0))
    assert quiet <= per_guard and daytime <= per_guard
    assert 2 * per_guard < peak <= 4 * per_guard


# -- sampling -----------------------------------------------------------------------------


def test_same_seed_same_day_different_seed_different_day():
    def sample(seed: int) -> list:
        return day_passages(GateKind.PEDESTRIAN, MONDAY, SHANGHAI, random.Random(seed))

    assert sample(5) == sample(5)
    assert sample(5) != sample(6)


def test_passages_are_in_order_within_the_local_day():
    passages = day_passages(GateKind.VEHICLE, MONDAY, SHANGHAI, random.Random(1))
    assert passages == sorted(passages, key=lambda p: p.at)
    assert all(p.at.astimezone(SHANGHAI).date() == MONDAY for p in passages)


def test_sampled_counts_follow_the_expected_counts():
    """Sixty sampled Mondays: each 15-minute slot's mean count lies within 5 standard errors."""
    expected = slots(GateKind.PEDESTRIAN)
    counts = [[0, 0] for _ in range(SLOTS_PER_DAY)]
    days = 60
    for n in range(days):
        for p in day_passages(GateKind.PEDESTRIAN, MONDAY, SHANGHAI, random.Random(n)):
            local = p.at.astimezone(SHANGHAI)
            counts[(local.hour * 60 + local.minute) // 15][p.direction is Direction.OUT] += 1
    for slot, (entries, exits) in zip(expected, counts, strict=True):
        for mean, seen in ((slot.entries, entries), (slot.exits, exits)):
            # Poisson: variance == mean; the mean of `days` samples has sd sqrt(mean / days).
            assert abs(seen / days - mean) <= 5 * (mean / days) ** 0.5 + 0.05, (slot, seen)


def test_a_sampled_day_shows_the_evening_peak():
    passages = day_passages(GateKind.PEDESTRIAN, MONDAY, SHANGHAI, random.Random(9))
    entries_by_hour = [0] * 24
    for p in passages:
        if p.direction is Direction.IN:
            entries_by_hour[p.at.astimezone(SHANGHAI).hour] += 1
    assert max(range(24), key=entries_by_hour.__getitem__) == 18
    assert entries_by_hour[20] < 0.5 * entries_by_hour[18]


# -- the compressed live day --------------------------------------------------------------


def test_compressed_day_maps_elapsed_seconds_to_the_simulated_clock():
    day = CompressedDay(day_seconds=60, mean_per_min=40, start_hour=6)
    assert day.hour_at(0) == pytest.approx(6)
    assert day.hour_at(30) == pytest.approx(18)
    assert day.hour_at(60) == pytest.approx(6)
    assert (day.day_at(0), day.day_at(44.9), day.day_at(45.1)) == (1, 1, 2)
    assert day.per_min_at(31.9) > 2.5 * day.mean_per_min  # 18:45, the peak
    assert day.per_min_at(36) < day.mean_per_min  # 20:24
    assert day.peak_per_min() >= day.per_min_at(31.9)


def test_mean_rate_over_a_compressed_day_is_the_rate_asked_for():
    day = CompressedDay(day_seconds=60, mean_per_min=40)
    assert statistics.mean(day.per_min_at(t / 100) for t in range(6000)) == pytest.approx(40, rel=0.01)


def test_thinning_follows_the_compressed_profile():
    """Virtual time: arrivals over 200 compressed days land per simulated hour as the profile says."""
    day = CompressedDay(day_seconds=24.0, mean_per_min=60, start_hour=0)
    rate = day.rate_function()
    peak = day.peak_per_min() / 60 * 1.01
    rng = random.Random(3)
    per_hour = [0] * 24
    t = 0.0
    days = 200
    while True:
        t = next_arrival(t, rate, peak, rng)
        if t >= days * day.day_seconds:
            break
        per_hour[int(day.hour_at(t))] += 1
    for hour in range(24):
        expected = days * statistics.mean(rate(hour + k / 20) for k in range(20))
        assert abs(per_hour[hour] - expected) <= 5 * expected**0.5 + 1, hour
    assert max(range(24), key=per_hour.__getitem__) == 18


class RecordingKeyboard:
    """A scanner that records what it is given, at once (the pseudo-terminal one types at 9600 baud)."""

    def __init__(self) -> None:
        self.typed: list[str] = []
        self.lock = threading.Lock()

    def type(self, code: str) -> int:
        with self.lock:
            self.typed.append(code)
        return time.monotonic_ns()

    def type_garbage(self, rng: random.Random) -> bytes:
        return b"\x01garbage"


def test_profiled_arrivals_present_the_usual_mix_at_each_gate():
    keyboards = {"north": RecordingKeyboard(), "east": RecordingKeyboard()}
    day = CompressedDay(day_seconds=2.0, mean_per_min=600, start_hour=17.5)
    scenario = ProfiledArrivals(keyboards, ["111", "222"], day, seed=4, visitor_share=0.2, refused=["999"])
    scenario.start()
    try:
        done = threading.Event()
        for _ in range(100):
            if all(len(k.typed) >= 10 for k in keyboards.values()):
                done.set()
                break
            done.wait(0.05)
    finally:
        scenario.stop()
    assert done.is_set()
    counts = scenario.log.counts()
    assert {gate for gate, _ in counts} == {"north", "east"}
    assert set(keyboards["north"].typed) <= {"111", "222", "999"}


# -- history ------------------------------------------------------------------------------


def small_plan(**changes: object) -> HistoryPlan:
    plan = HistoryPlan(
        "longtan",
        site_gates(["north", "east"], doors=["building-3"], cameras=["west"]),
        days=3,
        until=date(2026, 3, 22),
        seed=2,
    )
    return dataclasses.replace(plan, **changes)


def test_history_is_deterministic_and_seeded():
    def ids_and_times(plan: HistoryPlan) -> list[tuple[str, datetime]]:
        return [(e.id, e.time) for _g, _d, events in generate(plan) for e in events]

    assert ids_and_times(small_plan()) == ids_and_times(small_plan())
    assert ids_and_times(small_plan()) != ids_and_times(small_plan(seed=3))


def test_history_events_are_valid_envelopes_marked_simulated_with_a_boot_per_gate_day():
    plan = small_plan()
    boots: dict[tuple[str, date], str] = {}
    kinds: dict[str, set[str]] = {}
    for gate, day, events in generate(plan):
        assert events, (gate, day)
        for event in events:
            Event.model_validate(event.model_dump())  # a real, strict envelope
            assert event.data["simulated"] is True
            assert event.boot == history_boot(plan.site, gate.name, day)
            local = event.time.astimezone(plan.zone)
            assert local.date() == day or (event.type == "scanner.rejected" and local.date() <= day)
            kinds.setdefault(gate.name, set()).add(event.type)
            if event.type == "access.scan":
                assert event.data["direction"] in ("in", "out")
                assert {"credential", "code", "granted", "reason", "reader"} <= event.data.keys()
                if event.data["granted"] and event.data["credential"] == "pass":
                    assert event.data["holder"] and event.data["serial"] >= 1 and event.data["code"] is None
        boots[(gate.name, day)] = events[0].boot
    assert len(set(boots.values())) == len(boots) == 4 * 3
    assert kinds["building-3"] == {"access.scan", "door.exit_pressed"}
    assert "access.scan" in kinds["north"]


def test_history_seqs_run_on_across_days_and_events_are_in_time_order():
    per_gate: dict[str, list[Event]] = {}
    for gate, _day, events in generate(small_plan()):
        per_gate.setdefault(gate.name, []).extend(events)
    for events in per_gate.values():
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert [e.time for e in events] == sorted(e.time for e in events)


def test_days_end_the_day_before_until_and_weekends_are_quieter_in_the_morning():
    plan = small_plan(days=7)
    assert plan.day_list() == [date(2026, 3, 15) + timedelta(days=n) for n in range(7)]
    morning: dict[date, int] = {}
    for gate, day, events in generate(plan):
        if gate.name == "north":
            morning[day] = sum(
                1 for e in events if e.type == "access.scan" and 7 <= e.time.astimezone(plan.zone).hour < 9
            )
    assert morning[SATURDAY] < 0.6 * morning[MONDAY]


def test_history_insert_count_equals_generated_and_a_rerun_adds_nothing(tmp_path: Path):
    plan = small_plan()
    with EventStore(tmp_path / "events.db") as store:
        first = write_history(store, plan, batch=1000)
        second = write_history(store, plan, batch=1000)
        stats = store.stats()
    assert first.generated == sum(len(events) for _g, _d, events in generate(plan))
    assert (first.new, first.duplicate) == (first.generated, 0)
    assert (second.new, second.duplicate) == (0, first.generated)
    assert stats.total_events == first.generated
    assert stats.total_missing == 0
    assert all(g.seq_conflicts == 0 and g.min_seq == 1 for g in stats.gates)
    assert {g.gate: g.max_seq for g in stats.gates} == first.last_seq
    db = sqlite3.connect(tmp_path / "events.db")
    try:
        unmarked = db.execute(
            "SELECT COUNT(*) FROM events WHERE json_extract(data, '$.simulated') IS NOT 1"
        ).fetchone()[0]
    finally:
        db.close()
    assert unmarked == 0


def test_a_live_gate_carries_on_where_its_history_ends(tmp_path: Path):
    path = tmp_path / "gate" / "outbox.db"
    continue_numbering(path, 4321)
    continue_numbering(path, 10)  # never lowers it
    with Outbox(path, site="longtan", gate="north") as outbox:
        event = outbox.append("agent.started", {}, time=datetime.now(UTC), clock_trusted=True)
    assert event is not None and event.seq == 4322


def test_history_gate_kinds_for_the_demo_site():
    gates = site_gates(["north", "east"], doors=["building-3"], cameras=["west"])
    assert gates == (
        HistoryGate("north", GateKind.PEDESTRIAN, 1.0),
        HistoryGate("east", GateKind.PEDESTRIAN, 0.5),
        HistoryGate("west", GateKind.VEHICLE),
        HistoryGate("building-3", GateKind.DOOR),
    )
    assert [g.reader_name for g in gates] == ["scanner", "scanner", "camera", "card-reader"]
