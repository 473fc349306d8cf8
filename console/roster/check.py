"""The one judge of a roster: which hard rule an assignment breaks, and where it falls short.

The solver builds its model from the same rules, but a model can be wrong and an operator
edits drafts by hand, so every roster — solved, greedy or edited — is checked here by
plain counting, independent of how it was made.  The property tests hold the solver to
this checker; the roster editor refuses a change the checker names.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise

from console.roster.model import Assignment, Person, Problem, Shortfall


class RuleBroken(StrEnum):
    """Why a roster is not allowed.  Stable strings: the editor shows them, the audit keeps them."""

    UNKNOWN_PERSON = "unknown_person"
    POST_NOT_ALLOWED = "post_not_allowed"
    NOT_AVAILABLE = "not_available"
    TWO_POSTS_AT_ONCE = "two_posts_at_once"
    HOURS_PER_DAY = "hours_per_day"
    HOURS_PER_WEEK = "hours_per_week"
    SHIFT_TOO_SHORT = "shift_too_short"
    SHIFT_TOO_LONG = "shift_too_long"
    REST_TOO_SHORT = "rest_too_short"
    ROTATION = "rotation"
    """Two posts within one rotation period."""


@dataclass(frozen=True, slots=True)
class Violation:
    rule: RuleBroken
    person: str
    detail: str
    hour: int | None = None


def shifts(hours: set[int] | frozenset[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive hours, as ``(first, last)`` inclusive, in order."""
    runs: list[tuple[int, int]] = []
    for hour in sorted(hours):
        if runs and hour == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], hour)
        else:
            runs.append((hour, hour))
    return runs


def violations(problem: Problem, assignment: Assignment) -> list[Violation]:
    """Every hard rule the assignment breaks; empty means the roster may be published."""
    people = {person.id: person for person in problem.people}
    found: list[Violation] = []
    worked: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for (person_id, post), hours in assignment.items():
        person = people.get(person_id)
        if person is None:
            found.append(Violation(RuleBroken.UNKNOWN_PERSON, person_id, f"no such person at {post}"))
            continue
        if post not in person.posts:
            found.append(Violation(RuleBroken.POST_NOT_ALLOWED, person_id, f"may not stand at {post}"))
        for hour in sorted(hours):
            if hour not in person.available:
                found.append(Violation(RuleBroken.NOT_AVAILABLE, person_id, f"not available at {post}", hour))
            worked[person_id][hour].append(post)
    for person_id, by_hour in worked.items():
        found.extend(_person_violations(problem, people[person_id], by_hour))
    return found


def _person_violations(
    problem: Problem, person: Person, by_hour: dict[int, list[str]]
) -> Iterator[Violation]:
    rules = problem.rules
    for hour, posts in sorted(by_hour.items()):
        if len(posts) > 1:
            yield Violation(RuleBroken.TWO_POSTS_AT_ONCE, person.id, ", ".join(sorted(posts)), hour)
    per_day: dict[int, int] = defaultdict(int)
    posts_in_period: dict[int, set[str]] = defaultdict(set)
    for hour, posts in by_hour.items():
        per_day[problem.day_of(hour)] += 1
        posts_in_period[problem.rotation_of(hour)].update(posts)
    for day, count in sorted(per_day.items()):
        if count > problem.max_day(person):
            yield Violation(RuleBroken.HOURS_PER_DAY, person.id, f"{count} h on day {day}", day * 24)
    total = len(by_hour)
    if total > problem.max_week(person):
        yield Violation(RuleBroken.HOURS_PER_WEEK, person.id, f"{total} h in the week")
    for period, posts in sorted(posts_in_period.items()):
        if len(posts) > 1:
            yield Violation(RuleBroken.ROTATION, person.id, f"{', '.join(sorted(posts))} in period {period}")
    runs = shifts(set(by_hour))
    for first, last in runs:
        length = last - first + 1
        if length < rules.min_shift_hours:
            yield Violation(RuleBroken.SHIFT_TOO_SHORT, person.id, f"{length} h shift", first)
        if length > rules.max_shift_hours:
            yield Violation(RuleBroken.SHIFT_TOO_LONG, person.id, f"{length} h shift", first)
    for (_, end), (start, _) in pairwise(runs):
        rest = start - end - 1
        if rest < rules.min_rest_hours:
            yield Violation(RuleBroken.REST_TOO_SHORT, person.id, f"{rest} h rest", start)


def shortfalls(problem: Problem, assignment: Assignment) -> list[Shortfall]:
    """Hours at posts below the advice, or with no trained person: what the roster could not meet."""
    people = {person.id: person for person in problem.people}
    staffed: dict[tuple[str, int], int] = defaultdict(int)
    trained: dict[tuple[str, int], int] = defaultdict(int)
    for (person_id, post), hours in assignment.items():
        person = people.get(person_id)
        for hour in hours:
            staffed[post, hour] += 1
            if person is not None and person.trained:
                trained[post, hour] += 1
    found = []
    for post in problem.posts:
        for hour in range(problem.hours):
            want = problem.demand[post][hour]
            missing = max(0, want - staffed[post, hour])
            no_trained = problem.rules.trained_every_hour and want > 0 and trained[post, hour] == 0
            if missing or no_trained:
                found.append(Shortfall(post, hour, missing, no_trained))
    return found


def shortfall_hours(problem: Problem, assignment: Assignment) -> int:
    """Person-hours below the advice, summed over posts and hours."""
    return sum(s.missing for s in shortfalls(problem, assignment))
