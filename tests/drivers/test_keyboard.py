"""Keyboard-mode readers: the key decoder, without a device (evdev is optional)."""

from __future__ import annotations

import pytest

from drivers import keyboard
from drivers.cards import CardRead, CardRejected, CardRejectReason, ReaderUnavailableError
from drivers.keyboard import KEY_GAP_NS, KeyboardDecoder, KeyboardReader

MS = 1_000_000


def type_keys(decoder: KeyboardDecoder, names, start_ns: int = 0, step_ns: int = 2 * MS) -> list:
    out = []
    for i, name in enumerate(names):
        out += decoder.key(name, start_ns + i * step_ns)
    return out


def keys_for(text: str) -> list[str]:
    return [f"KEY_{c}" for c in text] + ["KEY_ENTER"]


def test_a_typed_number_is_a_card():
    decoder = KeyboardDecoder(reader="usb")
    (reading,) = type_keys(decoder, keys_for("0012345678"))
    assert isinstance(reading, CardRead) and reading.card_id == 12345678 and reading.raw == "0012345678"
    assert reading.credential == "keyboard:0012345678" and reading.reader == "usb"


def test_keypad_digits_and_shift_are_accepted_hex_only_when_asked():
    decoder = KeyboardDecoder()
    (reading,) = type_keys(decoder, ["KEY_KP1", "KEY_LEFTSHIFT", "KEY_2", "KEY_KPENTER"])
    assert reading.card_id == 12
    hex_decoder = KeyboardDecoder(base=16)
    (reading,) = type_keys(hex_decoder, keys_for("1A2B"))
    assert reading.card_id == 0x1A2B
    (rejected,) = type_keys(KeyboardDecoder(), keys_for("1A2B"))
    assert isinstance(rejected, CardRejected) and rejected.reason is CardRejectReason.FORMAT


def test_typing_that_stops_before_enter_is_truncated():
    decoder = KeyboardDecoder()
    assert type_keys(decoder, ["KEY_1", "KEY_2"]) == []
    assert decoder.poll(2 * MS + KEY_GAP_NS - 1) == []
    (reading,) = decoder.poll(2 * MS + KEY_GAP_NS)
    assert isinstance(reading, CardRejected) and reading.reason is CardRejectReason.TRUNCATED
    (after,) = type_keys(decoder, keys_for("99"), start_ns=10 * KEY_GAP_NS)
    assert after.card_id == 99


@pytest.mark.parametrize(
    "names, reason",
    [
        (["KEY_ENTER"], CardRejectReason.LENGTH),
        (keys_for("1" * 21), CardRejectReason.LENGTH),
        (keys_for("0000"), CardRejectReason.ALL_ZERO),
        (["KEY_1", "KEY_SPACE", "KEY_ENTER"], CardRejectReason.FORMAT),
    ],
)
def test_bad_input_is_a_typed_rejection(names, reason):
    (reading,) = type_keys(KeyboardDecoder(), names)
    assert isinstance(reading, CardRejected) and reading.reason is reason


@pytest.mark.skipif(keyboard.evdev is not None, reason="evdev is installed here")
def test_without_evdev_the_reader_says_so():
    with pytest.raises(ReaderUnavailableError, match="evdev"):
        KeyboardReader("/dev/input/event0", print)
