"""A broker outage is one alarm: the rule that holds gates' offline statuses (console/outage.py)."""

from __future__ import annotations

import pytest

from console.outage import OutageRule
from console.store import LinkKind, LinkState

pytestmark = pytest.mark.timeout(10)


def link(state: LinkKind, since: str) -> LinkState:
    return LinkState("console", state, since, since)


def test_an_offline_without_a_broker_outage_raises_after_the_hold():
    rule = OutageRule(hold_s=5, grace_s=60)
    assert rule.observe_link(link(LinkKind.CONNECTED, "t0"), now=0) is None
    rule.offline("s", "north", "t1", "boot@t1", None, now=1)
    assert rule.due(now=5.9) == []
    (held,) = rule.due(now=6.1)
    assert (held.gate, held.outage) == ("north", "boot@t1")


def test_wills_around_a_drop_wait_for_the_grace_and_gates_back_raise_nothing():
    rule = OutageRule(hold_s=5, grace_s=60)
    rule.observe_link(link(LinkKind.CONNECTED, "t0"), now=0)
    # The broker publishes every will as it shuts down: they arrive before the console's link drops.
    for gate in ("a", "b", "c"):
        rule.offline("s", gate, "t1", f"{gate}@t1", None, now=10)
    drop = rule.observe_link(link(LinkKind.LOST, "t2"), now=11)
    assert drop is not None and drop.lost_at == "t2"
    assert rule.due(now=100) == [], "nothing is released while the console's link is down"
    assert rule.observe_link(link(LinkKind.CONNECTED, "t3"), now=20) is None  # back: the same drop
    rule.back("s", "a")
    rule.back("s", "b")
    assert rule.due(now=79) == [], "gates have the grace after the reconnect to come back"
    (still,) = rule.due(now=81)
    assert still.gate == "c", "a gate still offline after the grace really is down"
    assert rule.suppressed == 2


def test_a_reconnect_seen_only_as_a_new_connection_is_a_drop_too():
    """The link was lost and back between two looks of the watcher (a second or so)."""
    rule = OutageRule(hold_s=5, grace_s=60)
    rule.observe_link(link(LinkKind.CONNECTED, "t0"), now=0)
    rule.offline("s", "a", "t1", "a@t1", None, now=1)
    drop = rule.observe_link(link(LinkKind.CONNECTED, "t5"), now=2)
    assert drop is not None and drop.back_at == 2
    assert rule.due(now=61) == []
    assert [h.gate for h in rule.due(now=63)] == ["a"]


def test_a_console_restart_is_not_a_broker_outage():
    rule = OutageRule()
    rule.observe_link(link(LinkKind.CONNECTED, "t0"), now=0)
    assert rule.observe_link(link(LinkKind.STOPPED, "t1"), now=1) is None
    assert rule.observe_link(link(LinkKind.CONNECTED, "t2"), now=2) is None
    assert OutageRule().observe_link(link(LinkKind.LOST, "t9"), now=0) is None, (
        "no state seen before: no drop"
    )
