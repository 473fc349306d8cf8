from __future__ import annotations

from datetime import UTC, datetime, timedelta

from protocol.passes.dynamic import ReplayGuard, code_at, current_code, matching_step, pass_key, time_step

RFC6238_SHA256_KEY = b"12345678901234567890123456789012"


def test_codes_match_rfc_6238_sha256_vectors():
    # RFC 6238 Appendix B, SHA256 column, 8 digits, 30 s steps
    vectors = {59: "46119246", 1111111109: "68084774", 1111111111: "67062674", 1234567890: "91819424"}
    for unix, expected in vectors.items():
        assert code_at(RFC6238_SHA256_KEY, unix // 30) == expected


def test_per_pass_keys_differ_by_serial_generation_and_secret():
    base = pass_key(b"a" * 32, 1, 0)
    assert base != pass_key(b"a" * 32, 2, 0)
    assert base != pass_key(b"a" * 32, 1, 1)
    assert base != pass_key(b"b" * 32, 1, 0)
    assert len(base) == 32


def test_current_step_and_one_either_side_match_and_no_further():
    key = pass_key(b"k" * 32, 42, 3)
    now = datetime(2026, 3, 2, 7, 30, 10, tzinfo=UTC)
    step = time_step(now)
    for offset in (-1, 0, 1):
        assert matching_step(key, code_at(key, step + offset), step) == step + offset
    for offset in (-3, -2, 2, 3):
        assert matching_step(key, code_at(key, step + offset), step) is None
    assert current_code(key, now + timedelta(seconds=30)) == code_at(key, step + 1)


def test_replay_guard_forgets_steps_that_can_no_longer_be_accepted():
    guard = ReplayGuard(skew=1)
    guard.record(7, 100, current_step=100)
    assert guard.seen(7, 100) and not guard.seen(8, 100) and not guard.seen(7, 101)
    guard.record(8, 110, current_step=110)
    assert not guard.seen(7, 100)
    assert len(guard) == 1
