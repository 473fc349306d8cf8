"""Whether the gate may believe its own wall clock.

A Raspberry Pi has no real-time clock: after a power cut it boots at the last time
``fake-hwclock`` saved (or 1970) and jumps when NTP reaches a server, which may be never
while the network is down.  Every event therefore carries ``clock_trusted``.  The
clock is trusted when the configuration says so, or (``auto``) when the kernel reports
that the clock is synchronised (``adjtimex`` does not return ``TIME_ERROR``) — and in
every mode it stops being trusted the moment it is seen to go backwards, compared with
the monotonic clock, or to read earlier than the newest event already on disk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

log = logging.getLogger("gatepost.edge.clock")

_TIME_ERROR = 5
BACKWARDS_TOLERANCE_S = 1.0
"""Steps smaller than this (NTP slewing, scheduling noise) are not treated as a jump."""


class ClockTrust(StrEnum):
    AUTO = "auto"
    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"


@dataclass(frozen=True, slots=True)
class ClockReading:
    wall: datetime
    trusted: bool


def kernel_clock_synchronised() -> bool | None:
    """``True``/``False`` from ``adjtimex(2)``; ``None`` where the call is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex with modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


class Clock:
    """Reads wall time and says whether to believe it."""

    def __init__(
        self,
        trust: ClockTrust = ClockTrust.AUTO,
        *,
        not_before: datetime | None = None,
        synchronised: Callable[[], bool | None] = kernel_clock_synchronised,
        recheck_s: float = 10.0,
    ) -> None:
        self.trust = trust
        self._synchronised = synchronised
        self._recheck_s = recheck_s
        self._lock = threading.Lock()
        self._distrust_reason: str | None = None
        self._last_wall = time.time()
        self._last_mono = time.monotonic()
        self._sync_state: bool | None = None
        self._sync_checked = float("-inf")
        if not_before is not None and datetime.now(UTC) < not_before.astimezone(UTC):
            self._distrust(
                f"wall clock reads earlier than the newest stored event ({not_before.isoformat()})"
            )

    def _distrust(self, reason: str) -> None:
        if self._distrust_reason is None:
            log.warning("clock no longer trusted: %s", reason)
        self._distrust_reason = reason

    @property
    def distrust_reason(self) -> str | None:
        return self._distrust_reason

    def _kernel_says(self, mono: float) -> bool:
        if mono - self._sync_checked >= self._recheck_s:
            self._sync_state = self._synchronised()
            self._sync_checked = mono
        return bool(self._sync_state)

    def now(self) -> ClockReading:
        with self._lock:
            wall, mono = time.time(), time.monotonic()
            expected = self._last_wall + (mono - self._last_mono)
            if wall < expected - BACKWARDS_TOLERANCE_S:
                self._distrust(f"wall clock went back {expected - wall:.1f} s")
            self._last_wall, self._last_mono = wall, mono
            if self._distrust_reason is not None or self.trust is ClockTrust.UNTRUSTED:
                trusted = False
            elif self.trust is ClockTrust.TRUSTED:
                trusted = True
            else:
                trusted = self._kernel_says(mono)
            return ClockReading(datetime.fromtimestamp(wall, UTC), trusted)
