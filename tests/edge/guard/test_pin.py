"""The guard PIN: a scrypt hash in the config, a pause after repeated wrong PINs."""

from __future__ import annotations

import pytest

from edge.guard.pin import PinFormatError, PinGate, PinOutcome, hash_pin, parse_hash, verify_pin


def test_hash_verifies_the_pin_and_nothing_else():
    stored = hash_pin("2468", n=2**10)
    assert verify_pin("2468", stored)
    assert not verify_pin("2469", stored)
    assert not verify_pin("", stored)
    assert hash_pin("2468", n=2**10) != stored  # salted
    assert "2468" not in stored


@pytest.mark.parametrize(
    "bad", ["", "2468", "scrypt$1$8$1$aa$bb", "bcrypt$16384$8$1$aa$bb", "scrypt$x$8$1$a$b"]
)
def test_a_hash_it_did_not_write_is_refused_at_startup(bad: str):
    with pytest.raises(PinFormatError):
        parse_hash(bad)
    with pytest.raises(PinFormatError):
        PinGate(bad)


def test_wrong_pins_pause_guard_actions_then_the_pause_ends():
    now = [100.0]
    gate = PinGate(hash_pin("2468", n=2**10), attempts=3, lockout_s=60, clock=lambda: now[0])
    assert gate.check("1111").outcome is PinOutcome.WRONG
    assert gate.check("2468").outcome is PinOutcome.OK  # a right PIN resets the count
    assert [gate.check("0000").outcome for _ in range(2)] == [PinOutcome.WRONG, PinOutcome.WRONG]
    locking = gate.check("0000")
    assert (locking.outcome, locking.failures, locking.locked_for_s) == (PinOutcome.LOCKED, 3, 60)
    still = gate.check("2468")  # even the right PIN waits
    assert (still.outcome, still.failures) == (PinOutcome.LOCKED, 0)
    now[0] += 61
    assert gate.check("2468").outcome is PinOutcome.OK


@pytest.mark.parametrize("pin", [None, 2468, ["2468"], "", "9" * 65])
def test_a_pin_that_is_not_a_short_string_is_just_wrong(pin: object):
    gate = PinGate(hash_pin("2468", n=2**10))
    assert gate.check(pin).outcome is PinOutcome.WRONG


def test_the_config_refuses_an_enabled_screen_without_a_usable_pin_hash(tmp_path):
    from edge.config import load_config
    from protocol.configfile import ConfigError

    def check(section: str) -> str:
        path = tmp_path / "gate.toml"
        path.write_text(f'site = "s"\ngate = "g"\n\n[guard_screen]\n{section}\n', encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        return str(caught.value)

    assert "pin_hash" in check("enabled = true")
    assert "scrypt$n$r$p$salt$hash" in check('enabled = true\npin_hash = "1234"')
    assert "listen" in check(f'listen = "127.0.0.1:99999"\npin_hash = "{hash_pin("1", n=2**4)}"')
