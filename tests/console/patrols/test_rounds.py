"""Round matching as properties: on-time check-ins never raise an alarm; leaving one out raises exactly one missed."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from console.alarms import AlarmKind
from console.patrols.model import Route, Station, check_route
from console.patrols.rounds import CheckIn, StationState, alarm_drafts, match_rounds, parse_round_id

ZONE = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 12, 7)


@st.composite
def routes(draw: st.DrawFn) -> Route:
    every = draw(st.sampled_from([30, 60, 90]))
    count = draw(st.integers(1, 5))
    stations = []
    for i in range(count):
        tolerance = draw(st.integers(0, 10))
        offset = draw(st.integers(0, every - tolerance - 1))
        stations.append(Station(draw(st.sampled_from(["north", "east", "b3"])), offset, tolerance, f"r{i}"))
    first = draw(st.integers(6, 10))
    rounds = draw(st.integers(1, 4))
    route = Route(
        "longtan",
        "route",
        tuple(stations),
        time(first, 0),
        (datetime(2000, 1, 1, first) + timedelta(minutes=every * (rounds - 1))).time(),
        every,
        id=7,
    )
    assert not check_route(route)
    return route


@st.composite
def on_time(draw: st.DrawFn) -> tuple[Route, list[CheckIn]]:
    route = draw(routes())
    checks = []
    for k, start in enumerate(route.starts(DAY, ZONE)):
        for i, s in enumerate(route.stations):
            shift = draw(st.integers(-s.tolerance_min * 60, s.tolerance_min * 60))
            expected = start.astimezone(UTC) + timedelta(minutes=s.offset_min, seconds=shift)
            checks.append(CheckIn(f"e{k}-{i}", "longtan", s.gate, s.reader or "", "p1", "", expected))
    return route, checks


FAR = datetime(2026, 12, 9, tzinfo=UTC)


def _drafts(route: Route, checks: list[CheckIn]) -> list:
    records = match_rounds(route, route.starts(DAY, ZONE), checks, FAR, ZONE)
    return [d for r in records for d in alarm_drafts(r, FAR)]


@settings(max_examples=200, deadline=None)
@given(on_time())
def test_on_time_check_ins_never_raise_an_alarm(case: tuple[Route, list[CheckIn]]) -> None:
    route, checks = case
    assert _drafts(route, checks) == []
    records = match_rounds(route, route.starts(DAY, ZONE), checks, FAR, ZONE)
    assert all(s.state is StationState.ON_TIME for r in records for s in r.stations)


@settings(max_examples=200, deadline=None)
@given(on_time(), st.data())
def test_leaving_one_out_raises_exactly_one_missed(
    case: tuple[Route, list[CheckIn]], data: st.DataObject
) -> None:
    route, checks = case
    gone = data.draw(st.integers(0, len(checks) - 1))
    drafts = _drafts(route, checks[:gone] + checks[gone + 1 :])
    assert [d.kind for d in drafts].count(AlarmKind.PATROL_MISSED) == 1
    assert [d.kind for d in drafts].count(AlarmKind.PATROL_LATE) == 1
    assert len({d.source for d in drafts}) == 1  # both name the same round station


def test_a_late_check_in_is_marked_late_and_the_alarm_waits_for_the_deadline() -> None:
    route = Route("longtan", "r", (Station("north", 0, 5, "card"), Station("east", 20, 5)), time(9), time(10))
    start = route.starts(DAY, ZONE)[0].astimezone(UTC)
    late = CheckIn("e1", "longtan", "east", "scanner", "p1", "", start + timedelta(minutes=31))
    early = CheckIn("e0", "longtan", "north", "card", "p1", "", start - timedelta(minutes=2))
    before = start + timedelta(minutes=24)
    assert not [
        d for r in match_rounds(route, [start], [early], before, ZONE) for d in alarm_drafts(r, before)
    ]
    after = start + timedelta(minutes=26)
    (record,) = match_rounds(route, [start], [early, late], after, ZONE)
    assert [s.state for s in record.stations] == [StationState.ON_TIME, StationState.LATE]
    assert record.stations[1].late_min == 11
    assert [d.kind for d in alarm_drafts(record, after)] == [AlarmKind.PATROL_LATE]
    assert parse_round_id(record.id) == (0, datetime(2026, 12, 7, 9, 0))


def test_a_second_tap_is_an_extra_not_a_station() -> None:
    route = Route("longtan", "r", (Station("north", 0, 5),), time(9), time(9))
    start = route.starts(DAY, ZONE)[0].astimezone(UTC)
    taps = [
        CheckIn(f"e{i}", "longtan", "north", "card", "p1", "", start + timedelta(minutes=i)) for i in (1, 2)
    ]
    (record,) = match_rounds(route, [start], taps, FAR, ZONE)
    assert record.stations[0].check == taps[0] and record.extras == (taps[1],)


def test_route_rules_are_named() -> None:
    bad = Route(
        "longtan",
        "r",
        (Station("north", 58, 5), Station("north", 2, 5), Station("north", 8, 5)),
        every_min=60,
    )
    keys = sorted(p.key for p in check_route(bad))
    assert keys == ["offset_outside_round", "stations_overlap"]
