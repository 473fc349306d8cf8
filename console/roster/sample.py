"""A synthetic compound's people and a week of staffing advice, for tests and `bench/roster.py`.

Shaped after the source article's compounds: seven duty posts; guards who can stand any
of several posts at any hour; property staff on weekday office hours; and over a hundred
volunteers who offer evenings and weekends and a few hours a week.  Demand follows the
advice's shape: one person at every post through the night, more by day, and one or two
more at the morning and evening peaks (18:00–19:30 in the article).
"""

from __future__ import annotations

import random

from console.roster.model import Person, Problem, Rules, Team

SHIFT_PATTERN = Rules(shift_lengths=(2, 4, 8), shift_starts=(0, 6, 8, 14, 16, 17, 18, 22))
"""The compound's shifts: guards' three eights (06:00, 14:00, 22:00) and short shifts for the peaks."""

POSTS = ("north", "south", "east", "west", "garage", "school", "market")


def week_demand(posts: tuple[str, ...] = POSTS, *, seed: int = 0) -> dict[str, list[int]]:
    """People wanted per post and hour: the main gates 1 at night, the others closed 23:00–06:00; peaks 3–4."""
    rng = random.Random(seed)
    demand: dict[str, list[int]] = {}
    for index, post in enumerate(posts):
        busy = 1 if index < 3 else 0  # the main gates carry most of the flow
        hours = []
        for hour in range(168):
            day, clock = divmod(hour, 24)
            weekend = day >= 5
            if clock < 6 or clock >= 23:
                want = 1 if index < 2 else 0  # the two main gates stay open all night
            elif (clock in (7, 8) and not weekend) or clock in (18, 19):
                want = 2 + busy + (1 if rng.random() < 0.3 else 0)
            else:
                want = 1 + busy
            hours.append(want)
        demand[post] = hours
    return demand


def compound_people(
    posts: tuple[str, ...] = POSTS, *, guards: int = 30, staff: int = 10, volunteers: int = 80, seed: int = 0
) -> tuple[Person, ...]:
    """Guards (trained, any hour), staff (weekday office hours), volunteers (evenings, weekends)."""
    rng = random.Random(seed)
    people: list[Person] = []
    every_hour = frozenset(range(168))
    for n in range(guards):
        allowed = frozenset(rng.sample(posts, 3))
        people.append(Person(f"g{n:03d}", f"Guard {n}", Team.GUARD, allowed, every_hour, trained=True))
    office = frozenset(d * 24 + h for d in range(5) for h in range(8, 18))
    for n in range(staff):
        allowed = frozenset(rng.sample(posts, 2))
        people.append(Person(f"s{n:03d}", f"Staff {n}", Team.STAFF, allowed, office, max_hours_week=40))
    for n in range(volunteers):
        allowed = frozenset(rng.sample(posts, 2))
        offered = set()
        for day in rng.sample(range(7), 3):
            first = rng.choice((8, 13, 17)) if day >= 5 else 17
            offered.update(day * 24 + h for h in range(first, first + 5))
        people.append(
            Person(
                f"v{n:03d}",
                f"Volunteer {n}",
                Team.VOLUNTEER,
                allowed,
                frozenset(offered),
                max_hours_day=5,
                max_hours_week=12,
            )
        )
    return tuple(people)


def compound_week(*, seed: int = 0, posts: tuple[str, ...] = POSTS, people: int = 120) -> Problem:
    """The benchmark's week: 7 posts x 168 hours x ``people`` people (a third of them guards)."""
    guards = people // 3
    staff = people // 12
    return Problem(
        posts=posts,
        people=compound_people(
            posts, guards=guards, staff=staff, volunteers=people - guards - staff, seed=seed
        ),
        demand=week_demand(posts, seed=seed),
        rules=SHIFT_PATTERN,
    )
