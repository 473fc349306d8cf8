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
no trained person), then, holding that, the fewest hours stood and shifts started.  Where
the rules cannot meet the advice, the result says which hours fall short and by how much
instead of failing.  A time limit bounds every solve; the result carries the solver's
proven bound, so "within 1 % of the best roster possible" is a figure, not a hope.

What makes a week of 120 people prove its least shortfall in seconds (``docs/BENCHMARKS.md``
keeps the table of what was tried and what each gave):

* **Whole shifts, and only the useful ones.**  The variables are candidate shifts
  (:func:`candidate_shifts`); a shift whose first or last hours the post does not need is
  dropped when a shorter standard shift inside it covers every needed hour (it keeps every
  rule the longer one keeps, with fewer hours), and a shift over hours the post never needs
  is dropped outright.  Neither removes a best roster.
* **Rest as cliques.**  Two shifts of one person clash exactly when the second starts
  before the first's end plus the rest, so the clashes form an interval graph and one
  at-most-one per shift start covers them all — the tightest linear form of the rule, and
  far fewer constraints than one per hour plus one per shift end.
* **Satisfaction first.**  A roster short by no more than the floor (the hours nobody could
  stand, counted) is asked for as a hard constraint; its first roster proves the least
  shortfall, and the same solve goes on to the fewest hours.  The weighted least-shortfall
  search (:func:`_least_shortfall`) runs only when the floor cannot be met.
* **The right workers.**  As many as cores, with the reduced-costs LP worker leading: the
  one that proves the bound on the hours on this model.
* **Polish post by post beside the solve** (:class:`_PostPolish`).  The bound was never the
  problem: on the bench week the relaxation's 2318 is the best roster's cost (CP-SAT found
  one of 2318 after 11-12 s in two long runs), and it equals the sum of each post's own
  cheapest covering with no people at all.  What the portfolio lacked was rosters: its LNS
  stalled near 2370 (3 %) at 10 s.  From the first roster on, a second thread frees one
  post's shifts at a time with the rest of the roster fixed, a small model CP-SAT solves to
  optimality in tenths of a second; one round of the seven posts brings a first roster of
  2476-2600 within 1 % of the bound, while the solve goes on proving it.  The better roster
  of the two is returned.

CP-SAT's model API: https://developers.google.com/optimization/reference/python/sat/python/cp_model
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from ortools.sat.python import cp_model

from console.roster.check import shifts as runs
from console.roster.check import shortfalls
from console.roster.model import HOURS_PER_DAY, Assignment, Problem, Shortfall

log = logging.getLogger(__name__)

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
    """Hours stood plus the cost of shifts started, at the least shortfall (the second objective)."""
    bound: float
    """The solver's proven lower bound on ``objective`` among rosters of the least shortfall."""
    seconds: float
    shortfall_bound: int = 0
    """Proven: no roster within the rules falls short by fewer person-hours (and untrained hours)."""
    shortfall_proven_s: float = math.nan
    """Seconds from the start until a roster of the least shortfall was in hand and proven so."""

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

    @property
    def last(self) -> int:
        return self.start + self.hours - 1


def candidate_shifts(problem: Problem, *, prune: bool = True) -> list[Shift]:
    """Every shift worth choosing: allowed post, every hour offered, a standard length and start.

    A shift is left out when it cannot be in a best roster: when the post needs nobody in
    any of its hours, or when a shorter standard shift of the same person at the same post,
    lying inside it, covers every hour of it the post needs.  Swapping the longer for the
    shorter keeps every rule (its hours, days, rest and rotation periods are a subset) and
    meets the same demand with fewer hours, so some best roster uses only the shifts kept.
    ``prune=False`` keeps them all (the tests compare the two).
    """
    found = []
    lengths = problem.rules.lengths()
    starts = set(problem.rules.shift_starts)
    needed = {post: [want > 0 for want in problem.demand[post]] for post in problem.demand}
    for person in problem.people:
        posts = sorted(post for post in person.posts if post in problem.demand)
        offered = person.available
        cap = problem.max_day(person)
        standard: set[tuple[int, int]] = set()
        for start in range(problem.hours):
            if start % HOURS_PER_DAY not in starts:
                continue
            # The day limit holds each day's hours, not the shift's: a shift over midnight
            # counts its hours on each side (a cap of 1 allows 23:00-01:00; the checker does).
            before_midnight = HOURS_PER_DAY - start % HOURS_PER_DAY
            for hours in lengths:
                on_one_day = max(min(hours, before_midnight), hours - before_midnight)
                if start + hours > problem.hours or on_one_day > cap:
                    break
                if all(hour in offered for hour in range(start, start + hours)):
                    standard.add((start, hours))
        for post in posts:
            need = needed[post]
            for start, hours in sorted(standard):
                wanted = [hour for hour in range(start, start + hours) if need[hour]]
                if not prune:
                    found.append(Shift(person.id, post, start, hours))
                    continue
                if not wanted:
                    continue
                first, last = wanted[0], wanted[-1]
                if any(
                    (inner, length) in standard
                    for inner in range(start, first + 1)
                    for length in lengths
                    if length < hours and last < inner + length <= start + hours
                ):
                    continue
                found.append(Shift(person.id, post, start, hours))
    return found


def solve(
    problem: Problem,
    *,
    time_limit_s: float = 10.0,
    relative_gap: float = 0.01,
    workers: int | None = None,
    hint: Assignment | None = None,
    prune: bool = True,
) -> RosterResult:
    """The best roster the solver proves within ``relative_gap`` of optimal, or finds in the time limit.

    ``workers`` defaults to the machine's cores (at most 8): CP-SAT's portfolio with more
    workers than cores only time-slices them, and on a 2-core machine 8 workers spent most
    of a 10 s limit before any of them had searched.  ``prune=False`` offers every candidate
    shift (:func:`candidate_shifts`): the same best roster, a larger model.
    """
    started = time.perf_counter()
    deadline = started + time_limit_s
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    built = _Built(problem, prune=prune)
    floor = built.shortfall_floor
    # First: a roster short by no more than the floor (the hours nobody could cover at all),
    # the fewest hours among them.  Its first roster proves the least shortfall outright, and
    # as a satisfaction problem CP-SAT finds one in ~2 CPU-seconds on the bench week, where
    # minimising the shortfall from the greedy roster took tens.  If none is found in 70 %
    # of the time (or there is none), the weighted search below finds the least shortfall.
    at_floor = built.model
    floor_rule = at_floor.add(built.missing <= floor)
    at_floor.minimize(built.hours)
    if hint is not None:
        built.hint(hint)
    first_roster_by = started + 0.7 * time_limit_s
    solved = _run(
        at_floor,
        deadline - time.perf_counter(),
        workers,
        relative_gap=relative_gap,
        give_up_at=first_roster_by,
        polish=built,
    )
    hours_bound = solved.best_objective_bound
    shortfall_bound = floor
    proven_at = solved.first_roster  # the first roster at the floor proves the least shortfall
    if solved.status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        if solved.status == cp_model.INFEASIBLE:
            shortfall_bound = floor + 1
        # The same model without the floor (emptied, not rebuilt: under load a rebuild cost
        # seconds of the limit) and with the weighted objective again.
        floor_rule.proto.clear_linear()
        built.model.minimize(built.weighted)
        built.model.clear_hints()
        built.shortfall_floor = shortfall_bound
        if hint is not None:
            built.hint(hint)
        solved, shortfall_bound, hours_bound, proven_at = _least_shortfall(
            built, deadline, workers, relative_gap
        )
    if solved.status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
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
    chosen: dict[tuple[str, str], set[int]] = defaultdict(set)
    hours_objective = 0
    for shift, var in zip(built.shifts, built.chosen, strict=True):
        if solved.boolean_value(var):
            chosen[shift.person, shift.post].update(shift.covers)
            hours_objective += shift.hours + SHIFT_COST
    assignment = {key: frozenset(value) for key, value in chosen.items()}
    found = tuple(shortfalls(problem, assignment))
    least = sum(s.missing for s in found) + sum(1 for s in found if s.trained_missing)
    shortfall_proven = shortfall_bound >= least
    if not shortfall_proven:
        hours_bound = math.nan
    within = shortfall_proven and (
        solved.status == cp_model.OPTIMAL or _gap(hours_objective, hours_bound) <= relative_gap
    )
    return RosterResult(
        assignment,
        found,
        "optimal" if within else "feasible",
        float(hours_objective),
        hours_bound,
        time.perf_counter() - started,
        shortfall_bound=min(shortfall_bound, least),
        shortfall_proven_s=proven_at - started if shortfall_proven else math.nan,
    )


def _least_shortfall(
    built: _Built, deadline: float, workers: int, relative_gap: float
) -> tuple[_Solved, int, float, float]:
    """When the floor cannot be met (or not found in time): the least shortfall, then the fewest hours.

    Phase 1 minimises the weighted sum, stopping as soon as the shortfall is proven (the
    core-based worker meets the heavy terms first); phase 2 holds that shortfall and
    minimises the hours from phase 1's roster.  Returns the solve, the proven shortfall
    bound, the bound on the hours among rosters of that shortfall (NaN if not proven) and
    when phase 1 ended (the least shortfall in hand).
    """
    model = built.model
    first = _run(model, deadline - time.perf_counter(), workers, stop=_proven_shortfall(built), core=True)
    if first.status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return first, built.shortfall_floor, math.nan, math.nan
    phase_1_ended = time.perf_counter()
    least = built.missing_of(first)
    shortfall_bound = max(built.shortfall_floor, _shortfall_bound(first.best_objective_bound, built.weight))
    hours_bound = first.best_objective_bound - built.weight * least if shortfall_bound >= least else math.nan
    if time.perf_counter() >= deadline - 0.5 or first.status == cp_model.OPTIMAL:
        return first, shortfall_bound, hours_bound, phase_1_ended
    model.add(built.missing <= least)
    model.clear_hints()
    for var in built.chosen:
        model.add_hint(var, first.boolean_value(var))
    model.minimize(built.hours)
    second = _run(model, deadline - time.perf_counter(), workers, relative_gap=relative_gap, polish=built)
    if second.status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return first, shortfall_bound, hours_bound, phase_1_ended
    return second, shortfall_bound, max(hours_bound, second.best_objective_bound), phase_1_ended


def lp_bound(problem: Problem, shortfall: int, *, time_limit_s: float = 60.0) -> float:
    """The linear relaxation's bound on the hours objective among rosters of ``shortfall``, by HiGHS.

    A reference for ``bench/roster.py``, not part of :func:`solve`: on the benchmark week
    the relaxation is far stronger than the bound CP-SAT's own LP reaches in seconds, but
    HiGHS needs 5-7 CPU-seconds for it, so it cannot certify a roster within the 10 s
    target.  Every roster of that shortfall stands at least this many hours (plus shift
    costs); NaN when HiGHS did not finish.  HiGHS ships inside OR-Tools (``pywraplp``):
    https://developers.google.com/optimization/lp/lp_example
    """
    from ortools.linear_solver import pywraplp

    built = _Built(problem)
    built.model.add(built.missing <= shortfall)
    built.model.minimize(built.hours)
    proto = built.model.proto
    if not proto.objective.vars:  # nothing to stand: no shift can help any post
        return 0.0
    lp = pywraplp.Solver.CreateSolver("HIGHS")
    if lp is None:
        return math.nan
    infinity = lp.infinity()

    def limit(value: int) -> float:
        return -infinity if value <= -(2**62) else infinity if value >= 2**62 else float(value)

    def column(literal: int) -> pywraplp.Variable:
        if literal < 0:  # the model writes no negated literal; relaxing one would need 1 - x
            raise TypeError("lp_bound cannot relax a negated literal")
        return columns[literal]

    columns = []
    for variable in proto.variables:
        domain = list(variable.domain)
        columns.append(lp.NumVar(limit(domain[0]), limit(domain[-1]), ""))
    for constraint in proto.constraints:
        if constraint.has_at_most_one():
            row = lp.Constraint(-infinity, 1)
            for literal in constraint.at_most_one.literals:
                row.SetCoefficient(column(literal), 1)
        elif constraint.has_bool_or():
            row = lp.Constraint(1, infinity)
            for literal in constraint.bool_or.literals:
                row.SetCoefficient(column(literal), 1)
        elif constraint.has_linear():
            domain = list(constraint.linear.domain)
            row = lp.Constraint(limit(domain[0]), limit(domain[-1]))
            for index, coefficient in zip(constraint.linear.vars, constraint.linear.coeffs, strict=True):
                row.SetCoefficient(column(index), coefficient)
        else:  # the model uses no other kind; a new one must be added here, not skipped
            raise TypeError(f"lp_bound cannot relax constraint {constraint}")
    objective = lp.Objective()
    for index, coefficient in zip(proto.objective.vars, proto.objective.coeffs, strict=True):
        objective.SetCoefficient(column(index), coefficient)
    objective.SetMinimization()
    lp.SetTimeLimit(int(time_limit_s * 1000))
    if lp.Solve() != pywraplp.Solver.OPTIMAL:
        return math.nan
    return objective.Value() + proto.objective.offset


def _shortfall_bound(bound: float, weight: int) -> int:
    """The least shortfall a bound on ``weight * missing + hours`` proves (0 <= hours < weight)."""
    if math.isnan(bound) or bound <= 0:
        return 0
    return math.floor(bound / weight + 1e-9)


def _proven_shortfall(built: _Built) -> Callable[[float, float], bool]:
    """Phase 1's stop: the best roster's shortfall meets what the bound proves (or the floor)."""

    def done(objective: float, bound: float) -> bool:
        missing = math.floor(objective / built.weight + 1e-9)
        return missing <= max(built.shortfall_floor, _shortfall_bound(bound, built.weight))

    return done


class _Built:
    """The CP-SAT model of one week: the shifts it may choose and the variables a hint needs."""

    def __init__(self, problem: Problem, *, prune: bool = True) -> None:
        self.problem = problem
        self.model = model = cp_model.CpModel()
        rules = problem.rules
        self.shifts = shifts = candidate_shifts(problem, prune=prune)
        self.chosen = chosen_vars = [model.new_bool_var(f"z{n}") for n in range(len(shifts))]
        at_post: dict[tuple[str, int], list[cp_model.IntVar]] = defaultdict(list)
        trained_at_post: dict[tuple[str, int], list[cp_model.IntVar]] = defaultdict(list)
        by_person: dict[str, list[tuple[Shift, cp_model.IntVar]]] = defaultdict(list)
        trained = {person.id for person in problem.people if person.trained}
        for shift, var in zip(shifts, chosen_vars, strict=True):
            by_person[shift.person].append((shift, var))
            for hour in shift.covers:
                if problem.demand[shift.post][hour] > 0:
                    at_post[shift.post, hour].append(var)
                    if shift.person in trained:
                        trained_at_post[shift.post, hour].append(var)

        people = {person.id: person for person in problem.people}
        self.periods: dict[tuple[str, str, int], cp_model.IntVar] = {}
        hours_terms: list[cp_model.IntVar] = []
        hours_weights: list[int] = []
        most_hours = 0
        for person_id, options in by_person.items():
            person = people[person_id]
            week = min(problem.max_week(person), len(person.available))
            most_hours += week + SHIFT_COST * (week // min(s.hours for s, _ in options))
            self._person(person_id, options, rules.min_rest_hours)
            per_day: dict[int, list[tuple[cp_model.IntVar, int]]] = defaultdict(list)
            for shift, var in options:
                days: dict[int, int] = defaultdict(int)
                for hour in shift.covers:
                    days[problem.day_of(hour)] += 1
                for day, count in days.items():
                    per_day[day].append((var, count))
                hours_terms.append(var)
                hours_weights.append(shift.hours + SHIFT_COST)
            limit = problem.max_day(person)
            for day, terms in per_day.items():
                offered = sum(1 for h in person.available if problem.day_of(h) == day)
                if offered > limit:  # otherwise the day cannot exceed it
                    model.add(
                        cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [c for _, c in terms])
                        <= limit
                    )
            if len(person.available) > problem.max_week(person):
                model.add(
                    cp_model.LinearExpr.weighted_sum([v for _, v in options], [s.hours for s, _ in options])
                    <= problem.max_week(person)
                )

        self.short: dict[tuple[str, int], cp_model.IntVar] = {}
        self.untrained: dict[tuple[str, int], cp_model.IntVar] = {}
        floor = 0
        for post in problem.posts:
            for hour in range(problem.hours):
                want = problem.demand[post][hour]
                if want <= 0:
                    continue
                standing = at_post.get((post, hour), [])
                short = model.new_int_var(max(0, want - len(standing)), want, f"short[{post},{hour}]")
                floor += max(0, want - len(standing))
                self.short[post, hour] = short
                model.add(cp_model.LinearExpr.sum(standing) + short >= want)
                if rules.trained_every_hour:
                    guards = trained_at_post.get((post, hour), [])
                    none = model.new_bool_var(f"untrained[{post},{hour}]")
                    self.untrained[post, hour] = none
                    if guards:
                        model.add_bool_or([*guards, none])
                    else:
                        model.add(none == 1)
                        floor += 1
        self.shortfall_floor = floor
        """Shortfall no roster can avoid: more wanted than anyone could stand (counted, not solved)."""
        # Lexicographic by weight: any difference in shortfall outweighs every hours figure.
        self.weight = weight = most_hours + 1
        missing = [*self.short.values(), *self.untrained.values()]
        self.missing = cp_model.LinearExpr.sum(missing)
        self.hours = cp_model.LinearExpr.weighted_sum(hours_terms, hours_weights)
        self.weighted = cp_model.LinearExpr.weighted_sum(
            [*missing, *hours_terms], [weight] * len(missing) + hours_weights
        )
        model.minimize(self.weighted)

    def missing_of(self, solved: _Solved) -> int:
        """Person-hours short plus hours with no trained person, of a solved roster (counted)."""
        assignment: dict[tuple[str, str], set[int]] = defaultdict(set)
        for shift, var in zip(self.shifts, self.chosen, strict=True):
            if solved.boolean_value(var):
                assignment[shift.person, shift.post].update(shift.covers)
        found = shortfalls(self.problem, {key: frozenset(v) for key, v in assignment.items()})
        return sum(s.missing for s in found) + sum(1 for s in found if s.trained_missing)

    def _person(self, person_id: str, options: list[tuple[Shift, cp_model.IntVar]], rest: int) -> None:
        """No two shifts of a person closer than the rest, and one post per rotation period.

        Shift ``a`` and a later-starting ``b`` clash when ``b`` starts no later than ``a``'s
        last hour plus the rest (overlap included).  Stretching each shift by the rest makes
        the clashes an interval graph, whose maximal cliques sit at the shifts' starts: one
        at-most-one per distinct start says it all.  Rotation: within a clique at most one
        shift is chosen, so the shifts at one post touching one period sum to at most that
        post's period choice — the same rule as one implication per shift, tighter in the LP.
        """
        problem = self.problem
        model = self.model
        # (start, reach, variable, [(post, period) it binds]) sorted by start; reach is the
        # last hour plus the rest, so shift a clashes with any later b starting <= a's reach.
        spans = [
            (
                shift.start,
                shift.last + rest,
                var,
                [
                    (shift.post, p)
                    for p in {problem.rotation_of(shift.start), problem.rotation_of(shift.last)}
                ],
            )
            for shift, var in options
        ]
        spans.sort(key=lambda span: (span[0], span[1]))
        periods: dict[tuple[str, int], cp_model.IntVar] = {}
        if len({shift.post for shift, _ in options}) > 1:
            for *_, binds in spans:
                for key in binds:
                    if key not in periods:
                        periods[key] = var = model.new_bool_var(f"y[{person_id},{key[0]},{key[1]}]")
                        self.periods[person_id, *key] = var
            by_period: dict[int, list[cp_model.IntVar]] = defaultdict(list)
            for (_, period), var in periods.items():
                by_period[period].append(var)
            for choices in by_period.values():
                model.add_at_most_one(choices)
        starts = [start for start, *_ in spans]
        widest = max(reach - start for start, reach, *_ in spans)
        for point in sorted(set(starts)):
            # Only shifts starting within ``widest`` hours before the point can reach it.
            window = spans[bisect_left(starts, point - widest) : bisect_right(starts, point)]
            clique = [(var, binds) for _, reach, var, binds in window if reach >= point]
            if len(clique) > 1:
                model.add_at_most_one([var for var, _ in clique])
            if periods:
                linked: dict[tuple[str, int], list[cp_model.IntVar]] = defaultdict(list)
                for var, binds in clique:
                    for key in binds:
                        linked[key].append(var)
                for key, here in linked.items():
                    model.add(cp_model.LinearExpr.sum(here) <= periods[key])

    def hint(self, hint: Assignment) -> None:
        """Give the solver a whole roster to start from, every variable of it, so it need not repair it.

        A partial hint (shifts only) leaves CP-SAT to complete the rest, which on a week this
        size can take longer than the solve itself; the derived variables — each person's post
        per period, each hour's shortfall — follow from the roster, so they are hinted too.  A
        hinted shift the model left out (a shorter one inside it covers its needed hours) is
        hinted as that shorter shift: the roster stays within the rules and meets the same need.
        """
        problem = self.problem
        model = self.model
        index = {
            (shift.person, shift.post, shift.start, shift.hours): n for n, shift in enumerate(self.shifts)
        }
        lengths = problem.rules.lengths()
        picked: set[int] = set()
        for (person, post), hours in hint.items():
            for start, end in runs(hours):
                wanted = [h for h in range(start, end + 1) if problem.demand[post][h] > 0]
                key = (person, post, start, end - start + 1)
                if key in index:
                    picked.add(index[key])
                elif wanted:
                    inner = [
                        index[person, post, s, n]
                        for s in range(start, wanted[0] + 1)
                        for n in lengths
                        if (person, post, s, n) in index and wanted[-1] < s + n <= end + 1
                    ]
                    if inner:
                        picked.add(inner[0])
        roster: dict[tuple[str, str], set[int]] = defaultdict(set)
        for n, var in enumerate(self.chosen):
            model.add_hint(var, n in picked)
            if n in picked:
                shift = self.shifts[n]
                roster[shift.person, shift.post].update(shift.covers)
        trained = {person.id for person in problem.people if person.trained}
        stood: dict[tuple[str, int], int] = defaultdict(int)
        trained_stood: dict[tuple[str, int], int] = defaultdict(int)
        periods_held: set[tuple[str, str, int]] = set()
        for (person, post), hours in roster.items():
            for hour in hours:
                stood[post, hour] += 1
                trained_stood[post, hour] += person in trained
                periods_held.add((person, post, problem.rotation_of(hour)))
        for key, var in self.periods.items():
            model.add_hint(var, key in periods_held)
        for (post, hour), var in self.short.items():
            model.add_hint(var, max(0, problem.demand[post][hour] - stood[post, hour]))
        for key, var in self.untrained.items():
            model.add_hint(var, trained_stood[key] == 0)


def _gap(objective: float, bound: float) -> float:
    """NaN when there is no figure to compare (no roster, or its shortfall not proven least)."""
    if math.isnan(objective) or math.isnan(bound):
        return math.nan
    return 0.0 if objective <= 0 else max(0.0, (objective - bound) / objective)


def _run(
    model: cp_model.CpModel,
    seconds: float,
    workers: int,
    *,
    relative_gap: float = 0.0,
    stop: Callable[[float, float], bool] | None = None,
    core: bool = False,
    give_up_at: float | None = None,
    polish: _Built | None = None,
) -> _Solved:
    """One bounded CP-SAT solve; ``stop`` ends it early, on a new roster or a better bound.

    Probing in presolve is off and presolve runs one round: on this model the repeated
    probing rounds took 3-7 s of a 10 s limit and changed nothing the search needed.  With
    ``core``, the core-based worker leads the portfolio (the weighted least-shortfall
    search); otherwise the reduced-costs LP worker does, for the bound on the hours.  One
    worker of the given number is left to CP-SAT's first-solution and LNS workers.
    ``give_up_at`` (a ``time.perf_counter()`` instant) stops the solve then if it has found
    no roster yet.

    With ``polish`` (the model minimising the hours), the solve runs in a thread of its own
    and, from its first roster on, :class:`_PostPolish` improves the roster post by post
    beside it; the solve goes on proving the bound, and both stop once the best roster of
    either is within ``relative_gap`` of it.
    """
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.max_time_in_seconds = max(0.1, seconds)
    params.relative_gap_limit = relative_gap
    params.num_workers = workers
    params.linearization_level = 2
    params.cp_model_probing_level = 0
    params.max_presolve_iterations = 1
    params.log_search_progress = bool(os.environ.get("GATEPOST_ROSTER_LOG"))
    if workers <= 4:
        # Few workers: choose them.  CP-SAT's small portfolios leave out the worker whose
        # LP proves the bound on this model (reduced_costs reached the relaxation's 2318 on
        # the bench week in under 4 CPU-seconds; with default_lp alone the bound stayed at
        # 1802, and a 3-guard day was never proven with 2 workers where it took 0.3 s).
        first = ["core", "default_lp"] if core else ["reduced_costs", "default_lp", "core"]
        params.subsolvers.extend(first[: max(1, workers - 1)])
    polisher = None
    if polish is not None and len(polish.problem.posts) > 1:
        # With one post its neighbourhood would be the whole model: the solve itself.
        polisher = _PostPolish(polish, model)
    best = [math.inf]
    bound_seen = [-math.inf]
    check = stop or (lambda objective, bound: False)
    began, cpu = time.perf_counter(), time.process_time()
    lock = threading.Lock()
    incumbent: list[list[bool]] = []  # the solve's best roster (values of built.chosen), for polish
    have_roster = threading.Event()

    def trace(what: str, objective: float, bound: float) -> None:
        """Progress for ``bench/roster.py --trace`` and the console's debug log: wall and CPU time apart."""
        log.debug(
            "roster %s at %.2f s (cpu %.2f s): objective %s bound %s",
            what,
            time.perf_counter() - began,
            time.process_time() - cpu,
            objective,
            bound,
        )

    def on_bound(bound: float) -> None:
        bound_seen[0] = max(bound_seen[0], bound)
        trace("bound", best[0], bound)
        if best[0] < math.inf and check(best[0], bound):
            solver.stop_search()

    first_roster = [math.nan]

    class OnRoster(cp_model.CpSolverSolutionCallback):
        def on_solution_callback(self) -> None:
            if best[0] == math.inf:
                first_roster[0] = time.perf_counter()
            best[0] = min(best[0], self.objective_value)
            bound_seen[0] = max(bound_seen[0], self.best_objective_bound)
            trace("roster", best[0], self.best_objective_bound)
            if polisher is not None and self.objective_value < polisher.objective:
                # One read of the solution, not a call per variable: 10 ms against 50 ms for
                # the bench week's 19,000 shifts, taken while every thread waits.
                solution = self.response_proto.solution
                values = [bool(solution[index]) for index in polisher.index]
                with lock:
                    incumbent[:] = [values]
                have_roster.set()
            if check(best[0], self.best_objective_bound):
                self.stop_search()

    solver.best_bound_callback = on_bound
    timer = None
    if give_up_at is not None:

        def give_up() -> None:
            if best[0] == math.inf:
                solver.stop_search()

        timer = threading.Timer(max(0.0, give_up_at - time.perf_counter()), give_up)
        timer.daemon = True
        timer.start()
    status_box: list[int] = []
    try:
        if polisher is None:
            status_box.append(solver.solve(model, OnRoster()))
        else:
            solving = threading.Thread(
                target=lambda: status_box.append(solver.solve(model, OnRoster())), daemon=True
            )
            solving.start()
            deadline = began + max(0.1, seconds)
            while solving.is_alive() and not have_roster.wait(0.02):
                pass
            while solving.is_alive() and time.perf_counter() < deadline - 0.05:
                with lock:
                    theirs = incumbent[0] if incumbent else None
                polisher.offer(theirs)
                if _gap(polisher.objective, bound_seen[0]) <= relative_gap:
                    break
                if polisher.step(deadline):
                    trace("polished roster", polisher.objective, bound_seen[0])
                    continue
                # Every post locally best: wait for a better roster from the solve, looking
                # at the gap again meanwhile, since the bound may rise with no new roster
                # (on the bench week without a hint: a polished 2318 at 2.3 s, the bound
                # 2318 only at 4.4 s, and the solve's rosters all dearer).
                have_roster.clear()
                have_roster.wait(0.05)
            solver.stop_search()
            solving.join()
    finally:
        if timer is not None:
            timer.cancel()
    solved = _Solved(solver, status_box[0] if status_box else cp_model.UNKNOWN, first_roster[0])
    theirs = solved.objective_value if solved.status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else math.inf
    if polisher is not None and polisher.values is not None and polisher.objective < theirs:
        solved.adopt(polisher.values, polisher.objective, polisher.chosen)
    return solved


class _PostPolish:
    """Large-neighbourhood search by post: every shift of one post free, all others as in the roster.

    Why by post: the hours objective is a sum over posts, and on the bench week the linear
    relaxation's bound (2318) is exactly the sum of each post's own best covering with no
    people at all — so the best roster is one where every post, given the shifts people
    stand elsewhere, meets the advice as cheaply as it can.  CP-SAT's own neighbourhoods
    (random, by constraint graph) rarely free one post's whole week together; one post with
    the rest fixed is a small model its LP solves to proven optimality in 0.1-0.4 s, and a
    round of the seven posts took a first roster of 2600 to the proven best 2318 where the
    portfolio took 11-17 s (docs/BENCHMARKS.md).  Each step solves one such neighbourhood
    on a copy of the model, the rest of it fixed through the variables' domains.
    """

    def __init__(self, built: _Built, model: cp_model.CpModel) -> None:
        self.model = model.clone()
        self.chosen = built.chosen
        self.index = [var.index for var in built.chosen]
        self.weights = [shift.hours + SHIFT_COST for shift in built.shifts]
        by_post: dict[str, list[int]] = defaultdict(list)
        for n, shift in enumerate(built.shifts):
            by_post[shift.post].append(n)
        self.posts = [by_post[post] for post in built.problem.posts if by_post[post]]
        self.values: list[bool] | None = None
        self.objective = math.inf
        self.settled: set[int] = set()
        """Posts whose neighbourhood was solved to optimality since the roster last changed."""
        self.turn = 0
        self.domain = [-1] * len(self.index)
        """What each shift's domain in the copy says now: -1 free, else the value it is fixed to."""

    def offer(self, values: list[bool] | None) -> None:
        """Take the solve's roster when it is better than the polished one."""
        if values is None:
            return
        objective = self._cost(values)
        if objective < self.objective:
            self.values, self.objective = list(values), objective
            self.settled.clear()

    def _cost(self, values: list[bool]) -> float:
        """Hours stood plus the cost of shifts started, counted from the shifts."""
        return float(sum(w for w, v in zip(self.weights, values, strict=True) if v))

    def step(self, deadline: float) -> bool:
        """Solve the next unsettled post's neighbourhood; False when every post is settled."""
        if self.values is None or len(self.settled) >= len(self.posts):
            return False
        while self.turn % len(self.posts) in self.settled:
            self.turn += 1
        post = self.turn % len(self.posts)
        self.turn += 1
        free = set(self.posts[post])
        model = self.model
        variables = model.proto.variables
        model.clear_hints()
        for n, value in enumerate(self.values):
            want = -1 if n in free else int(value)
            if want != self.domain[n]:  # only what changed: a pass over every domain took 0.1 s
                domain = variables[self.index[n]].domain
                domain[0], domain[1] = (0, 1) if want < 0 else (want, want)
                self.domain[n] = want
            if want < 0:
                model.add_hint(self.chosen[n], value)
        solver = cp_model.CpSolver()
        params = solver.parameters
        params.num_workers = 1
        params.max_time_in_seconds = max(0.05, min(2.0, deadline - time.perf_counter()))
        params.linearization_level = 2
        params.cp_model_probing_level = 0
        params.max_presolve_iterations = 1
        status = solver.solve(model)
        if status == cp_model.OPTIMAL:
            self.settled.add(post)
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) and solver.objective_value < self.objective:
            values = list(self.values)
            for n in free:
                values[n] = solver.boolean_value(self.chosen[n])
            self.values, self.objective = values, self._cost(values)
            self.settled = {post}
        return True


class _Solved:
    """A finished solve: its status and the solver that holds its values."""

    def __init__(self, solver: cp_model.CpSolver, status: int, first_roster: float = math.nan) -> None:
        self.solver = solver
        self.status = status
        self.first_roster = first_roster
        """When (``time.perf_counter()``) the solve found its first roster; NaN if none."""
        self.objective_value = (
            solver.objective_value if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else 0.0
        )
        self.best_objective_bound = solver.best_objective_bound
        self._adopted: dict[int, bool] | None = None

    def adopt(self, values: list[bool], objective: float, chosen: list[cp_model.IntVar]) -> None:
        """Answer with a better roster found beside the solve (its shifts; the rest follow from them)."""
        self._adopted = {var.index: value for var, value in zip(chosen, values, strict=True)}
        self.objective_value = objective
        self.status = cp_model.OPTIMAL if objective <= self.best_objective_bound else cp_model.FEASIBLE

    def boolean_value(self, var: cp_model.IntVar) -> bool:
        if self._adopted is not None:
            return self._adopted[var.index]
        return bool(self.solver.boolean_value(var))
