"""Clock trust: lost on a reason, earned back by a synchronisation, and an estimate in between.

Every source (wall clock, boot clock, the kernel's NTP state, the boot id) is injected
through ``FakeTime`` (tests/edge/clock_support.py), which behaves as Linux does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.clock import (
    ANCHOR_ERROR_S,
    DRIFT_PPM,
    Clock,
    ClockReading,
    ClockTrust,
    KernelSync,
    kernel_clock_synchronised,
    kernel_sync_state,
)
from protocol.passes.decision import MAX_CLOCK_ERROR_S

from .clock_support import FakeTime, anchor_file

T = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)


def test_modes():
    fake = FakeTime(T)
    fake.synchronise()
    assert fake.clock(ClockTrust.TRUSTED).now().trusted is True
    assert fake.clock(ClockTrust.UNTRUSTED).now().trusted is False
    assert fake.clock(ClockTrust.AUTO).now().trusted is True
    fake.synced = False
    assert fake.clock(ClockTrust.AUTO).now().trusted is False
    assert Clock(ClockTrust.AUTO, synchronised=lambda: None).now().trusted is False
    assert Clock(ClockTrust.AUTO, synchronised=lambda: True).now().trusted is True  # a plain bool source


def test_kernel_query_answers_without_raising():
    assert kernel_clock_synchronised() in (True, False, None)
    state = kernel_sync_state()
    assert state.synchronised in (True, False, None)
    assert state.maxerror_us is None or state.maxerror_us >= 0


def test_a_trusted_reading_is_exact_and_bounds_itself():
    fake = FakeTime(T)
    fake.synchronise()
    reading = fake.clock().now()
    assert reading == ClockReading(T, True, 0.0)
    assert reading.bounded and reading.earliest == reading.latest == T


# -- the three stories of issue 13 ---------------------------------------------------------


def test_boot_to_an_older_time_then_synchronise_regains_trust():
    """fake-hwclock restores a time older than the newest event; NTP then synchronises."""
    newest_event = T
    fake = FakeTime(T - timedelta(hours=1))  # fake-hwclock: saved an hour before the power cut
    changes: list[tuple[bool, str]] = []
    clock = fake.clock(not_before=newest_event, on_change=lambda r, why: changes.append((r.trusted, why)))
    first = clock.now()
    assert first.trusted is False and first.error_s is None  # nothing trusted in this boot: a lower bound
    assert first.wall >= newest_event  # the newest stored event bounds the time better than the wall clock
    fake.advance(30)
    assert clock.now().wall >= newest_event + timedelta(seconds=30)

    fake.synchronise(T + timedelta(minutes=10))  # NTP reaches the console: the true time
    regained = clock.now()
    assert regained.trusted is True and regained.wall == T + timedelta(minutes=10)
    assert clock.distrust_reason is None
    assert changes == [(True, "synchronised")]


def test_synchronised_but_behind_the_newest_event_is_not_trusted():
    """A time server behind the gate's own past (a console whose clock is wrong) earns nothing."""
    fake = FakeTime(T - timedelta(hours=1))
    clock = fake.clock(not_before=T)
    fake.synchronise()  # synchronised, but to a time before the newest stored event
    reading = clock.now()
    assert reading.trusted is False
    assert "newest stored event" in (clock.distrust_reason or "")
    fake.advance(3601)
    assert clock.now().trusted is True  # the same server, now past the floor


def test_a_synchronised_clock_stepped_back_is_distrusted_until_a_synchronisation_after_the_step():
    fake = FakeTime(T)
    fake.synchronise()
    clock = fake.clock()
    assert clock.now().trusted
    fake.advance(60)
    fake.set_wall(T - timedelta(hours=3))  # someone runs date -s (or a bad time source steps it)
    stepped = clock.now()
    assert stepped.trusted is False
    assert "went back" in (clock.distrust_reason or "")
    # The time is not lost: the last trusted reading plus the boot clock since.
    assert stepped.error_s is not None and stepped.error_s < 1
    assert abs((stepped.wall - (T + timedelta(seconds=60))).total_seconds()) < 0.01

    fake.advance(120)
    assert clock.now().trusted is False  # nothing synchronised since the step
    fake.synchronise(T + timedelta(seconds=180))  # the daemon's next update, after the step
    assert clock.now().trusted is True


def test_a_step_the_kernel_did_not_flag_waits_for_the_next_update():
    """A step while the kernel stays synchronised (a daemon's own step) waits for its next update.

    Catching up with the old time is not enough: the maximum error must fall, which only
    an update after the step does.
    """
    fake = FakeTime(T)
    fake.synchronise()
    clock = fake.clock()
    assert clock.now().trusted
    fake.advance(10)
    fake.wall_s -= 5  # stepped back 5 s; the kernel still says synchronised, its error keeps growing
    assert clock.now().trusted is False
    fake.advance(30)  # the wall clock is past every trusted time again
    assert fake.synced and clock.now().trusted is False
    fake.synchronise()  # the maximum error falls: an update after the step
    assert clock.now().trusted is True


def test_no_synchronisation_at_all_stays_distrusted_with_a_lower_bound():
    newest_event = T
    fake = FakeTime(T - timedelta(days=2))
    clock = fake.clock(not_before=newest_event)
    for _ in range(50):
        fake.advance(600)
        reading = clock.now()
        assert reading.trusted is False
        assert reading.error_s is None and reading.latest is None
    # Never earlier than the newest event plus the time since the agent started.
    assert reading.wall >= newest_event + timedelta(seconds=50 * 600)


def test_a_plain_bool_source_needs_to_be_seen_unsynchronised_after_a_step():
    """A kernel source without a maximum error clears a step only by unsynchronised -> synchronised."""
    state = {"synced": True}
    fake = FakeTime(T)
    clock = Clock(synchronised=lambda: state["synced"], wall=fake.wall, monotonic=fake.mono, recheck_s=0.0)
    assert clock.now().trusted
    fake.wall_s -= 10
    assert clock.now().trusted is False
    fake.advance(20)
    assert clock.now().trusted is False
    state["synced"] = False
    assert clock.now().trusted is False
    state["synced"] = True
    assert clock.now().trusted is True


# -- the estimate: last trusted reading plus boot clock --------------------------------------


def test_the_estimate_error_grows_with_time_and_gives_way_to_a_lower_bound():
    fake = FakeTime(T)
    fake.synchronise()
    clock = fake.clock()
    clock.now()
    fake.synced = False  # NTP lost for good: the kernel gives up on its own after a while
    fake.advance(3600)
    reading = clock.now()
    assert reading.trusted is False
    assert reading.error_s == pytest.approx(ANCHOR_ERROR_S + DRIFT_PPM * 1e-6 * 3600)
    assert reading.earliest < T + timedelta(hours=1) < reading.latest  # type: ignore[operator]
    days = (MAX_CLOCK_ERROR_S - ANCHOR_ERROR_S) / (DRIFT_PPM * 1e-6) / 86400
    fake.advance(days * 86400 + 3600)
    late = clock.now()
    assert late.error_s is None  # too unsure to be an estimate: a lower bound (estimate minus error)
    assert late.wall <= datetime.fromtimestamp(fake.wall_s, UTC)


def test_the_estimate_survives_an_agent_restart_in_the_same_boot(tmp_path: Path):
    fake = FakeTime(T)
    fake.synchronise()
    fake.clock(anchor_path=anchor_file(tmp_path)).now()
    saved = json.loads(anchor_file(tmp_path).read_text())
    assert saved["boot_id"] == fake.boot and saved["wall"] == T.timestamp()

    fake.advance(600)
    fake.synced = False
    restarted = fake.clock(anchor_path=anchor_file(tmp_path)).now()
    assert restarted.trusted is False and restarted.error_s is not None
    assert abs((restarted.wall - (T + timedelta(seconds=600))).total_seconds()) < 0.01


def test_a_wall_clock_set_back_while_the_agent_was_down_is_a_step(tmp_path: Path):
    fake = FakeTime(T)
    fake.synchronise()
    fake.clock(anchor_path=anchor_file(tmp_path)).now()
    fake.advance(600)
    fake.wall_s -= 3600  # set back by an hour, and the kernel not told (or told again since)
    clock = fake.clock(anchor_path=anchor_file(tmp_path))
    assert clock.now().trusted is False
    assert "went back" in (clock.distrust_reason or "")


def test_after_a_reboot_the_saved_anchor_is_a_floor_not_an_estimate(tmp_path: Path):
    fake = FakeTime(T)
    fake.synchronise()
    fake.clock(anchor_path=anchor_file(tmp_path)).now()
    fake.reboot(T - timedelta(hours=5))  # power cut; fake-hwclock saved five hours before it
    clock = fake.clock(anchor_path=anchor_file(tmp_path))
    reading = clock.now()
    assert reading.trusted is False and reading.error_s is None
    assert reading.wall >= T
    assert "last trusted time" in (clock.distrust_reason or "") or "synchronised" in (
        clock.distrust_reason or ""
    )
    fake.synchronise(T - timedelta(minutes=1))  # a synchronised time before the last trusted one
    assert clock.now().trusted is False
    fake.synchronise(T + timedelta(hours=2))
    assert clock.now().trusted is True


def test_a_damaged_anchor_file_is_ignored(tmp_path: Path):
    anchor_file(tmp_path).write_text("{not json", encoding="utf-8")
    fake = FakeTime(T)
    fake.synchronise()
    assert fake.clock(anchor_path=anchor_file(tmp_path)).now().trusted is True


def test_trusted_mode_comes_back_once_past_the_floor():
    """``trust = "trusted"`` asks no kernel: a step back clears when the clock is past every trusted time."""
    fake = FakeTime(T)
    clock = fake.clock(ClockTrust.TRUSTED)
    assert clock.now().trusted
    fake.wall_s -= 3600
    assert clock.now().trusted is False
    assert "went back" in (clock.distrust_reason or "")
    fake.advance(1800)
    assert clock.now().trusted is False
    fake.wall_s += 3600
    assert clock.now().trusted is True


def test_a_clock_behind_the_newest_stored_event_is_not_trusted():
    future = datetime.now(UTC) + timedelta(days=1)
    clock = Clock(ClockTrust.TRUSTED, not_before=future)
    assert clock.now().trusted is False
    assert "newest stored event" in (clock.distrust_reason or "")


def test_kernel_sync_accepts_a_bare_state():
    assert KernelSync(True).maxerror_us is None
