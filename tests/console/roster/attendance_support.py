"""Shared pieces of the attendance tests: a roster on a fixed Monday, and duty events as a gate makes them."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from console.db import Database
from console.roster.model import Person, Team
from console.roster.store import RosterStore
from protocol.duty import DUTY_CHECK_IN, DutyCheck, DutyMethod
from protocol.messages import Event

ZONE = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 30)
"""A Monday: week hour ``h`` is ``h`` o'clock that day for ``h < 24``."""


def local(hour: int, minute: int = 0) -> datetime:
    """``hour:minute`` site-local on :data:`DAY`, as UTC."""
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=ZONE).astimezone(UTC)


def seed_roster(db: Database, site: str, *, other_site: str | None = None) -> RosterStore:
    """g0 08-12 and g1 08-16 at ``site/north``, g2 08-12 at ``site/east`` (and at ``other_site/west``)."""
    roster = RosterStore(db)
    north, east = f"{site}/north", f"{site}/east"
    people = [
        Person("g0", "王伟", Team.GUARD, frozenset({north}), frozenset(range(168)), trained=True),
        Person("g1", "Li Na", Team.GUARD, frozenset({north}), frozenset(range(168)), trained=True),
        Person("g2", "Zhao Lei", Team.STAFF, frozenset({east}), frozenset(range(168))),
    ]
    assignment = {
        ("g0", north): frozenset(range(8, 12)),
        ("g1", north): frozenset(range(8, 16)),
        ("g2", east): frozenset(range(8, 12)),
    }
    if other_site is not None:
        west = f"{other_site}/west"
        people.append(Person("o1", "Other One", Team.GUARD, frozenset({west}), frozenset(range(168))))
        assignment[("o1", west)] = frozenset(range(8, 12))
    roster.put_people(people)
    roster.replace_week(DAY, assignment, status="draft", made_by="test", summary={})
    return roster


def duty_event(
    site: str,
    gate: str,
    seq: int,
    at: datetime,
    person: str,
    *,
    type_: str = DUTY_CHECK_IN,
    method: DutyMethod = DutyMethod.CREDENTIAL,
    boot: str = "b" * 32,
    **extra: Any,
) -> Event:
    """A duty event exactly as a gate's outbox holds it: the envelope, and :class:`DutyCheck` as data."""
    data = DutyCheck(
        person=person,
        name=extra.pop("name", ""),
        method=method,
        reader="card" if method == "credential" else None,
        **extra,
    ).model_dump(mode="json")
    return Event(
        id=uuid.uuid4().hex,
        site=site,
        gate=gate,
        boot=boot,
        seq=seq,
        time=at,
        clock_trusted=True,
        type=type_,
        data=data,
    )


def plus(moment: datetime, **delta: float) -> datetime:
    return moment + timedelta(**delta)
