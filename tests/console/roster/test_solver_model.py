"""What the solver's model leaves out and adds never changes the best roster.

The model drops candidate shifts that a shorter shift inside them dominates, writes rest as
cliques of clashing shifts and proves the shortfall with a weighted first phase; each is a
speed-up that must not cost a roster.  Hypothesis draws small compounds whose best roster
the solver proves in well under the time limit, and the proven best with the pruned
candidates must equal the proven best with every candidate.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from console.roster.check import violations
from console.roster.model import Person, Problem, Rules, Team
from console.roster.solver import SHIFT_COST, candidate_shifts, lp_bound, solve

pytestmark = pytest.mark.timeout(120)


@st.composite
def small_weeks(draw: st.DrawFn) -> Problem:
    """A day or two at one to three posts, demand with closed hours (the pruning's case)."""
    hours = 24 * draw(st.integers(1, 2))
    posts = tuple(f"p{n}" for n in range(draw(st.integers(1, 3))))
    people = []
    for n in range(draw(st.integers(1, 6))):
        allowed = frozenset(draw(st.lists(st.sampled_from(posts), min_size=1, max_size=len(posts))))
        first = draw(st.integers(0, hours - 1))
        offered = frozenset(range(first, min(hours, first + draw(st.integers(2, hours)))))
        people.append(
            Person(
                f"x{n}",
                f"Person {n}",
                draw(st.sampled_from(list(Team))),
                allowed,
                offered,
                trained=draw(st.booleans()),
                max_hours_day=draw(st.none() | st.integers(2, 10)),
                max_hours_week=draw(st.none() | st.integers(2, 30)),
            )
        )
    demand = {
        post: draw(st.lists(st.sampled_from((0, 0, 1, 2)), min_size=hours, max_size=hours)) for post in posts
    }
    rules = Rules(
        min_rest_hours=draw(st.integers(1, 8)),
        rotation_days=draw(st.integers(1, 2)),
        shift_lengths=(2, 4, 8),
        shift_starts=tuple(sorted(draw(st.sets(st.integers(0, 23), min_size=2, max_size=8)))),
    )
    return Problem(posts, tuple(people), demand, rules, hours)


def _best(problem: Problem, *, prune: bool) -> tuple[int, float] | None:
    """(shortfall, hours objective) of the proven-best roster, or None if not proven in time."""
    result = solve(problem, time_limit_s=10, workers=2, relative_gap=0.0, prune=prune)
    assert violations(problem, result.assignment) == []
    if result.status != "optimal":
        return None
    missing = result.shortfall_hours + sum(1 for s in result.shortfalls if s.trained_missing)
    return missing, result.objective


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_weeks())
def test_pruned_candidates_keep_the_best_roster(problem: Problem) -> None:
    pruned = _best(problem, prune=True)
    every = _best(problem, prune=False)
    assume(pruned is not None and every is not None)  # both proven: small weeks are, in well under the limit
    assert pruned == every


def test_a_shift_over_closed_hours_is_cut_to_the_open_ones() -> None:
    """A post open 08:00-12:00: the 8-hour shift from 06:00 gives way to the 4-hour one from 08:00."""
    guard = Person("g", "Guard", Team.GUARD, frozenset({"gate"}), frozenset(range(24)), trained=True)
    demand = [1 if 8 <= hour < 12 else 0 for hour in range(24)]
    rules = Rules(shift_lengths=(2, 4, 8), shift_starts=(6, 8))
    problem = Problem(("gate",), (guard,), {"gate": demand}, rules, hours=24)
    assert {(s.start, s.hours) for s in candidate_shifts(problem, prune=False)} == {
        (start, hours) for start in (6, 8) for hours in (2, 4, 8)
    }
    # 06:00-08:00 is all closed; from 06:00 for 4 or 8 hours, and from 08:00 for 8, a shorter
    # shift inside covers every open hour they cover.
    assert {(s.start, s.hours) for s in candidate_shifts(problem)} == {(8, 2), (8, 4)}
    result = solve(problem, time_limit_s=5, workers=2, relative_gap=0.0)
    assert result.status == "optimal" and result.shortfall_hours == 0
    assert result.assignment == {("g", "gate"): frozenset(range(8, 12))}


def test_a_greedy_shift_the_model_left_out_is_hinted_as_the_shorter_one() -> None:
    """The hint keeps its roster within the rules even when its shifts were pruned."""
    guard = Person("g", "Guard", Team.GUARD, frozenset({"gate"}), frozenset(range(24)), trained=True)
    demand = [1 if 8 <= hour < 12 else 0 for hour in range(24)]
    rules = Rules(shift_lengths=(2, 4, 8), shift_starts=(6, 8))
    problem = Problem(("gate",), (guard,), {"gate": demand}, rules, hours=24)
    hint = {("g", "gate"): frozenset(range(6, 14))}
    result = solve(problem, time_limit_s=5, workers=2, hint=hint)
    assert violations(problem, result.assignment) == []
    assert result.shortfall_hours == 0


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_weeks())
def test_the_lp_bound_never_exceeds_the_best_roster(problem: Problem) -> None:
    """The relaxation's bound is a bound: no proven-best roster stands fewer hours than it says."""
    best = _best(problem, prune=True)
    assume(best is not None)
    assert best is not None
    missing, hours = best
    assert lp_bound(problem, missing) <= hours + 1e-6


def test_the_lp_bound_of_an_open_morning_is_its_one_shift() -> None:
    guard = Person("g", "Guard", Team.GUARD, frozenset({"gate"}), frozenset(range(24)), trained=True)
    demand = [1 if 8 <= hour < 12 else 0 for hour in range(24)]
    problem = Problem(("gate",), (guard,), {"gate": demand}, Rules(shift_starts=(6, 8)), hours=24)
    assert lp_bound(problem, 0) == pytest.approx(4 + SHIFT_COST)


def test_a_floor_no_roster_meets_falls_back_and_still_proves_the_least_shortfall() -> None:
    """One guard, a gate open all day: every hour has someone who could stand it (floor 0),
    yet no roster covers more than 10 of the 24 hours; the solver proves 14 short, no trained
    person in those 14 hours, and says when."""
    guard = Person("g", "Guard", Team.GUARD, frozenset({"gate"}), frozenset(range(24)), trained=True)
    problem = Problem(("gate",), (guard,), {"gate": [1] * 24}, Rules(), hours=24)
    result = solve(problem, time_limit_s=10, workers=2)
    assert violations(problem, result.assignment) == []
    assert result.shortfall_hours == 14
    assert result.shortfall_bound == 14 + 14  # person-hours short plus hours with no trained person
    assert result.status == "optimal"
    assert 0 < result.shortfall_proven_s < 10


def test_a_coverable_week_is_proven_by_its_first_roster() -> None:
    """Two guards, a gate open all day: the first roster at the floor (0) proves it least."""
    guards = tuple(
        Person(f"g{n}", f"Guard {n}", Team.GUARD, frozenset({"gate"}), frozenset(range(24)), trained=True)
        for n in range(3)
    )
    problem = Problem(("gate",), guards, {"gate": [1] * 24}, Rules(), hours=24)
    result = solve(problem, time_limit_s=10, workers=2)
    assert violations(problem, result.assignment) == []
    assert result.shortfall_hours == 0 and result.shortfall_bound == 0
    assert 0 < result.shortfall_proven_s < 10
    assert result.status == "optimal"  # 24 hours in 3 eight-hour shifts: 24 + 3 x SHIFT_COST, proven
    assert result.objective == 24 + 3 * SHIFT_COST
