"""The roster a careful person would draw by hand: hour by hour, filling each post from whoever is free.

It is the baseline ``bench/roster.py`` measures the solver against, and the solver's
starting point (a hint), so it keeps every hard rule — it is judged by the same
:func:`console.roster.check.violations` — but it never looks ahead: a guard put on
Monday night is not there for Tuesday's evening peak, whoever needed them more.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from console.roster.model import Assignment, Person, Problem


@dataclass(slots=True)
class _State:
    person: Person
    post_of_period: dict[int, str] = field(default_factory=dict)
    per_day: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    week: int = 0
    shift_start: int | None = None
    shift_post: str | None = None
    last_end: int | None = None
    """The last hour of the last finished shift."""


def roster(problem: Problem) -> Assignment:
    """Fill hour after hour: keep people on whose shift must go on, then add the most rested."""
    rules = problem.rules
    states = {person.id: _State(person) for person in problem.people}
    chosen: dict[tuple[str, str], set[int]] = defaultdict(set)
    lengths = rules.lengths()
    starts = set(rules.shift_starts)

    def can_run(state: _State, post: str, hour: int, hours: int) -> bool:
        """Could the person stand ``hours`` more hours from ``hour`` within their limits?"""
        if hour + hours > problem.hours:
            return False
        person = state.person
        if state.week + hours > problem.max_week(person):
            return False
        extra: dict[int, int] = defaultdict(int)
        for h in range(hour, hour + hours):
            day = problem.day_of(h)
            extra[day] += 1
            if state.per_day[day] + extra[day] > problem.max_day(person):
                return False
            if not problem.can_stand(person, post, h):
                return False
            if state.post_of_period.get(problem.rotation_of(h), post) != post:
                return False
        return True

    def can_start(state: _State, post: str, hour: int) -> bool:
        """A new shift must follow the rest, start at a pattern hour and be able to run its shortest length."""
        if state.last_end is not None and hour - state.last_end - 1 < rules.min_rest_hours:
            return False
        return hour % 24 in starts and can_run(state, post, hour, lengths[0])

    def work(state: _State, post: str, hour: int) -> None:
        if state.shift_start is None:
            state.shift_start, state.shift_post = hour, post
        state.post_of_period[problem.rotation_of(hour)] = post
        state.per_day[problem.day_of(hour)] += 1
        state.week += 1
        chosen[state.person.id, post].add(hour)

    def finish(state: _State, hour: int) -> None:
        state.last_end = hour - 1
        state.shift_start = state.shift_post = None

    for hour in range(problem.hours):
        staffed: dict[str, list[_State]] = defaultdict(list)
        on_shift = [s for s in states.values() if s.shift_start is not None]
        # Shifts between standard lengths must go on; at a standard length, on only if wanted.
        for state in on_shift:
            post = state.shift_post
            assert post is not None and state.shift_start is not None
            length = hour - state.shift_start
            if length not in lengths:  # between standard lengths: the start promised these hours
                staffed[post].append(state)
                work(state, post, hour)
                continue
            wanted = len(staffed[post]) < problem.demand[post][hour] or (
                state.person.trained and not any(s.person.trained for s in staffed[post])
            )
            longer = [n for n in lengths if n > length]
            if wanted and longer and can_run(state, post, hour, longer[0] - length):
                staffed[post].append(state)
                work(state, post, hour)
            else:
                finish(state, hour)
        for post in sorted(problem.posts, key=lambda p: -problem.demand[p][hour]):
            want = problem.demand[post][hour]
            free = [s for s in states.values() if s.shift_start is None and can_start(s, post, hour)]
            if not any(s.person.trained for s in staffed[post]) and want > 0:
                trained = [s for s in free if s.person.trained]
                if trained:
                    pick = min(trained, key=lambda s: s.week)
                    staffed[post].append(pick)
                    work(pick, post, hour)
                    free.remove(pick)
            # Volunteers and staff first: guards are saved for the hours only they can cover.
            free.sort(key=lambda s: (s.person.trained, s.week))
            while len(staffed[post]) < want and free:
                pick = free.pop(0)
                staffed[post].append(pick)
                work(pick, post, hour)
    return {key: frozenset(hours) for key, hours in chosen.items()}
