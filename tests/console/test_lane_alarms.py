"""A vehicle lane's alarms reach the console's alarm book: the arm up too long, and forced open."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from console.alarms import AlarmKind, AlarmRules, RuleState, evaluate

LOCALES = Path(__file__).resolve().parents[2] / "console" / "web" / "locales"


@dataclass
class Seen:
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str = "e1"
    site: str = "site1"
    gate: str = "carpark"
    time: Any = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [("lane.open_too_long", AlarmKind.LANE_OPEN_TOO_LONG), ("lane.forced_open", AlarmKind.LANE_FORCED_OPEN)],
)
def test_lane_alarms_are_raised_with_their_lane(event_type, kind):
    draft = evaluate(AlarmRules(), RuleState(), Seen(event_type, {"lane": "car-in", "open_for_s": 95.0}))
    assert draft is not None and draft.kind is kind
    assert draft.detail["lane"] == "car-in"
    for language in ("en", "zh"):
        labels = json.loads((LOCALES / f"core.{language}.json").read_text(encoding="utf-8"))
        assert labels[f"alarm.{kind.value}"]


def test_ordinary_lane_events_raise_nothing():
    for event_type in ("lane.opened", "lane.closed", "lane.vehicle_left", "lane.close_held"):
        assert evaluate(AlarmRules(), RuleState(), Seen(event_type, {"lane": "car-in"})) is None
