"""The post-by-post polish beside the solve: it keeps every rule and only ever lowers the hours.

:class:`console.roster.solver._PostPolish` frees one post's shifts at a time with the rest
of the roster fixed through the variables' domains, on a copy of the model.  A mistake there
(a domain left fixed or freed from an earlier step, a neighbourhood's roster taken though it
is worse) would hand :func:`console.roster.solver.solve` a roster the checker refuses or one
dearer than the one it started from; these tests polish rosters to the end and judge them by
the checker and by the proven best.
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ortools.sat.python import cp_model

from console.roster.check import shortfalls, violations
from console.roster.model import Assignment, Person, Problem, Rules, Team
from console.roster.solver import SHIFT_COST, _Built, _PostPolish, solve

pytestmark = pytest.mark.timeout(120)


def _at_floor(problem: Problem) -> _Built:
    """The model :func:`solve` polishes: short by no more than the floor, fewest hours."""
    built = _Built(problem)
    built.model.add(built.missing <= built.shortfall_floor)
    built.model.minimize(built.hours)
    return built


def _values(built: _Built, roster: set[tuple[str, str, int, int]]) -> list[bool]:
    return [(s.person, s.post, s.start, s.hours) in roster for s in built.shifts]


def _assignment(built: _Built, values: list[bool]) -> Assignment:
    hours: dict[tuple[str, str], set[int]] = defaultdict(set)
    for shift, chosen in zip(built.shifts, values, strict=True):
        if chosen:
            hours[shift.person, shift.post].update(shift.covers)
    return {key: frozenset(value) for key, value in hours.items()}


def _polish_to_the_end(built: _Built, start: list[bool]) -> _PostPolish:
    polisher = _PostPolish(built, built.model)
    polisher.offer(start)
    deadline = time.perf_counter() + 60
    steps = 0
    while polisher.step(deadline):
        steps += 1
        assert steps < 100, "the polish never settles"
    return polisher


def _guard(n: int) -> Person:
    return Person(
        f"g{n}", f"Guard {n}", Team.GUARD, frozenset({"gate", "yard"}), frozenset(range(24)), trained=True
    )


def _gate_and_yard_day() -> Problem:
    """Gate and yard open 08:00-16:00, four guards for either, shifts of four or eight hours."""
    demand = [1 if 8 <= hour < 16 else 0 for hour in range(24)]
    rules = Rules(shift_lengths=(4, 8), shift_starts=(8, 12))
    return Problem(
        ("gate", "yard"),
        tuple(_guard(n) for n in range(4)),
        {"gate": demand, "yard": demand},
        rules,
        hours=24,
    )


def test_polishing_post_by_post_turns_four_half_shifts_into_two_whole_ones() -> None:
    """Gate and yard open 08:00-16:00, four guards on four-hour halves (4 x (4 + 2) = 24): one
    post at a time the polish gives each post one eight-hour shift, 2 x (8 + 2) = 20, the best."""
    problem = _gate_and_yard_day()
    built = _at_floor(problem)
    halves = {("g0", "gate", 8, 4), ("g1", "gate", 12, 4), ("g2", "yard", 8, 4), ("g3", "yard", 12, 4)}
    start = _values(built, halves)
    assert violations(problem, _assignment(built, start)) == []
    polisher = _polish_to_the_end(built, start)
    assert polisher.values is not None
    assert polisher.objective == 2 * (8 + SHIFT_COST)
    roster = _assignment(built, polisher.values)
    assert violations(problem, roster) == []
    assert shortfalls(problem, roster) == []
    assert sorted(len(hours) for hours in roster.values()) == [8, 8]


def test_a_worse_roster_from_the_solve_is_not_taken() -> None:
    problem = _gate_and_yard_day()
    built = _at_floor(problem)
    whole = _values(built, {("g0", "gate", 8, 8), ("g1", "yard", 8, 8)})
    halves = _values(
        built, {("g0", "gate", 8, 4), ("g1", "gate", 12, 4), ("g2", "yard", 8, 4), ("g3", "yard", 12, 4)}
    )
    polisher = _PostPolish(built, built.model)
    polisher.offer(whole)
    polisher.offer(halves)
    assert polisher.values == whole and polisher.objective == 20


@st.composite
def two_post_days(draw: st.DrawFn) -> Problem:
    """A day at two or three posts, a handful of people who may stand one or more of them."""
    posts = tuple(f"p{n}" for n in range(draw(st.integers(2, 3))))
    people = []
    for n in range(draw(st.integers(4, 9))):
        allowed = frozenset(draw(st.lists(st.sampled_from(posts), min_size=1, max_size=len(posts))))
        first = draw(st.integers(0, 12))
        offered = frozenset(range(first, min(24, first + draw(st.integers(8, 24)))))
        people.append(
            Person(
                f"x{n}",
                f"Person {n}",
                draw(st.sampled_from(list(Team))),
                allowed,
                offered,
                trained=draw(st.booleans()),
                max_hours_day=draw(st.none() | st.integers(4, 10)),
            )
        )
    demand = {
        post: draw(st.lists(st.sampled_from((0, 0, 1, 1, 1, 2)), min_size=24, max_size=24)) for post in posts
    }
    rules = Rules(
        min_rest_hours=draw(st.integers(1, 8)),
        rotation_days=1,
        shift_lengths=(2, 4, 8),
        shift_starts=tuple(sorted(draw(st.sets(st.integers(0, 23), min_size=3, max_size=8)))),
    )
    return Problem(posts, tuple(people), demand, rules, hours=24)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(two_post_days())
def test_a_polished_roster_keeps_the_rules_and_never_beats_the_proven_best(problem: Problem) -> None:
    """From the dearest roster of the least shortfall (every shift it can take), polishing ends
    within the rules, at that shortfall, no dearer than it began and no cheaper than the best."""
    best = solve(problem, time_limit_s=10, workers=2, relative_gap=0.0)
    assume(best.status == "optimal")
    least = best.shortfall_hours + sum(1 for s in best.shortfalls if s.trained_missing)
    built = _Built(problem)
    built.model.add(built.missing <= least)
    built.model.minimize(built.hours)
    worst = built.model.clone()
    worst.maximize(built.hours)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 2
    solver.parameters.max_time_in_seconds = 5
    assert solver.solve(worst) in (cp_model.OPTIMAL, cp_model.FEASIBLE)  # the best roster is one
    start = [bool(solver.boolean_value(var)) for var in built.chosen]
    start_cost = _cost(built, start)
    polisher = _polish_to_the_end(built, start)
    assert polisher.values is not None
    roster = _assignment(built, polisher.values)
    assert violations(problem, roster) == []
    found = shortfalls(problem, roster)
    assert sum(s.missing for s in found) + sum(1 for s in found if s.trained_missing) <= least
    assert polisher.objective == _cost(built, polisher.values)
    assert best.objective <= polisher.objective <= start_cost


def _cost(built: _Built, values: list[bool]) -> int:
    return sum(s.hours + SHIFT_COST for s, v in zip(built.shifts, values, strict=True) if v)


@pytest.mark.slow
def test_the_bench_week_returns_a_checked_roster_within_the_gap_and_counts_it_right() -> None:
    """End to end on the bench week (``bench/roster.py``): the roster ``solve`` returns — the
    polished one as a rule, adopted over the solve's — passes the checker, meets the advice,
    and its objective is the hours and shifts it really has.  The limit is generous so that a
    loaded machine cannot fail it; the bench measures the time."""
    from console.roster.check import shifts as runs
    from console.roster.sample import compound_week

    problem = compound_week(seed=0)
    result = solve(problem, time_limit_s=60, workers=2)
    assert violations(problem, result.assignment) == []
    assert result.shortfalls == ()
    stood = sum(len(hours) for hours in result.assignment.values())
    started = sum(len(runs(set(hours))) for hours in result.assignment.values())
    assert result.objective == stood + SHIFT_COST * started
    assert result.status == "optimal" and result.gap <= 0.01
