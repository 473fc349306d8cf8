"""Plate formats: every family parses, its credential round-trips, non-plates are typed rejections."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.credentials import CREDENTIAL_PATTERN
from protocol.plates import (
    PROVINCES,
    PlateError,
    PlateKind,
    PlateRejectReason,
    differences,
    parse_plate,
    plate_from_credential,
)


@pytest.mark.parametrize(
    ("text", "kind", "normal"),
    [
        ("京A12345", PlateKind.ORDINARY, "京A12345"),
        ("京 a·12345", PlateKind.ORDINARY, "京A12345"),
        ("沪Ａ１２３４５", PlateKind.ORDINARY, "沪A12345"),
        ("粤B1234港", PlateKind.SUFFIXED, "粤B1234港"),
        ("苏E1234学", PlateKind.SUFFIXED, "苏E1234学"),
        ("浙AD12345", PlateKind.NEW_ENERGY, "浙AD12345"),
        ("川A12345D", PlateKind.NEW_ENERGY, "川A12345D"),
    ],
)
def test_each_family_parses_and_round_trips(text: str, kind: PlateKind, normal: str) -> None:
    plate = parse_plate(text)
    assert plate.kind is kind
    assert plate.text == normal
    assert plate_from_credential(plate.credential) == plate


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", PlateRejectReason.EMPTY),
        ("X A12345", PlateRejectReason.UNKNOWN_PROVINCE),
        ("京A1234", PlateRejectReason.BAD_FORMAT),
        ("京AI2345", PlateRejectReason.BAD_FORMAT),  # no I in serials
        ("京A123456789", PlateRejectReason.BAD_FORMAT),
        ("京A12345港", PlateRejectReason.BAD_FORMAT),
    ],
)
def test_non_plates_are_typed_rejections(text: str, reason: PlateRejectReason) -> None:
    with pytest.raises(PlateError) as raised:
        parse_plate(text)
    assert raised.value.reason is reason


@pytest.mark.parametrize("credential", ["plate:XX-A12345", "card:1", "plate:BJ-A12345-FOO", "plate:BJ-A1"])
def test_bad_credentials_are_typed_rejections(credential: str) -> None:
    with pytest.raises(PlateError):
        plate_from_credential(credential)


@given(
    st.sampled_from(sorted(PROVINCES)),
    st.sampled_from("ABCDEFGHJK"),
    st.text("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=5, max_size=5),
)
def test_every_ordinary_credential_fits_the_card_lists(province: str, letter: str, serial: str) -> None:
    import re

    plate = parse_plate(province + letter + serial)
    assert re.match(CREDENTIAL_PATTERN, plate.credential)
    assert plate_from_credential(plate.credential) == plate


def test_differences_count_characters() -> None:
    a = parse_plate("京A12345")
    assert differences(a, a) == 0
    assert differences(a, parse_plate("京A12346")) == 1
    assert differences(a, parse_plate("津A12345")) == 1
    assert differences(a, parse_plate("京AD12345")) == 8
