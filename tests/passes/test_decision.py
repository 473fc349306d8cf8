from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from protocol.passes import (
    ClockReading,
    Flag,
    GatePolicy,
    Reason,
    Role,
    StalePolicy,
    UntrustedClockPolicy,
    decide,
    retire,
    rotate,
    seal_bundle,
)
from protocol.passes.codec import MARKER, bytes_to_digits, digits_to_bytes

from .conftest import MILK_WINDOW, NOW, make_site

T = ClockReading(NOW, True)


def at(when: datetime, trusted: bool = True) -> ClockReading:
    return ClockReading(when, trusted)


def test_a_good_pass_is_granted_with_its_info(site):
    state = site.gate()
    d = decide(site.code(), T, state)
    assert (d.granted, d.reason, d.flags) == (True, Reason.GRANTED, frozenset())
    assert d.pass_info is not None and d.pass_info.holder == "王小明"


def test_edge_clock_readings_are_accepted_as_they_are(site):
    from edge.clock import ClockReading as EdgeReading

    assert decide(site.code(), EdgeReading(NOW, True), site.gate()).granted


# -- the forged corpus ------------------------------------------------------------------


def flip_digit(code: str, index: int) -> str:
    digit = str((int(code[index]) + 1) % 10)
    return code[:index] + digit + code[index + 1 :]


def flip_bit(code: str, bit: int) -> str:
    data = bytearray(digits_to_bytes(code[len(MARKER) + 1 :]))
    data[bit // 8] ^= 1 << (bit % 8)
    return code[: len(MARKER) + 1] + bytes_to_digits(bytes(data))


def test_every_single_bit_flip_is_denied_with_a_forgery_reason(site):
    state = site.gate()
    code = site.code()
    n_bits = 8 * len(digits_to_bytes(code[len(MARKER) + 1 :]))
    reasons = {}
    for bit in range(n_bits):
        d = decide(flip_bit(code, bit), T, state)
        assert not d.granted, bit
        reasons[d.reason] = reasons.get(d.reason, 0) + 1
    assert set(reasons) <= {Reason.BAD_SIGNATURE, Reason.MALFORMED, Reason.UNKNOWN_KEY}
    assert reasons[Reason.BAD_SIGNATURE] > n_bits // 2
    assert sum(reasons.values()) == n_bits


def test_every_single_digit_change_and_truncation_is_denied(site):
    state = site.gate()
    code = site.code()
    for i in range(len(MARKER) + 1, len(code)):
        d = decide(flip_digit(code, i), T, state)
        assert not d.granted and d.reason in {Reason.BAD_SIGNATURE, Reason.MALFORMED, Reason.UNKNOWN_KEY}, i
    for cut in range(1, len(code)):
        d = decide(code[:cut], T, state)
        assert not d.granted and d.reason in {Reason.MALFORMED, Reason.UNKNOWN}, cut


def test_wrong_key_with_a_listed_kid_is_a_bad_signature(site):
    d = decide(site.code(key=SigningKey.generate()), T, site.gate())
    assert (d.granted, d.reason, d.pass_info) == (False, Reason.BAD_SIGNATURE, None)


def test_kid_not_in_the_bundle_is_an_unknown_key(site):
    d = decide(site.code(kid=site.kid + 40), T, site.gate())
    assert (d.granted, d.reason) == (False, Reason.UNKNOWN_KEY)


def test_retired_key_is_refused(site):
    state = site.gate()
    code = site.code()
    assert state.trust.apply(
        seal_bundle(retire(site.bundle, site.kid, now=NOW - timedelta(hours=1)), site.root)
    ).applied
    d = decide(code, T, state)
    assert (d.granted, d.reason, d.detail) == (False, Reason.UNKNOWN_KEY, f"kid {site.kid} retired")


def test_passes_of_a_rotated_out_key_work_until_the_grace_ends(site):
    state = site.gate()
    code = site.code()
    rotated, _ = rotate(
        site.bundle, SigningKey.generate(), now=NOW, lifetime=timedelta(days=90), grace=timedelta(days=2)
    )
    state.trust.apply(seal_bundle(rotated, site.root))
    assert decide(code, at(NOW + timedelta(days=1)), state).granted
    assert decide(code, at(NOW + timedelta(days=2)), state).reason is Reason.UNKNOWN_KEY


def test_expired_and_not_yet_valid(site):
    state = site.gate()
    expired = site.code(valid_from=NOW - timedelta(days=2), valid_until=NOW - timedelta(minutes=1))
    future = site.code(valid_from=NOW + timedelta(hours=1), valid_until=NOW + timedelta(days=1))
    assert decide(expired, T, state).reason is Reason.EXPIRED
    assert decide(future, T, state).reason is Reason.NOT_YET_VALID
    boundary = site.code(valid_from=NOW - timedelta(days=1), valid_until=NOW)
    assert decide(boundary, T, state).reason is Reason.EXPIRED  # valid_until is exclusive


def test_revoked_by_serial_and_by_generation(site):
    state = site.gate()
    assert state.revocation.apply(site.revocations(serials=[111], before={222: 5})).applied
    assert decide(site.code(serial=111), T, state).reason is Reason.REVOKED
    assert decide(site.code(serial=222, generation=4), T, state).reason is Reason.REVOKED
    assert decide(site.code(serial=222, generation=5), T, state).granted


def test_wrong_site_and_wrong_zone(site):
    state = site.gate(policy=GatePolicy(zone=2))
    assert decide(site.code(site_id=8, zones={2}), T, state).reason is Reason.WRONG_SITE
    assert decide(site.code(zones={0, 1}), T, state).reason is Reason.WRONG_ZONE
    assert decide(site.code(zones={2}), T, state).granted


def test_daily_window_is_in_the_sites_time_zone(site):
    state = site.gate()  # bundle time zone: Asia/Shanghai, UTC+8
    milk = site.code(daily_window=MILK_WINDOW, role=Role.SERVICE_WORKER)
    morning = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 06:30 next day in Shanghai
    assert decide(milk, at(morning), state).granted
    d = decide(milk, T, state)  # 15:30 in Shanghai
    assert (d.reason, d.detail) == (Reason.OUTSIDE_TIME_WINDOW, "15:30 Asia/Shanghai")


def test_passback_within_the_window_only(site):
    state = site.gate(policy=GatePolicy(passback=timedelta(minutes=2)))
    code = site.code()
    assert decide(code, T, state).granted
    assert decide(code, at(NOW + timedelta(seconds=30)), state).reason is Reason.PASSBACK
    assert decide(site.code(serial=99), at(NOW + timedelta(seconds=31)), state).granted
    assert decide(code, at(NOW + timedelta(minutes=2)), state).granted


def test_denials_do_not_count_for_passback(site):
    state = site.gate(policy=GatePolicy(passback=timedelta(minutes=2), zone=5))
    code = site.code()
    assert decide(code, T, state).reason is Reason.WRONG_ZONE
    assert decide(site.code(zones={5}), T, state).granted


# -- dynamic codes ------------------------------------------------------------------------


def test_dynamic_code_fresh_is_granted_and_replay_is_refused(site):
    state = site.gate()
    shown = site.dynamic_code(NOW)
    assert decide(shown, T, state).granted
    d = decide(shown, at(NOW + timedelta(seconds=5)), state)
    assert (d.granted, d.reason) == (False, Reason.REPLAYED)
    assert decide(
        site.dynamic_code(NOW + timedelta(seconds=30)), at(NOW + timedelta(seconds=31)), state
    ).granted


def test_dynamic_code_tolerates_one_step_of_clock_difference(site):
    state = site.gate()
    assert decide(site.dynamic_code(NOW - timedelta(seconds=30)), T, state).granted
    assert decide(site.dynamic_code(NOW + timedelta(seconds=30), serial=5), T, state).granted


def test_old_screenshot_and_missing_code_are_bad_dynamic_codes(site):
    state = site.gate()
    old = site.dynamic_code(NOW - timedelta(minutes=5))
    assert decide(old, T, state).reason is Reason.BAD_DYNAMIC_CODE
    static_part = site.code(dynamic=True)
    d = decide(static_part, T, state)
    assert (d.reason, d.detail) == (Reason.BAD_DYNAMIC_CODE, "dynamic pass shown without its code")
    tampered = site.dynamic_code(NOW)
    tampered = tampered[:-8] + str((int(tampered[-8:]) + 1) % 10**8).zfill(8)
    assert decide(tampered, T, state).reason is Reason.BAD_DYNAMIC_CODE


def test_gate_without_site_secret_cannot_accept_dynamic_passes(site):
    state = site.gate()
    state.site_secret = None
    assert decide(site.dynamic_code(NOW), T, state).reason is Reason.BAD_DYNAMIC_CODE


# -- stale revocation list and untrusted clock ------------------------------------------


def test_stale_list_grant_and_flag_or_deny(site):
    later = at(NOW + timedelta(hours=30))
    lenient = site.gate(policy=GatePolicy(revocation_max_age=timedelta(hours=24)))
    d = decide(site.code(), later, lenient)
    assert d.granted and d.flags == {Flag.STALE_REVOCATION_LIST}
    strict = site.gate(policy=GatePolicy(stale_revocation=StalePolicy.DENY))
    assert decide(site.code(), later, strict).reason is Reason.STALE_REVOCATION_LIST
    assert decide(site.code(), T, strict).granted


def test_gate_that_never_had_a_list_is_stale(site):
    strict = site.gate(policy=GatePolicy(stale_revocation=StalePolicy.DENY), fresh_list=False)
    assert decide(site.code(), T, strict).reason is Reason.STALE_REVOCATION_LIST


@pytest.mark.parametrize("policy", list(UntrustedClockPolicy))
def test_untrusted_clock_still_denies_what_a_lower_bound_proves(site, policy):
    state = site.gate(policy=GatePolicy(untrusted_clock=policy))
    expired = site.code(valid_until=NOW - timedelta(minutes=1), valid_from=NOW - timedelta(days=1))
    d = decide(expired, at(NOW, trusted=False), state)
    assert (d.reason, d.flags) == (Reason.EXPIRED, {Flag.CLOCK_UNTRUSTED})
    d = decide(site.code(), at(NOW, trusted=False), state)
    assert d.granted and d.flags == {Flag.CLOCK_UNTRUSTED}


def test_untrusted_clock_waives_unprovable_checks_only_when_lenient(site):
    rebooted = at(NOW - timedelta(days=3), trusted=False)  # fake-hwclock: days behind
    future = site.code(valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=1))
    milk = site.code(daily_window=MILK_WINDOW)
    dynamic = site.dynamic_code(NOW)
    lenient = site.gate(policy=GatePolicy(revocation_max_age=timedelta(days=30)))
    assert decide(future, rebooted, lenient).granted
    assert decide(milk, rebooted, lenient).granted
    # A dynamic code is never waived: three days past the gate's lower bound it could be
    # a three-day-old screenshot (docs/clock.md); within the window after the bound it is
    # granted, flagged.
    assert decide(dynamic, rebooted, lenient).reason is Reason.BAD_DYNAMIC_CODE
    soon = site.dynamic_code(NOW - timedelta(days=3) + timedelta(minutes=20))
    d = decide(soon, rebooted, lenient)
    assert d.granted and d.flags == {Flag.CLOCK_UNTRUSTED, Flag.DYNAMIC_UNVERIFIED}
    strict = site.gate(
        policy=GatePolicy(untrusted_clock=UntrustedClockPolicy.DENY, revocation_max_age=timedelta(days=30))
    )
    assert decide(future, rebooted, strict).reason is Reason.NOT_YET_VALID
    assert decide(milk, rebooted, strict).reason is Reason.OUTSIDE_TIME_WINDOW
    assert decide(dynamic, rebooted, strict).reason is Reason.BAD_DYNAMIC_CODE


# -- properties ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_site():
    """One gate for every hypothesis example (building a site per example would dominate the run)."""
    s = make_site()
    return s, s.gate(), s.code()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.text(max_size=500) | st.text(alphabet="0123456789", max_size=400).map(lambda s: MARKER + "1" + s))
def test_decide_never_raises_and_never_grants_noise(shared_site, text):
    _, state, _ = shared_site
    d = decide(text, T, state)
    assert not d.granted and isinstance(d.reason, Reason)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_edits_of_a_real_pass_are_never_granted(shared_site, data):
    _, state, code = shared_site
    i = data.draw(st.integers(len(MARKER) + 1, len(code) - 1))
    replacement = data.draw(st.text(alphabet="0123456789", min_size=0, max_size=3))
    edited = code[:i] + replacement + code[i + 1 :]
    d = decide(edited, T, state)
    assert d.granted == (edited == code)
