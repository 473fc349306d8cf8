"""The district record: what the schema file promises is what the console sends, privacy included."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from console.district.config import PrivacyConfig, Subset
from console.district.records import SCHEMA_VERSION, Privacy, event_record, flow_record, selector
from console.store import EventFlag, FlowRow, StoredEvent

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "docs" / "district-record.schema.json").read_text()
)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def stored(type_: str = "access.scan", site: str = "north", flags: int = 0, **data: object) -> StoredEvent:
    return StoredEvent(
        row_id=7,
        id=uuid.uuid4().hex,
        site=site,
        gate="g1",
        boot="b" * 32,
        seq=3,
        time="2026-11-29T08:31:07.123456Z",
        clock_trusted=True,
        type=type_,
        data=dict(data),
        received_at=datetime(2026, 11, 29, 8, 31, 8, tzinfo=UTC).isoformat(timespec="microseconds")[:-6]
        + "Z",
        flags=flags,
    )


def test_event_and_flow_records_follow_the_schema_file():
    assert SCHEMA["oneOf"] and SCHEMA["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    for event in (
        stored(holder="Wang Fang", unit="3-1201", granted=True),
        stored("door.forced", flags=EventFlag.FLOOD | EventFlag.BACKDATED),
        stored("agent.started"),
    ):
        VALIDATOR.validate(event_record(event, "compound", frozenset({"holder"})))
    VALIDATOR.validate(flow_record(FlowRow("north", "g1", "2026-11-29T08:00:00Z", 3, 2, 1), "compound", 9))


def test_a_record_missing_its_id_or_with_a_bad_version_is_not_a_record():
    record = event_record(stored(), "compound", frozenset())
    for broken in ({**record, "schema_version": 2}, {k: v for k, v in record.items() if k != "id"}):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(broken)


def test_privacy_is_per_site_and_says_what_it_dropped():
    privacy = Privacy(
        PrivacyConfig.model_validate({"drop": ["holder", "credential"], "sites": {"south": {"drop": []}}})
    )
    north = privacy.record(stored(holder="Li Lei", credential="qr", unit="1-101"), "c")
    south = privacy.record(stored(site="south", holder="Li Lei", credential="qr", unit="1-101"), "c")
    assert north["data"] == {"unit": "1-101"} and north["dropped"] == ["credential", "holder"]
    assert south["data"]["holder"] == "Li Lei" and south["dropped"] == []
    assert "Li Lei" not in json.dumps(north)


def test_subsets_select_by_type_and_site():
    access = selector([Subset.ACCESS], None)
    alarms = selector([Subset.ALARMS], ["north"])
    assert (
        access(stored("access.scan"))
        and access(stored("door.access_denied"))
        and not access(stored("door.forced"))
    )
    assert alarms(stored("door.forced")) and not alarms(stored("door.forced", site="south"))
    assert selector([Subset.ALL], None)(stored("agent.started"))
