"""``post.understaffed``: a rostered post below the advice for longer than configured; closed when staffed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from console.alarms import CONSOLE_ACTOR, AlarmBook, AlarmKind
from console.config import ConfigError, load_config
from console.flow import FlowSettings
from console.roster.attendance_watch import UnderstaffedWatch
from console.store import EventStore
from protocol.duty import DUTY_CHECK_OUT
from tests.console.roster.attendance_support import duty_event, local, seed_roster

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(db_url: str | Path) -> Iterator[EventStore]:
    """SQLite and PostgreSQL alike (tests/console/conftest.py): attendance is a query over either."""
    with EventStore(db_url) as instance:
        yield instance


def _watch(store: EventStore, site: str, minutes: float = 15.0) -> tuple[UnderstaffedWatch, AlarmBook]:
    seed_roster(store.db, site)
    alarms = AlarmBook(store.db)
    return UnderstaffedWatch(
        store, seed_roster(store.db, site), alarms, FlowSettings(), after_minutes=minutes
    ), alarms


def _open(alarms: AlarmBook) -> dict[str, dict]:
    return {
        f"{a.site}/{a.gate}": a.detail
        for a in alarms.list(open_only=True)
        if a.kind == AlarmKind.POST_UNDERSTAFFED.value
    }


def test_a_post_below_the_advice_alarms_after_the_configured_time_and_closes_when_staffed(
    store: EventStore, unique_name: str
):
    site = unique_name
    watch, alarms = _watch(store, site)
    # 08:00: nobody has checked in anywhere.  The advice with no flow history is the baseline: 1.
    store.commit([duty_event(site, "east", 1, local(7, 55), "g2")])  # east is staffed
    assert watch.step(local(8, 0)) == []
    assert watch.step(local(8, 14)) == [] and _open(alarms) == {}  # 14 minutes: not yet
    opened = watch.step(local(8, 15))
    assert [(a.site, a.gate, a.kind) for a in opened] == [(site, "north", "post.understaffed")]
    detail = _open(alarms)[f"{site}/north"]
    assert (detail["present"], detail["advice"]) == (0, 1)

    # Another pass while still short: the same alarm, not a second one.
    assert watch.step(local(8, 20)) == []
    assert len(_open(alarms)) == 1

    # g1 checks in at 08:25: the console closes the alarm itself.
    store.commit([duty_event(site, "north", 1, local(8, 25), "g1")])
    closed = watch.step(local(8, 26))
    assert [a.acked_by for a in closed] == [CONSOLE_ACTOR] and _open(alarms) == {}

    # g1 leaves at 09:00: a new stretch, a new alarm after the configured time again.
    store.commit([duty_event(site, "north", 2, local(9, 0), "g1", type_=DUTY_CHECK_OUT)])
    assert watch.step(local(9, 1)) == []
    assert watch.step(local(9, 10)) == []
    assert [a.gate for a in watch.step(local(9, 16))] == ["north"]
    assert len([a for a in alarms.list() if a.kind == AlarmKind.POST_UNDERSTAFFED.value]) == 2


def test_only_posts_with_a_roster_for_the_day_are_watched(store: EventStore, unique_name: str):
    site = unique_name
    watch, alarms = _watch(store, site, minutes=1)
    tuesday = local(8) + timedelta(days=1)  # the roster holds Monday only
    watch.step(tuesday)
    assert watch.step(tuesday + timedelta(minutes=30)) == [] and _open(alarms) == {}
    monday = local(8)
    watch.step(monday)
    assert {a.gate for a in watch.step(monday + timedelta(minutes=2))} == {"north", "east"}


def test_the_delay_is_a_config_key_with_file_line_and_key_errors(tmp_path: Path):
    good = tmp_path / "good.toml"
    good.write_text("[roster]\nunderstaffed_after_minutes = 30\n")
    assert load_config(good).roster.understaffed_after_minutes == 30
    default = tmp_path / "default.toml"
    default.write_text("")
    assert load_config(default).roster.understaffed_after_minutes == 15
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'c'\n[roster]\nunderstaffed_after_minutes = -5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    text = str(caught.value)
    assert "bad.toml" in text and ":3" in text and "understaffed_after_minutes" in text
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[roster]\nunderstafed_after_minutes = 5\n")
    with pytest.raises(ConfigError, match="understafed_after_minutes"):
        load_config(unknown)
