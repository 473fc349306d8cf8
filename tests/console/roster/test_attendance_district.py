"""The district feed's ``attendance`` and ``patrols`` subsets carry the duty and patrol events, nothing else."""

from __future__ import annotations

from pathlib import Path

from console.district.config import DistrictConfig, Subset
from console.district.records import selector
from console.store import EventStore
from protocol.duty import DUTY_CHECK_IN, DUTY_CHECK_OUT, DUTY_REFUSED, PATROL_CHECKIN
from tests.console.web.web_support import make_event


def test_subsets_select_duty_and_patrol_events(tmp_path: Path):
    assert DistrictConfig.model_validate({"name": "c1", "select": ["attendance", "patrols"]}).select == [
        Subset.ATTENDANCE,
        Subset.PATROLS,
    ]
    kinds = (DUTY_CHECK_IN, DUTY_CHECK_OUT, DUTY_REFUSED, PATROL_CHECKIN, "access.scan", "door.forced")
    with EventStore(tmp_path / "events.db") as store:
        store.commit([make_event("s1", "north", n, kind) for n, kind in enumerate(kinds, 1)])
        events = store.events_after(0, 100)
    attendance = selector([Subset.ATTENDANCE], None)
    patrols = selector([Subset.PATROLS], None)
    assert [e.type for e in events if attendance(e)] == [DUTY_CHECK_IN, DUTY_CHECK_OUT, DUTY_REFUSED]
    assert [e.type for e in events if patrols(e)] == [PATROL_CHECKIN]
    assert not selector([Subset.ATTENDANCE], ["s2"])(events[0])  # the sites filter still applies
