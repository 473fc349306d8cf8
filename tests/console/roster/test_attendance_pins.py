"""Duty PINs made by the console are checked by the gate's own code (edge/guard/pin.py): the formats agree."""

from __future__ import annotations

import pytest

from console.duty_pins import DutyPinError, hash_duty_pin
from edge.guard.pin import parse_hash, verify_pin


def test_the_gate_verifies_what_the_console_hashes():
    stored = hash_duty_pin("20261207")
    assert verify_pin("20261207", stored)
    assert not verify_pin("20261208", stored) and not verify_pin("2026120", stored)
    assert parse_hash(stored).digits == 8  # the length is recorded, as the gate's own hashes do
    assert hash_duty_pin("20261207") != stored  # a fresh salt every time


@pytest.mark.parametrize("pin", ["12345", "1234567890123", "12a456", "", "１２３４５６"])
def test_a_pin_the_gate_would_not_take_is_refused(pin: str):
    with pytest.raises(DutyPinError):
        hash_duty_pin(pin)
