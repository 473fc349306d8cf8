"""Clock trust: believe the wall clock only when there is a reason to, and never after it ran backwards."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from edge import clock as clock_module
from edge.clock import Clock, ClockTrust, kernel_clock_synchronised


def test_modes():
    assert Clock(ClockTrust.TRUSTED).now().trusted is True
    assert Clock(ClockTrust.UNTRUSTED, synchronised=lambda: True).now().trusted is False
    assert Clock(ClockTrust.AUTO, synchronised=lambda: True).now().trusted is True
    assert Clock(ClockTrust.AUTO, synchronised=lambda: False).now().trusted is False
    assert Clock(ClockTrust.AUTO, synchronised=lambda: None).now().trusted is False


def test_kernel_query_answers_without_raising():
    assert kernel_clock_synchronised() in (True, False, None)


def test_a_clock_that_goes_backwards_is_never_trusted_again(monkeypatch: pytest.MonkeyPatch):
    clock = Clock(ClockTrust.TRUSTED)
    assert clock.now().trusted
    real = time.time
    monkeypatch.setattr(clock_module.time, "time", lambda: real() - 3600)
    assert clock.now().trusted is False
    monkeypatch.setattr(clock_module.time, "time", real)
    assert clock.now().trusted is False
    assert "went back" in (clock.distrust_reason or "")


def test_a_clock_behind_the_newest_stored_event_is_not_trusted():
    future = datetime.now(UTC) + timedelta(days=1)
    clock = Clock(ClockTrust.TRUSTED, not_before=future)
    assert clock.now().trusted is False
    assert "newest stored event" in (clock.distrust_reason or "")
