"""A week's roster from the staffing advice, by OR-Tools CP-SAT.

Why a solver and not a greedy pass: the rules interact across the whole week.  Who covers
Tuesday's 18:00 peak depends on who stood Monday night (rest), on how many hours they have
left (week limit) and on which post their rotation period holds them to; a pass that fills
hour after hour commits early and leaves holes later (``bench/roster.py`` measures how many
against :mod:`console.roster.greedy` on the same week).

Every hard rule of :class:`~console.roster.model.Rules` is a hard constraint here, so the
roster the solver returns always passes :func:`console.roster.check.violations`.  Meeting
the advice and having a trained person at every post are *soft*, solved lexicographically:
first the least shortfall the rules allow (person-hours below the advice plus hours with
no trained person), proven; then, holding that, the fewest hours stood and shifts
started.  Where the rules cannot meet the advice, the result says which hours fall short
and by how much instead of failing.  A time limit bounds every solve; the result carries the solver's proven bound,
so "within 1 % of the best roster possible" is a figure, not a hope.

CP-SAT's model API: https://developers.google.com/optimization/reference/python/sat/python/cp_model
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass

from ortools.sat.python import cp_model

from console.roster.check import shifts as runs
from console.roster.check import shortfalls
from console.roster.model import Assignment, Problem, Shortfall

SHIFT_COST = 2
"""Each shift started: fewer, longer shifts are kinder to people than many short ones."""


@dataclass(frozen=True, slots=True)
class RosterResult:
    assignment: Assignment
    shortfalls: tuple[Shortfall, ...]
    status: str
    """``optimal``; ``feasible`` (stopped at the gap or time limit with a roster); ``hint`` (no
    roster of its own in the time, the starting roster returned); ``unknown`` (none at all)."""
    objective: float
    """Hours stood plus the cost of shifts started, at the least shortfall (phase 2)."""
    bound: float
    """The solver's proven lower bound on ``objective``."""
    seconds: float
    shortfall_bound: int = 0
    """Proven: no roster within the rules falls short by fewer person-hours (and untrained hours)."""

    @property
    def gap(self) -> float:
        """Relative distance from the proven bound: 0 is proven optimal, 0.01 is within 1 %."""
        return _gap(self.objective, self.bound)

    @property
    def shortfall_hours(self) -> int:
        return sum(s.missing for s in self.shortfalls)


@dataclass(frozen=True, slots=True)
class Shift:
    """One shift the model may choose: ``person`` at ``post`` for ``hours`` hours from ``start``."""

    person: str
    post: str
    start: int
    hours: int

    @property
    def covers(self) -> range:
        return range(self.start, self.start + self.hours)


def candidate_shifts(problem: Problem) -> list[Shift]:
    """Every shift a person could stand: allowed post, every hour offered, a standard length."""
    found = []
    lengths = problem.rules.lengths()
    starts = set(problem.rules.shift_starts)
    for person in problem.people:
        posts = sorted(post for post in person.posts if post in problem.demand)
        offered = person.available
        for start in range(problem.hours):
            if start % 24 not in starts:
                continue
            for hours in lengths:
                if start + hours > problem.hours or hours > problem.max_day(person):
                    break
                if all(hour in offered for hour in range(start, start + hours)):
                    found.extend(Shift(person.id, post, start, hours) for post in posts)
    return found


def solve(
    problem: Problem,
    *,
    time_limit_s: float = 10.0,
    relative_gap: float = 0.01,
    workers: int = 8,
    hint: Assignment | None = None,
) -> RosterResult:
    """The best roster the solver proves within ``relative_gap`` of optimal, or finds in the time limit.

    The model chooses whole shifts (:func:`candidate_shifts`) rather than single hours:
    shift lengths and rest then become which shifts may coexist, a covering structure whose
    linear relaxation is tight, so CP-SAT proves its bound in seconds where an hour-by-hour
    model of the same week stalls far from it.
    """
    started = time.perf_counter()
    model = cp_model.CpModel()
    rules = problem.rules
    shifts = candidate_shifts(problem)
    chosen_vars = [model.new_bool_var(f"z{n}") for n in range(len(shifts))]
    at_post: dict[tuple[str, int], list[cp_model.IntVar]] = defaultdict(list)
    trained_at_post: dict[tuple[str, int], list[cp_model.IntVar]] = defaultdict(list)
    by_person: dict[str, list[tuple[Shift, cp_model.IntVar]]] = defaultdict(list)
    trained = {person.id for person in problem.people if person.trained}
    for shift, var in zip(shifts, chosen_vars, strict=True):
        by_person[shift.person].append((shift, var))
        for hour in shift.covers:
            at_post[shift.post, hour].append(var)
            if shift.person in trained:
                trained_at_post[shift.post, hour].append(var)

    people = {person.id: person for person in problem.people}
    period_vars: dict[tuple[str, str, int], cp_model.IntVar] = {}
    short_vars: dict[tuple[str, int], cp_model.IntVar] = {}
    untrained_vars: dict[tuple[str, int], cp_model.IntVar] = {}
    for person_id, options in by_person.items():
        person = people[person_id]
        # On duty at most once an hour; after a shift ends, no shift starts within the rest.
        covering: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        starting: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        ending: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        per_day: dict[int, list[cp_model.LinearExprT]] = defaultdict(list)
        periods: dict[tuple[str, int], cp_model.IntVar] = {}
        at_post_hour: dict[tuple[str, int], list[cp_model.IntVar]] = defaultdict(list)
        week: list[cp_model.LinearExprT] = []
        for shift, var in options:
            starting[shift.start].append(var)
            ending[shift.start + shift.hours - 1].append(var)
            for hour in shift.covers:
                covering[hour].append(var)
                per_day[problem.day_of(hour)].append(var)
            week.append(shift.hours * var)
            for hour in shift.covers:
                at_post_hour[shift.post, hour].append(var)
        for overlapping in covering.values():
            if len(overlapping) > 1:
                model.add_at_most_one(overlapping)
        if len({post for post, _ in at_post_hour}) > 1:
            # Rotation: one post per period.  Bounding each hour's shifts at a post by that
            # post's period choice (not each shift by it) keeps the linear relaxation tight.
            for (post, hour), here in at_post_hour.items():
                key = (post, problem.rotation_of(hour))
                if key not in periods:
                    periods[key] = model.new_bool_var(f"y[{person_id},{post},{key[1]}]")
                    period_vars[person_id, post, key[1]] = periods[key]
                model.add(sum(here) <= periods[key])
        for end, finished in ending.items():
            soon = [v for h in range(end + 1, end + 1 + rules.min_rest_hours) for v in starting.get(h, [])]
            if soon:
                model.add(sum(finished) + sum(soon) <= 1)
        for day_terms in per_day.values():
            model.add(sum(day_terms) <= problem.max_day(person))
        model.add(sum(week) <= problem.max_week(person))
        by_period: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        for (_, period), var in periods.items():
            by_period[period].append(var)
        for choices in by_period.values():
            if len(choices) > 1:
                model.add_at_most_one(choices)

    short_terms = []
    untrained_terms = []
    for post in problem.posts:
        for hour in range(problem.hours):
            want = problem.demand[post][hour]
            if want <= 0:
                continue
            short = model.new_int_var(0, want, f"short[{post},{hour}]")
            short_vars[post, hour] = short
            model.add(sum(at_post.get((post, hour), [])) + short >= want)
            short_terms.append(short)
            if rules.trained_every_hour:
                none = model.new_bool_var(f"untrained[{post},{hour}]")
                untrained_vars[post, hour] = none
                model.add(sum(trained_at_post.get((post, hour), [])) + none >= 1)
                untrained_terms.append(none)

    # Phase 1: meet the advice as closely as the rules allow.  Extra hours are free here,
    # so the solver finds cover quickly and proves the least shortfall possible.
    missing = sum(short_terms) + sum(untrained_terms)
    model.minimize(missing)
    if hint is not None:
        _hint(model, problem, hint, shifts, chosen_vars, period_vars, short_vars, untrained_vars)
    deadline = started + time_limit_s
    first = _run(model, deadline - time.perf_counter(), 0.0, workers)
    if first.status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        # Out of time before any roster: the starting roster, if one was given, is still a
        # roster within the rules (the caller checks it); better than none.
        fallback: Assignment = hint or {}
        return RosterResult(
            fallback,
            tuple(shortfalls(problem, fallback)),
            "hint" if hint else "unknown",
            float("nan"),
            float("nan"),
            time.perf_counter() - started,
        )
    least_missing = round(first.objective_value)
    shortfall_proven = first.status == cp_model.OPTIMAL

    # Phase 2: with that shortfall held, stand no more hours and start no more shifts than needed.
    model.add(missing <= least_missing)
    model.clear_hints()
    for var in chosen_vars:
        model.add_hint(var, first.boolean_value(var))
    model.minimize(
        sum(shift.hours * var for shift, var in zip(shifts, chosen_vars, strict=True))
        + SHIFT_COST * sum(chosen_vars)
    )
    second = _run(model, max(0.5, deadline - time.perf_counter()), relative_gap, workers)
    solver = second if second.status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else first
    chosen: dict[tuple[str, str], set[int]] = defaultdict(set)
    for shift, var in zip(shifts, chosen_vars, strict=True):
        if solver.boolean_value(var):
            chosen[shift.person, shift.post].update(shift.covers)
    assignment = {key: frozenset(value) for key, value in chosen.items()}
    if solver is first:
        objective, bound = float("nan"), float("nan")
    else:
        objective, bound = second.objective_value, second.best_objective_bound
    within = solver is second and (
        second.status == cp_model.OPTIMAL or _gap(objective, bound) <= relative_gap
    )
    return RosterResult(
        assignment,
        tuple(shortfalls(problem, assignment)),
        "optimal" if shortfall_proven and within else "feasible",
        objective,
        bound,
        time.perf_counter() - started,
        shortfall_bound=round(first.best_objective_bound),
    )


def _hint(
    model: cp_model.CpModel,
    problem: Problem,
    hint: Assignment,
    shifts: list[Shift],
    chosen_vars: list[cp_model.IntVar],
    period_vars: dict[tuple[str, str, int], cp_model.IntVar],
    short_vars: dict[tuple[str, int], cp_model.IntVar],
    untrained_vars: dict[tuple[str, int], cp_model.IntVar],
) -> None:
    """Give the solver a whole roster to start from, every variable of it, so it need not repair it.

    A partial hint (shifts only) leaves CP-SAT to complete the rest, which on a week this
    size can take longer than the solve itself; the derived variables — each person's post
    per period, each hour's shortfall — follow from the roster, so they are hinted too.
    """
    hinted = {
        (person, post, start, end - start + 1)
        for (person, post), hours in hint.items()
        for start, end in runs(hours)
    }
    for shift, var in zip(shifts, chosen_vars, strict=True):
        model.add_hint(var, (shift.person, shift.post, shift.start, shift.hours) in hinted)
    trained = {person.id for person in problem.people if person.trained}
    stood: dict[tuple[str, int], int] = defaultdict(int)
    trained_stood: dict[tuple[str, int], int] = defaultdict(int)
    periods_held: set[tuple[str, str, int]] = set()
    for (person, post), hours in hint.items():
        for hour in hours:
            stood[post, hour] += 1
            trained_stood[post, hour] += person in trained
            periods_held.add((person, post, problem.rotation_of(hour)))
    for key, var in period_vars.items():
        model.add_hint(var, key in periods_held)
    for (post, hour), var in short_vars.items():
        model.add_hint(var, max(0, problem.demand[post][hour] - stood[post, hour]))
    for key, var in untrained_vars.items():
        model.add_hint(var, trained_stood[key] == 0)


def _gap(objective: float, bound: float) -> float:
    """NaN when there is no second-phase figure to compare (the solve stopped in phase 1)."""
    if math.isnan(objective) or math.isnan(bound):
        return math.nan
    return 0.0 if objective <= 0 else max(0.0, (objective - bound) / objective)


def _run(model: cp_model.CpModel, seconds: float, relative_gap: float, workers: int) -> _Solved:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.1, seconds)
    solver.parameters.relative_gap_limit = relative_gap
    solver.parameters.num_workers = workers
    solver.parameters.linearization_level = 2
    solver.parameters.log_search_progress = bool(os.environ.get("GATEPOST_ROSTER_LOG"))
    status = solver.solve(model)
    return _Solved(solver, status)


class _Solved:
    """A finished solve: its status and the solver that holds its values."""

    def __init__(self, solver: cp_model.CpSolver, status: int) -> None:
        self.solver = solver
        self.status = status
        self.objective_value = (
            solver.objective_value if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else 0.0
        )
        self.best_objective_bound = solver.best_objective_bound

    def boolean_value(self, var: cp_model.IntVar) -> bool:
        return bool(self.solver.boolean_value(var))
