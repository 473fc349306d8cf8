"""``reader.offline`` / ``reader.refused``: OSDP supervision alarms, closed when the gate says all are back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from console.alarms import CONSOLE_ACTOR, AlarmBook, AlarmKind
from console.store import EventStore


@dataclass(frozen=True)
class Fact:
    id: str
    site: str
    gate: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    time: str = "2026-12-07T08:00:00.000000Z"


@pytest.fixture
def book(db_url: str | Path) -> Iterator[AlarmBook]:
    with EventStore(db_url) as store:
        yield AlarmBook(store.db)


def test_offline_readers_raise_one_alarm_closed_only_when_every_reader_is_back(
    book: AlarmBook, unique_name: str
):
    site = unique_name
    raised = book.observe_events(
        [
            Fact("e1", site, "lobby", "reader.offline", {"reader": "front", "bus": "b", "address": 1}),
            Fact("e2", site, "lobby", "reader.offline", {"reader": "back", "bus": "b", "address": 2}),
        ]
    )
    assert {a.kind for a in raised} == {AlarmKind.READER_OFFLINE}
    assert book.open_alarm(AlarmKind.READER_OFFLINE, site, "lobby").count == 2
    # One of two back: the alarm stays open.
    book.observe_events(
        [Fact("e3", site, "lobby", "reader.online", {"reader": "front", "offline_readers": 1})]
    )
    assert book.open_alarm(AlarmKind.READER_OFFLINE, site, "lobby") is not None
    book.observe_events(
        [
            Fact(
                "e4",
                site,
                "lobby",
                "reader.online",
                {"reader": "back", "offline_readers": 0, "refused_readers": 0},
            )
        ]
    )
    assert book.open_alarm(AlarmKind.READER_OFFLINE, site, "lobby") is None
    closed = book.list()[0]
    assert closed.acked_by == CONSOLE_ACTOR and "back" in (closed.note or "")


def test_a_refused_reader_and_a_reader_tamper_raise_alarms(book: AlarmBook, unique_name: str):
    site = unique_name
    raised = book.observe_events(
        [
            Fact("r1", site, "g", "reader.refused", {"reader": "side", "detail": "wrong key"}),
            Fact("t1", site, "g", "reader.tamper", {"reader": "side"}),
            Fact("t2", site, "g", "reader.tamper_cleared", {"reader": "side"}),
        ]
    )
    assert sorted(a.kind for a in raised) == [AlarmKind.DOOR_TAMPER, AlarmKind.READER_REFUSED]
    assert next(a for a in raised if a.kind == AlarmKind.READER_REFUSED).detail == {"reader": "side"}
    book.observe_events(
        [Fact("o1", site, "g", "reader.online", {"offline_readers": 0, "refused_readers": 0})]
    )
    assert book.open_alarm(AlarmKind.READER_REFUSED, site, "g") is None
    assert book.open_alarm(AlarmKind.DOOR_TAMPER, site, "g") is not None  # a person must look at that
