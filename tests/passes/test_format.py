from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from protocol.errors import GatepostError
from protocol.passes import DailyWindow, Pass, PassError, PassRejectReason, Role, decode_pass, sign_pass
from protocol.passes.format import EPOCH, MAX_TEXT_BYTES, SIGNATURE_BYTES, encode_payload

from .conftest import MILK_WINDOW, NOW

KEY = SigningKey(b"\x01" * 32)


def resident(**overrides) -> Pass:
    fields = {
        "kid": 1,
        "site_id": 7,
        "serial": 12_345_678,
        "holder": "王小明",
        "unit": "3-2-501",
        "role": Role.RESIDENT,
        "zones": {0, 3},
        "valid_from": NOW,
        "valid_until": NOW + timedelta(days=365),
    }
    fields.update(overrides)
    return Pass(**fields)


def test_round_trip_keeps_every_field_and_the_signature_verifies():
    p = resident(
        generation=4,
        daily_window=MILK_WINDOW,
        photo_digest=bytes(range(16)),
        dynamic=True,
        role=Role.SERVICE_WORKER,
    )
    data = sign_pass(p, KEY)
    signed = decode_pass(data)
    assert signed.pass_ == p
    assert signed.signature == data[-SIGNATURE_BYTES:]
    assert signed.verify(KEY.verify_key)
    assert not signed.verify(SigningKey(b"\x02" * 32).verify_key)


def test_typical_photo_pass_fits_the_120_byte_budget():
    p = resident(photo_digest=bytes(16), daily_window=MILK_WINDOW, generation=3)
    assert len(sign_pass(p, KEY)) <= 120


def test_times_are_floored_to_the_minute_and_kept_in_utc():
    p = resident(valid_from=NOW + timedelta(seconds=59, microseconds=5), valid_until=NOW + timedelta(hours=2))
    assert p.valid_from == NOW
    assert p.valid_from.tzinfo is UTC
    assert decode_pass(sign_pass(p, KEY)).pass_.valid_from == NOW


@pytest.mark.parametrize(
    "overrides",
    [
        {"zones": set()},
        {"zones": {64}},
        {"zones": None},
        {"holder": "x" * (MAX_TEXT_BYTES + 1)},
        {"holder": "\udc80"},
        {"unit": 5},
        {"role": 9},
        {"serial": -1},
        {"serial": 1 << 63},
        {"kid": True},
        {"generation": 1 << 32},
        {"valid_from": datetime(2023, 12, 31, tzinfo=UTC)},
        {"valid_from": datetime(2026, 1, 1)},  # naive
        {"valid_until": NOW},
        {"valid_until": NOW + timedelta(seconds=30)},  # floors onto valid_from
        {"photo_digest": b"short"},
        {"daily_window": (6, 9)},
    ],
)
def test_impossible_passes_are_refused_when_built(overrides):
    with pytest.raises(PassError) as info:
        resident(**overrides)
    assert info.value.reason is PassRejectReason.BAD_FIELD
    assert isinstance(info.value, GatepostError | ValueError)


def test_daily_window_wraps_midnight():
    night = DailyWindow.from_hours("22:00", "06:00")
    assert night.contains(23 * 60) and night.contains(0) and night.contains(5 * 60 + 59)
    assert not night.contains(6 * 60) and not night.contains(12 * 60)
    assert MILK_WINDOW.contains(6 * 60) and not MILK_WINDOW.contains(9 * 60)
    with pytest.raises(PassError):
        DailyWindow(5, 5)
    with pytest.raises(PassError):
        DailyWindow(0, 1440)


def _reason(data: bytes) -> PassRejectReason:
    with pytest.raises(PassError) as info:
        decode_pass(data)
    return info.value.reason


def test_strict_decoding_rejects_each_structural_fault():
    good = sign_pass(resident(), KEY)
    payload, sig = good[:-SIGNATURE_BYTES], good[-SIGNATURE_BYTES:]
    assert _reason(b"") is PassRejectReason.TRUNCATED
    assert _reason(b"\x02" + good[1:]) is PassRejectReason.UNSUPPORTED_VERSION
    assert _reason(good[:40]) is PassRejectReason.TRUNCATED
    assert _reason(payload + b"\x00" + sig) is PassRejectReason.TRAILING_BYTES
    assert _reason(payload[:-1] + sig) is PassRejectReason.TRUNCATED
    assert _reason(bytes([1, 0x80]) + payload[2:] + sig) is PassRejectReason.BAD_FIELD  # reserved flag bit
    assert _reason(bytes([1, 0x07]) + payload[2:] + sig) is PassRejectReason.BAD_FIELD  # reserved role
    assert _reason(b"\x01" * 400) is PassRejectReason.TOO_LONG
    # kid 1 written as a two-byte varint: same value, different bytes, so refused
    assert payload[2] == 1
    assert _reason(payload[:2] + b"\x81\x00" + payload[3:] + sig) is PassRejectReason.BAD_FIELD


def test_invalid_utf8_holder_is_a_typed_rejection():
    payload = bytearray(encode_payload(resident(holder="ab")))
    at = payload.index(b"ab")
    payload[at] = 0xFF
    assert _reason(bytes(payload) + bytes(64)) is PassRejectReason.BAD_FIELD


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_any_bytes_decode_to_a_pass_or_a_typed_rejection(data):
    try:
        signed = decode_pass(data)
    except PassError as exc:
        assert isinstance(exc.reason, PassRejectReason)
    else:
        assert signed.payload + signed.signature == data


@settings(max_examples=300)
@given(st.sampled_from([0x00, 0x13, 0x3B]), st.binary(min_size=0, max_size=200))
def test_bytes_after_a_valid_header_decode_or_reject(flags, tail):
    data = bytes([1, flags]) + tail
    try:
        signed = decode_pass(data)
    except PassError as exc:
        assert exc.reason is not PassRejectReason.UNSUPPORTED_VERSION
    else:
        assert signed.payload + signed.signature == data


passes = st.builds(
    Pass,
    kid=st.integers(0, 0xFFFF),
    site_id=st.integers(0, 0xFFFFFFFF),
    serial=st.integers(0, (1 << 63) - 1),
    holder=st.text(max_size=16),
    unit=st.text(max_size=16),
    role=st.sampled_from(Role),
    zones=st.frozensets(st.integers(0, 63), min_size=1),
    valid_from=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2300, 1, 1), timezones=st.just(UTC)
    ),
    valid_until=st.just(datetime(2301, 1, 1, tzinfo=UTC)),
    generation=st.integers(0, 0xFFFFFFFF),
    daily_window=st.none()
    | st.tuples(st.integers(0, 1439), st.integers(0, 1439))
    .filter(lambda t: t[0] != t[1])
    .map(lambda t: DailyWindow(*t)),
    photo_digest=st.none() | st.binary(min_size=16, max_size=16),
    dynamic=st.booleans(),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(passes)
def test_any_valid_pass_round_trips_exactly(p):
    data = sign_pass(p, KEY)
    signed = decode_pass(data)
    assert signed.pass_ == p
    assert sign_pass(signed.pass_, KEY) == data  # one pass, one byte string
    assert p.valid_from >= EPOCH
