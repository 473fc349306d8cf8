"""The guard PIN: six digits or more, a scrypt hash in the config, a growing pause per source."""

from __future__ import annotations

import pytest

from edge.guard.pin import (
    LOCAL_ADDRESSES,
    MAX_SOURCES,
    PinFormatError,
    PinGate,
    PinOutcome,
    Source,
    hash_pin,
    lockout_after,
    parse_hash,
    verify_pin,
)

PIN = "246813"
REMOTE = "192.0.2.7"


def test_hash_verifies_the_pin_and_nothing_else():
    stored = hash_pin(PIN, n=2**10)
    assert verify_pin(PIN, stored)
    assert not verify_pin("246814", stored)
    assert not verify_pin("", stored)
    assert hash_pin(PIN, n=2**10) != stored  # salted
    assert PIN not in stored
    assert stored.endswith("$6") and parse_hash(stored).digits == 6


@pytest.mark.parametrize("pin", ["2468", "24681", "", "24681x", "１２３４５６", "1" * 13])
def test_a_pin_shorter_than_six_digits_or_not_digits_is_never_hashed(pin: str):
    with pytest.raises(PinFormatError):
        hash_pin(pin, n=2**4)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "2468",
        "scrypt$1$8$1$aa$bb",
        "bcrypt$16384$8$1$aa$bb",
        "scrypt$x$8$1$a$b",
        "scrypt$16$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$4",  # a 4-digit PIN
        "scrypt$16$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$x",
    ],
)
def test_a_hash_it_did_not_write_is_refused_at_startup(bad: str):
    with pytest.raises(PinFormatError):
        parse_hash(bad)
    with pytest.raises(PinFormatError):
        PinGate(bad)


def legacy_hash(pin: str) -> str:
    """A hash as gatepost wrote it before lengths were recorded (six fields)."""
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=16, r=8, p=1, dklen=32)
    b64 = lambda data: base64.urlsafe_b64encode(data).decode().rstrip("=")  # noqa: E731
    return f"scrypt$16$8$1${b64(salt)}${b64(digest)}"


def test_a_legacy_hash_still_loads_but_a_short_pin_no_longer_opens_anything():
    gate = PinGate(legacy_hash("2468"))
    assert gate.stored.digits is None
    short = gate.check("2468")
    assert short.outcome is PinOutcome.TOO_SHORT and short.failures == 0  # said, not counted
    long_enough = PinGate(legacy_hash(PIN))
    assert long_enough.check(PIN).outcome is PinOutcome.OK


def test_the_recorded_length_must_match():
    stored = hash_pin(PIN, n=2**4)
    forged = stored.rsplit("$", 1)[0] + "$7"  # the length edited: the right PIN no longer matches
    assert not verify_pin(PIN, forged)


def test_wrong_pins_pause_and_each_further_one_doubles_the_pause():
    now = [100.0]
    gate = PinGate(hash_pin(PIN, n=2**4), attempts=3, lockout_s=60, clock=lambda: now[0])
    assert gate.check("111111").outcome is PinOutcome.WRONG
    assert gate.check(PIN).outcome is PinOutcome.OK  # a right PIN resets the count
    assert [gate.check("000000").outcome for _ in range(2)] == [PinOutcome.WRONG, PinOutcome.WRONG]
    locking = gate.check("000000")
    assert (locking.outcome, locking.failures, locking.locked_for_s, locking.lockout_started) == (
        PinOutcome.LOCKED,
        3,
        60,
        True,
    )
    still = gate.check(PIN)  # even the right PIN waits, and waiting is not a guess
    assert (still.outcome, still.failures, still.lockout_started) == (PinOutcome.LOCKED, 3, False)
    pauses = []
    for _ in range(4):
        now[0] += 100_000
        pauses.append(gate.check("000000").locked_for_s)
    assert pauses == [120, 240, 480, 960]
    now[0] += 1000
    assert gate.check(PIN).outcome is PinOutcome.OK
    assert gate.check("000000").outcome is PinOutcome.WRONG  # the streak started again


def test_the_pause_grows_to_its_cap():
    assert [
        lockout_after(n, attempts=5, lockout_s=60, max_lockout_s=86400) for n in (4, 5, 6, 15, 16, 40)
    ] == [
        0,
        60,
        120,
        61440,
        86400,
        86400,
    ]


def test_a_remote_attacker_cannot_lock_the_guard_out_of_the_screen_in_front_of_them():
    now = [0.0]
    gate = PinGate(hash_pin(PIN, n=2**4), attempts=3, lockout_s=60, clock=lambda: now[0])
    for _ in range(10):
        check = gate.check("000000", REMOTE)
        now[0] += check.locked_for_s
    assert check.source is Source.REMOTE and check.outcome is PinOutcome.LOCKED
    local = gate.check(PIN, "127.0.0.1")
    assert (local.outcome, local.source) == (PinOutcome.OK, Source.LOCAL)
    assert "::1" in LOCAL_ADDRESSES


def test_remote_addresses_share_one_count_so_many_guess_no_faster_than_one():
    gate = PinGate(hash_pin(PIN, n=2**4), attempts=3, lockout_s=60, clock=lambda: 0.0)
    outcomes = [gate.check("000000", f"192.0.2.{i}").outcome for i in range(1, 6)]
    assert outcomes == [
        PinOutcome.WRONG,
        PinOutcome.WRONG,
        PinOutcome.LOCKED,
        PinOutcome.LOCKED,
        PinOutcome.LOCKED,
    ]
    fresh_address = gate.check(PIN, "198.51.100.1")
    assert fresh_address.outcome is PinOutcome.LOCKED  # the shared count holds every remote source
    assert gate.check(PIN, "127.0.0.1").outcome is PinOutcome.OK


def test_the_address_table_stays_bounded():
    gate = PinGate(hash_pin(PIN, n=2**4), attempts=100, lockout_s=60, clock=lambda: 0.0)
    for i in range(MAX_SOURCES + 50):
        gate.check("000000", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(gate._addresses) <= MAX_SOURCES


@pytest.mark.parametrize("pin", [None, 246813, ["246813"], "", "9" * 65])
def test_a_pin_that_is_not_a_short_string_is_just_wrong(pin: object):
    gate = PinGate(hash_pin(PIN, n=2**4))
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
    assert "scrypt$n$r$p$salt$hash$digits" in check('enabled = true\npin_hash = "1234"')
    assert "listen" in check(f'listen = "127.0.0.1:99999"\npin_hash = "{hash_pin(PIN, n=2**4)}"')
    four = hash_pin(PIN, n=2**4).rsplit("$", 1)[0] + "$4"
    assert "gate.toml:6: guard_screen.pin_hash: pin_hash is of a 4-digit PIN" in check(
        f'enabled = true\npin_hash = "{four}"'
    )
    assert "pin_lockout_s" in check(f'pin_hash = "{hash_pin(PIN, n=2**4)}"\npin_lockout_s = 0')
