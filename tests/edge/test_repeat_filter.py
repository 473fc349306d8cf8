"""The repeat filter: one presentation per credential per window, and nothing remembered longer."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.agent import RepeatFilter

WINDOW_NS = 2_500_000_000

presentations = st.lists(
    st.tuples(st.sampled_from([f"card-{i}" for i in range(12)]), st.integers(0, 2 * WINDOW_NS)),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(presentations)
def test_it_answers_as_the_plain_rule_and_remembers_only_the_window(steps: list[tuple[str, int]]):
    """Against the rule written plainly: a credential is fresh unless it was let through less
    than a window ago.  What it remembers after each step is exactly the credentials let
    through within the window: a filter that kept stale ones (it used to, until 4,096) grows
    on a busy reader for as long as the window is never crowded."""
    repeats = RepeatFilter(WINDOW_NS / 1e9)
    accepted: dict[str, int] = {}
    now = 0
    for credential, gap in steps:
        now += gap
        expected = credential not in accepted or now - accepted[credential] >= WINDOW_NS
        assert repeats.fresh(credential, now) is expected
        if expected:
            accepted[credential] = now
        assert len(repeats) == sum(1 for at in accepted.values() if now - at < WINDOW_NS)


def test_a_zero_window_lets_everything_through():
    repeats = RepeatFilter(0)
    assert all(repeats.fresh("card", 5) for _ in range(3))
    assert repeats.suppressed == 0


def test_thousands_of_credentials_in_one_window_are_all_remembered_then_forgotten():
    """A crowd inside one window is kept whole (each still a repeat), then goes at once."""
    repeats = RepeatFilter(WINDOW_NS / 1e9)
    for i in range(10_000):
        assert repeats.fresh(f"card-{i}", i)
    assert not repeats.fresh("card-0", 10_000)
    assert len(repeats) == 10_000
    assert repeats.fresh("late", 10_000 + WINDOW_NS)
    assert len(repeats) == 1
