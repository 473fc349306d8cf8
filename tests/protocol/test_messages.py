"""The contract's validation: every malformed message is a typed rejection, never a crash."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    Ack,
    Command,
    Event,
    GateState,
    GateStatus,
    ProtocolError,
    RejectReason,
    decode_ack,
    decode_command,
    decode_event,
    decode_status,
    encode,
    seq_ranges,
)
from protocol.messages import MAX_MESSAGE_BYTES


def make_event(**overrides: object) -> Event:
    fields: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "site": "longtan",
        "gate": "north",
        "boot": uuid.uuid4().hex,
        "seq": 7,
        "time": datetime(2026, 11, 29, 18, 30, tzinfo=UTC),
        "clock_trusted": True,
        "type": "access.scan",
        "data": {"code": "123456", "granted": True},
    }
    fields.update(overrides)
    return Event(**fields)  # type: ignore[arg-type]


def test_event_round_trips_through_its_wire_form():
    event = make_event()
    raw = encode(event)
    assert json.loads(raw)["v"] == 1
    assert decode_event(raw) == event


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe\x00", RejectReason.NOT_UTF8),
        (b"not json", RejectReason.NOT_JSON),
        (b"[1, 2]", RejectReason.NOT_OBJECT),
        (b"42", RejectReason.NOT_OBJECT),
        (b'{"v": 2}', RejectReason.BAD_VERSION),
        (b'{"v": 1}', RejectReason.SCHEMA),
        (b"{" * (MAX_MESSAGE_BYTES + 1), RejectReason.TOO_LARGE),
    ],
)
def test_malformed_payloads_are_typed_rejections(raw: bytes, reason: RejectReason):
    with pytest.raises(ProtocolError) as caught:
        decode_event(raw)
    assert caught.value.reason is reason
    assert isinstance(caught.value, ValueError)


def test_rejection_detail_names_the_field_but_not_the_payload():
    raw = json.loads(encode(make_event()))
    raw["clock_trusted"] = 1  # strict: an int is not a bool
    with pytest.raises(ProtocolError) as caught:
        decode_event(json.dumps(raw))
    assert caught.value.reason is RejectReason.SCHEMA
    assert "clock_trusted" in caught.value.detail


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 0),
        ("seq", -1),
        ("site", "North Gate"),
        ("gate", "a/b"),
        ("gate", "+"),
        ("id", "xyz"),
        ("type", "Scan"),
        ("time", "2026-11-29T18:30:00"),  # no offset: ambiguous, refused
        ("extra", 1),
    ],
)
def test_each_envelope_rule_is_enforced(field: str, value: object):
    raw = json.loads(encode(make_event()))
    raw[field] = value
    with pytest.raises(ProtocolError):
        decode_event(json.dumps(raw))


def test_times_are_normalised_to_utc():
    shanghai = datetime(2026, 11, 29, 18, 30, tzinfo=UTC) + timedelta(hours=8)
    raw = json.loads(encode(make_event()))
    raw["time"] = shanghai.replace(tzinfo=None).isoformat() + "+08:00"
    assert decode_event(json.dumps(raw)).time == datetime(2026, 11, 29, 18, 30, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_decode_or_reject(raw: bytes):
    for decode in (decode_event, decode_ack, decode_command, decode_status):
        with contextlib.suppress(ProtocolError):  # anything else fails the test
            decode(raw)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_any_json_decodes_or_rejects(value: object):
    raw = json.dumps(value).encode()
    for decode in (decode_event, decode_ack, decode_command, decode_status):
        with contextlib.suppress(ProtocolError):  # anything else fails the test
            decode(raw)


def test_ack_ranges_collapse_and_expand():
    assert seq_ranges([5, 1, 2, 3, 9, 2]) == [(1, 3), (5, 5), (9, 9)]
    ack = decode_ack(encode(Ack(seqs=seq_ranges(range(1, 1001)))))
    assert list(ack.iter_ranges()) == [(1, 1000)]
    # Reversed or non-positive ranges are ignored rather than deleting anything.
    assert list(Ack(seqs=[(5, 1), (0, 3), (2, 2)]).iter_ranges()) == [(2, 2)]


def test_command_and_status_round_trip():
    now = datetime.now(UTC)
    command = Command(id=uuid.uuid4().hex, name="ping", issued_at=now, expires_at=now + timedelta(seconds=30))
    assert decode_command(encode(command)) == command
    status = GateStatus(state=GateState.OFFLINE, site="s1", gate="g1", boot=uuid.uuid4().hex)
    assert decode_status(encode(status)).state is GateState.OFFLINE
