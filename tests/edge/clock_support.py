"""A gate's three time sources (wall clock, boot clock, kernel NTP state) driven by a test.

The kernel is modelled as Linux behaves: ``settimeofday`` (``date -s``, fake-hwclock)
marks it unsynchronised with the maximum error at 16 s; an NTP daemon's update marks it
synchronised with a small maximum error; between updates the error grows 500 µs a second.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.clock import Clock, ClockTrust, KernelSync

UNSYNC_MAXERROR_US = 16_000_000
SYNC_MAXERROR_US = 40_000
_boots = itertools.count(1)


class FakeTime:
    def __init__(self, wall: datetime, *, uptime_s: float = 30.0) -> None:
        self.wall_s = wall.timestamp()
        self.mono_s = uptime_s
        self.synced = False
        self.maxerror_us = UNSYNC_MAXERROR_US
        self.boot = f"boot-{next(_boots)}"

    # -- the sources a Clock reads -----------------------------------------------------

    def wall(self) -> float:
        return self.wall_s

    def mono(self) -> float:
        return self.mono_s

    def kernel(self) -> KernelSync:
        return KernelSync(self.synced, self.maxerror_us)

    def boot_id(self) -> str:
        return self.boot

    def clock(self, trust: ClockTrust = ClockTrust.AUTO, **kwargs: Any) -> Clock:
        """A clock on these sources that asks the kernel at every reading."""
        kwargs.setdefault("recheck_s", 0.0)
        return Clock(
            trust,
            synchronised=self.kernel,
            wall=self.wall,
            monotonic=self.mono,
            boot_id=self.boot_id,
            **kwargs,
        )

    # -- what happens to a gate --------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks run, the kernel's error bound grows."""
        self.wall_s += seconds
        self.mono_s += seconds
        self.maxerror_us = min(UNSYNC_MAXERROR_US, self.maxerror_us + int(500 * seconds))

    def set_wall(self, when: datetime) -> None:
        """``settimeofday``: the kernel forgets it was synchronised."""
        self.wall_s = when.timestamp()
        self.synced = False
        self.maxerror_us = UNSYNC_MAXERROR_US

    def synchronise(self, true_time: datetime | None = None) -> None:
        """An NTP daemon's update: steps the clock to ``true_time`` if given, marks it synchronised."""
        if true_time is not None:
            self.wall_s = true_time.timestamp()
        self.synced = True
        self.maxerror_us = SYNC_MAXERROR_US

    def reboot(self, wall: datetime) -> None:
        """Power back: a new boot, the boot clock from zero, the wall clock where fake-hwclock put it."""
        self.boot = f"boot-{next(_boots)}"
        self.mono_s = 20.0
        self.set_wall(wall)


def anchor_file(tmp_path: Path) -> Path:
    return tmp_path / "outbox.clock.json"
