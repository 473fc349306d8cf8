"""The hours a person offers, written back in the words the CSV and the form read: a round trip."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from console.roster.people import format_availability, parse_availability


@settings(max_examples=300, deadline=None)
@given(st.frozensets(st.integers(min_value=0, max_value=167)))
def test_any_week_of_hours_reads_back_the_same(hours: frozenset[int]) -> None:
    assert parse_availability(format_availability(hours)) == hours


def test_the_words_are_what_a_person_would_type() -> None:
    assert format_availability(parse_availability("Mon-Fri 08-18; Sat 17-22")) == "Mon-Fri 08-18; Sat 17-22"
    assert format_availability(frozenset(range(168))) == "always"
    assert format_availability(frozenset()) == "never"
