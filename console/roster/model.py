"""What a week's roster is made of: people, posts, the rules, and the staffing it must meet.

The staffing advice (:mod:`console.flow`) says how many people each post needs in each
hour; this module holds that demand together with who can stand where and the rules a
roster must keep, so that the solver, the greedy baseline and the checker all read one
description of the problem and none of them can disagree about what a rule means.

Hours are counted from the start of the roster's week (hour 0 is Monday 00:00 local time
of the week being planned), so a week is ``range(168)`` and day ``d`` is hours
``24*d .. 24*d+23``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

HOURS_PER_DAY = 24


class Team(StrEnum):
    """Who a person is to the compound; only guards count as trained unless marked otherwise."""

    GUARD = "guard"
    VOLUNTEER = "volunteer"
    STAFF = "staff"


@dataclass(frozen=True, slots=True)
class Person:
    """Someone who can be rostered.  ``available`` is the set of week hours they offered."""

    id: str
    name: str
    team: Team
    posts: frozenset[str]
    """The posts this person may stand at."""
    available: frozenset[int]
    trained: bool = False
    """Trained to stand a post alone: every post needs one trained person every hour."""
    max_hours_day: int | None = None
    """Overrides the rules' limit for this person (a volunteer may offer fewer hours)."""
    max_hours_week: int | None = None
    phone: str = ""
    languages: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rules:
    """The hard rules of a roster.  Defaults follow the source article and common labour practice."""

    max_hours_day: int = 10
    max_hours_week: int = 48
    min_shift_hours: int = 2
    """A shift shorter than this is not worth the walk to the gate."""
    max_shift_hours: int = 8
    min_rest_hours: int = 8
    """Hours off between two shifts of the same person."""
    rotation_days: int = 5
    """A person stands at one post for a whole rotation period (five days in the article)."""
    rotation_offset_days: int = 0
    """Which day of the week (0 = Monday) a rotation period starts on, so periods carry across weeks."""
    trained_every_hour: bool = True
    shift_lengths: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
    """The shift lengths the solver may cut, each within ``min_shift_hours .. max_shift_hours``.

    Real rosters use a few standard lengths; offering every length makes the model larger
    without making rosters people want.
    """

    shift_starts: tuple[int, ...] = tuple(range(24))
    """The hours of the day a shift may start at: a compound's shift pattern (06:00, 14:00, 22:00 …)."""

    def __post_init__(self) -> None:
        if self.min_rest_hours < 1:
            raise ValueError(
                "min_rest_hours must be at least 1: two shifts with no rest between are one shift"
            )
        if not self.lengths():
            raise ValueError("no shift length lies within min_shift_hours .. max_shift_hours")

    def lengths(self) -> tuple[int, ...]:
        return tuple(
            n for n in sorted(set(self.shift_lengths)) if self.min_shift_hours <= n <= self.max_shift_hours
        )


@dataclass(frozen=True, slots=True)
class Problem:
    """One week to plan: ``demand[post][hour]`` people wanted at each post in each hour."""

    posts: tuple[str, ...]
    people: tuple[Person, ...]
    demand: Mapping[str, Sequence[int]]
    rules: Rules = field(default_factory=Rules)
    hours: int = 168

    def day_of(self, hour: int) -> int:
        return hour // HOURS_PER_DAY

    def rotation_of(self, hour: int) -> int:
        """The rotation period an hour falls in, counted from the week's first period."""
        return (self.day_of(hour) + self.rules.rotation_offset_days) // self.rules.rotation_days

    def max_day(self, person: Person) -> int:
        return min(self.rules.max_hours_day, person.max_hours_day or self.rules.max_hours_day)

    def max_week(self, person: Person) -> int:
        return min(self.rules.max_hours_week, person.max_hours_week or self.rules.max_hours_week)

    def can_stand(self, person: Person, post: str, hour: int) -> bool:
        return post in person.posts and hour in person.available


Assignment = Mapping[tuple[str, str], frozenset[int]]
"""``(person id, post) -> hours`` the person stands at that post."""


@dataclass(frozen=True, slots=True)
class Shortfall:
    """An hour at a post the roster leaves below the advice, or without a trained person."""

    post: str
    hour: int
    missing: int
    trained_missing: bool = False
