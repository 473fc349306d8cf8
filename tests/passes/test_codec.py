from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from protocol.passes import PassError, PassRejectReason, decode_text, encode_text, qr_version
from protocol.passes.codec import (
    MARKER,
    MAX_TEXT_DIGITS,
    bytes_to_digits,
    digits_to_bytes,
    numeric_segment_bits,
)
from protocol.passes.format import MAX_PASS_BYTES

from .test_format import KEY, resident


@settings(max_examples=500)
@given(st.binary(max_size=MAX_PASS_BYTES))
def test_any_bytes_round_trip_through_digits(data):
    digits = bytes_to_digits(data)
    assert digits.isdigit() or digits == ""
    assert digits_to_bytes(digits) == data


def test_width_depends_only_on_length_and_keeps_leading_zeros():
    assert bytes_to_digits(b"\x00") == "000"
    assert bytes_to_digits(b"\x00\x00") == "00000"
    assert bytes_to_digits(b"\xff\xff") == "65535"
    assert digits_to_bytes("00000") == b"\x00\x00"
    assert len(bytes_to_digits(bytes(117))) == 282  # ~2.41 digits per byte


@pytest.mark.parametrize("digits", ["1", "1234", "256", "65536", "99999"])
def test_digit_strings_no_byte_string_makes_are_refused(digits):
    with pytest.raises(PassError) as info:
        digits_to_bytes(digits)
    assert info.value.reason is PassRejectReason.BAD_DIGITS


def test_text_carries_marker_kind_and_only_digits():
    data = bytes(range(100))
    text = encode_text(data)
    assert text.startswith(MARKER + "1") and text.isdigit()
    dyn = encode_text(data, "01234567")
    assert dyn.startswith(MARKER + "2") and dyn.endswith("01234567")
    with pytest.raises(PassError):
        encode_text(data, "123")


def test_scanner_suffixes_are_ignored_and_foreign_codes_are_not_passes():
    text = encode_text(sign_pass_bytes())
    assert decode_text(f"{text}\r\n").signed.pass_ == resident()
    for foreign in ["", "WIFI:S:home;;", "12345", "٤٧٥٠١", "4750１23", "x" * 5000]:
        with pytest.raises(PassError) as info:
            decode_text(foreign)
        assert info.value.reason in {PassRejectReason.NOT_A_PASS, PassRejectReason.TOO_LONG}, foreign
    with pytest.raises(PassError) as info:
        decode_text(MARKER + "9" + "0" * 30)
    assert info.value.reason is PassRejectReason.UNSUPPORTED_VERSION
    for truncated in (MARKER, MARKER + "1", MARKER + "2" + "123"):
        with pytest.raises(PassError) as info:
            decode_text(truncated)
        assert info.value.reason in {PassRejectReason.TRUNCATED, PassRejectReason.BAD_DIGITS}, truncated
    with pytest.raises(PassError) as info:
        decode_text(MARKER + "2" + "123")
    assert info.value.reason is PassRejectReason.TRUNCATED


def sign_pass_bytes() -> bytes:
    from protocol.passes import sign_pass

    return sign_pass(resident(), KEY)


@settings(max_examples=500)
@given(st.text(max_size=400) | st.text(alphabet="0123456789", max_size=400).map(lambda s: MARKER + s))
def test_any_text_decodes_or_is_a_typed_rejection(text):
    try:
        decode_text(text)
    except PassError as exc:
        assert isinstance(exc.reason, PassRejectReason)


@settings(max_examples=300)
@given(st.text(alphabet="0123456789", min_size=1, max_size=MAX_TEXT_DIGITS))
def test_any_digit_string_after_the_marker_decodes_or_is_rejected(digits):
    for kind in "12":
        try:
            decode_text(MARKER + kind + digits)
        except PassError as exc:
            assert exc.reason is not PassRejectReason.NOT_A_PASS


# -- QR capacity ------------------------------------------------------------------------

# Numeric-mode capacities from ISO/IEC 18004:2015 Table 7 (characters per symbol).
KNOWN_CAPACITY = {
    (1, "L"): 41,
    (1, "H"): 17,
    (7, "M"): 293,
    (8, "M"): 365,
    (9, "Q"): 312,
    (10, "Q"): 364,
    (40, "L"): 7089,
}


@pytest.mark.parametrize(("version_level", "capacity"), KNOWN_CAPACITY.items())
def test_capacity_boundaries_match_the_standard(version_level, capacity):
    version, level = version_level
    assert qr_version(capacity, level) == version
    assert qr_version(capacity + 1, level) == version + 1 if version < 40 else True


def test_too_many_digits_fit_no_version():
    with pytest.raises(ValueError):
        qr_version(7090, "L")
    assert numeric_segment_bits(3, 1) == 4 + 10 + 10


def test_qr_version_agrees_with_segno():
    segno = pytest.importorskip("segno")
    key = SigningKey(b"\x05" * 32)
    for n in (1, 20, 41, 42, 100, 250, 310, 311, 600, 1200):
        text = "7" * n
        for level in "LMQH":
            qr = segno.make(text, error=level, micro=False, boost_error=False)
            assert qr.mode == "numeric"
            assert qr.version == qr_version(n, level), (n, level)
    from protocol.passes import sign_pass

    text = encode_text(sign_pass(resident(), key))
    assert segno.make(text, error="q", micro=False, boost_error=False).version == qr_version(len(text), "Q")
