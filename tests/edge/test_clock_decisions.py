"""What each state of the gate's clock may grant (docs/clock.md), with a real clock on injected sources.

The threat is the one of issue 13: an old screenshot of a phone pass's dynamic code.  In
no clock state may it open the door; a fresh code opens it whenever the gate can tell it
is fresh, and — only with no trusted time since boot — within a bounded window after the
gate's lower bound, flagged for review.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.clock import Clock, ClockReading
from edge.credentials import check as check_card
from edge.door import DoorCommandError, DoorSettings, RemoteRefusal, remote_unlock_seconds
from protocol.credentials import CardEntry
from protocol.messages import Command
from protocol.passes import Flag, GatePolicy, Reason, UntrustedClockPolicy, decide
from protocol.passes.format import DailyWindow
from tests.passes.conftest import NOW, Site, make_site

from .clock_support import FakeTime

SCREENSHOT_AGE = timedelta(minutes=10)


@pytest.fixture
def site() -> Site:
    return make_site()


def trusted_clock() -> tuple[FakeTime, Clock]:
    fake = FakeTime(NOW)
    fake.synchronise()
    clock = fake.clock()
    assert clock.now().trusted
    return fake, clock


def anchored_clock() -> tuple[FakeTime, Clock]:
    """Trusted, then stepped back three hours: untrusted, but the boot clock keeps the time."""
    fake, clock = trusted_clock()
    fake.advance(5)
    fake.set_wall(NOW - timedelta(hours=3))
    fake.advance(25)  # true time: NOW + 30 s
    reading = clock.now()
    assert not reading.trusted and reading.error_s is not None
    return fake, clock


def rebooted_clock() -> tuple[FakeTime, Clock]:
    """A power cut: fake-hwclock's time an hour old, the newest stored event five minutes old."""
    fake = FakeTime(NOW - timedelta(hours=1))
    clock = fake.clock(not_before=NOW - timedelta(minutes=5))
    reading = clock.now()
    assert not reading.trusted and reading.error_s is None
    return fake, clock


def never_synchronised_clock() -> tuple[FakeTime, Clock]:
    """A gate without NTP or RTC: the wall clock runs from wherever it was, a day behind."""
    fake = FakeTime(NOW - timedelta(days=1))
    clock = fake.clock(not_before=NOW - timedelta(days=1, minutes=1))
    for _ in range(10):
        fake.advance(60)
        assert not clock.now().trusted
    return fake, clock


STATES = {
    "trusted": trusted_clock,
    "anchored": anchored_clock,
    "rebooted": rebooted_clock,
    "never_synchronised": never_synchronised_clock,
}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("policy", list(UntrustedClockPolicy))
def test_an_old_screenshot_of_a_dynamic_code_is_refused_in_every_clock_state(
    site: Site, state: str, policy: UntrustedClockPolicy
):
    _fake, clock = STATES[state]()
    gate = site.gate(policy=GatePolicy(untrusted_clock=policy, revocation_max_age=timedelta(days=30)))
    reading = clock.now()
    screenshot = site.dynamic_code(reading.wall - SCREENSHOT_AGE)
    decision = decide(screenshot, reading, gate)
    assert (decision.granted, decision.reason) == (False, Reason.BAD_DYNAMIC_CODE)
    older = site.dynamic_code(NOW - timedelta(days=3))
    assert decide(older, clock.now(), gate).reason is Reason.BAD_DYNAMIC_CODE


def test_a_screenshot_from_the_stepped_back_wall_clock_is_refused(site: Site):
    """Setting the clock back to when a screenshot was taken does not bring the screenshot back."""
    fake, clock = anchored_clock()
    taken_at = datetime.fromtimestamp(fake.wall_s, UTC)  # what the stepped-back clock reads
    gate = site.gate(policy=GatePolicy(revocation_max_age=timedelta(days=30)))
    assert decide(site.dynamic_code(taken_at), clock.now(), gate).reason is Reason.BAD_DYNAMIC_CODE


@pytest.mark.parametrize("policy", list(UntrustedClockPolicy))
def test_a_fresh_code_at_an_anchored_gate_is_checked_against_the_estimate(
    site: Site, policy: UntrustedClockPolicy
):
    """Anchored: the estimate is a time like a trusted one; granted, flagged ``clock_untrusted`` only."""
    fake, clock = anchored_clock()
    gate = site.gate(policy=GatePolicy(untrusted_clock=policy, revocation_max_age=timedelta(days=30)))
    true_time = NOW + timedelta(seconds=30)
    decision = decide(site.dynamic_code(true_time), clock.now(), gate)
    assert decision.granted and decision.flags == {Flag.CLOCK_UNTRUSTED}
    again = decide(site.dynamic_code(true_time), clock.now(), gate)
    assert again.reason is Reason.REPLAYED

    fake.synced = False  # days without NTP: the estimate's error grows, the window with it
    fake.advance(3 * 86400)
    reading = clock.now()
    assert reading.error_s is not None and reading.error_s > 50
    late = true_time + timedelta(days=3, seconds=30)
    assert decide(site.dynamic_code(late), reading, gate).granted
    assert decide(site.dynamic_code(late - SCREENSHOT_AGE), reading, gate).reason is Reason.BAD_DYNAMIC_CODE


def test_a_fresh_code_after_a_reboot_is_granted_only_within_the_window_and_flagged(site: Site):
    """Lower bound only: ``grant_and_flag`` accepts codes up to the window after the bound, flagged."""
    _fake, clock = rebooted_clock()
    window = timedelta(minutes=30)
    lenient = site.gate(
        policy=GatePolicy(untrusted_dynamic_window=window, revocation_max_age=timedelta(days=30))
    )
    reading = clock.now()
    fresh = decide(site.dynamic_code(NOW), reading, lenient)  # the power cut lasted five minutes
    assert fresh.granted and fresh.flags == {Flag.CLOCK_UNTRUSTED, Flag.DYNAMIC_UNVERIFIED}
    assert decide(site.dynamic_code(NOW), reading, lenient).reason is Reason.REPLAYED
    too_late = reading.wall + window + timedelta(minutes=2)
    assert decide(site.dynamic_code(too_late), reading, lenient).reason is Reason.BAD_DYNAMIC_CODE

    strict = site.gate(
        policy=GatePolicy(untrusted_clock=UntrustedClockPolicy.DENY, revocation_max_age=timedelta(days=30))
    )
    assert decide(site.dynamic_code(NOW), reading, strict).reason is Reason.BAD_DYNAMIC_CODE
    at_bound = decide(site.dynamic_code(reading.wall), reading, strict)
    assert at_bound.granted and at_bound.flags == {Flag.CLOCK_UNTRUSTED}


def test_an_anchored_gate_checks_time_windows_instead_of_waiving_them(site: Site):
    """Static passes and cards: an estimate enforces daily windows and start dates; a lower bound waives them."""
    _fake, clock = anchored_clock()  # NOW is 15:30 in Asia/Shanghai
    gate = site.gate(policy=GatePolicy(revocation_max_age=timedelta(days=30)))
    milk = site.code(daily_window=DailyWindow.from_hours("06:00", "09:00"))
    reading = clock.now()
    assert decide(milk, reading, gate).reason is Reason.OUTSIDE_TIME_WINDOW
    card = CardEntry("wiegand26:1:1", holder="x", unit="1", valid_from=NOW + timedelta(days=1))
    judged = check_card(card, reading.wall, False, UTC, time_bounded=True)
    assert judged.reason is Reason.NOT_YET_VALID

    _fake, rebooted = rebooted_clock()
    lower = rebooted.now()
    assert decide(milk, lower, gate).granted  # grant_and_flag: the time of day is unknown
    assert check_card(card, lower.wall, False, UTC).granted


def test_a_remote_unlock_uses_the_estimate_and_its_error():
    """The door's expiry check: an estimate accepts a command that is unexpired at its latest."""
    settings = DoorSettings()
    _fake, anchored = anchored_clock()
    reading = anchored.estimate()
    assert reading.latest is not None

    def command(expires_in: timedelta) -> Command:
        return Command(
            id="c1" * 16, name="unlock", args={}, issued_at=reading.wall, expires_at=reading.wall + expires_in
        )

    def unlock(cmd: Command, at: ClockReading) -> float:
        return remote_unlock_seconds(
            cmd, retained=False, now=at.wall, clock_trusted=at.trusted, error_s=at.error_s, settings=settings
        )

    assert unlock(command(timedelta(seconds=20)), reading) == settings.unlock_s
    with pytest.raises(DoorCommandError) as caught:
        unlock(command(timedelta(seconds=(reading.error_s or 0) / 2)), reading)
    assert caught.value.reason is RemoteRefusal.EXPIRED

    _fake, rebooted = rebooted_clock()
    with pytest.raises(DoorCommandError) as caught:
        unlock(command(timedelta(seconds=20)), rebooted.estimate())
    assert caught.value.reason is RemoteRefusal.CLOCK_UNTRUSTED


def test_a_gate_never_synchronised_refuses_codes_beyond_the_window_after_its_bound(site: Site):
    """No NTP, no RTC: the gate is a day behind, and a code of the true time is as unknowable
    as a day-old screenshot; the guard checks the holder by hand (docs/clock.md)."""
    _fake, clock = never_synchronised_clock()
    gate = site.gate(policy=GatePolicy(revocation_max_age=timedelta(days=30)))
    assert decide(site.dynamic_code(NOW), clock.now(), gate).reason is Reason.BAD_DYNAMIC_CODE
    assert decide(site.code(), clock.now(), gate).granted  # a printed pass still opens, flagged
