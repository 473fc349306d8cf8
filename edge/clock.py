"""Whether the gate may believe its own wall clock, and what it knows of the time when it may not.

A Raspberry Pi has no real-time clock: after a power cut it boots at the last time
``fake-hwclock`` saved (or 1970) and jumps when NTP reaches a server, which may be never
while the network is down.  Every event therefore carries ``clock_trusted``, and the
rules of docs/clock.md decide what an untrusted clock may still grant.

**Trust** (``auto``, the default) needs both: the kernel reports the clock synchronised
(``adjtimex``: an NTP daemon cleared ``STA_UNSYNC``), and the wall clock reads no earlier
than the *floor* — the newest stored event and every time this gate has trusted before.
Trust is lost when either fails, and when the wall clock is seen to step backwards
against the monotonic clock; after such a step it comes back only with a synchronisation
*after* the step (the kernel's maximum error falling, or unsynchronised turning
synchronised: ``settimeofday`` marks the kernel unsynchronised, and only a daemon's
update clears it).  ``trusted`` skips the kernel (an RTC gate without NTP) but keeps the
floor; ``untrusted`` never trusts.

**Without trust**, a reading is one of two kinds:

- *anchored*: there was a trusted reading in this boot (this process, or one before it,
  persisted with the boot id), so the time is that reading plus the monotonic time since,
  within ``error_s`` (a base error plus ``drift_ppm`` of the elapsed time, capped at
  ``max_error_s``).  A backwards step or a lost NTP server does not lose the time.
- *lower bound* (``error_s`` is ``None``): no trusted reading in this boot.  The true
  time is at least the largest of the wall clock, the floor plus the time since the
  agent started, and the anchor estimate minus its error; how much later it is, nobody
  knows.

The monotonic clock is ``CLOCK_BOOTTIME`` where there is one: it counts a suspend too,
so elapsed time is never overstated, and it is shared by every process of one boot.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from protocol.passes.decision import MAX_CLOCK_ERROR_S

log = logging.getLogger("gatepost.edge.clock")

_TIME_ERROR = 5
_STA_UNSYNC = 0x0040
BACKWARDS_TOLERANCE_S = 1.0
"""Steps smaller than this (NTP slewing, scheduling noise) are not treated as a jump."""
ANCHOR_ERROR_S = 0.5
"""The error of a trusted reading itself: NTP on a LAN is far better; this covers scheduling."""
DRIFT_PPM = 200.0
"""How fast the monotonic clock may run wrong once NTP stops steering it.  A Pi's crystal
is specified to tens of ppm; the kernel keeps the last frequency correction; 200 covers
temperature swings with room to spare (1 s in 83 minutes, 17 s a day)."""
SAVE_ANCHOR_EVERY_S = 60.0
"""How often a trusted reading is written down, so that the next boot knows a floor."""


class ClockTrust(StrEnum):
    AUTO = "auto"
    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"


@dataclass(frozen=True, slots=True)
class ClockReading:
    """The time to use now, whether to trust it, and how far off it may be.

    ``error_s`` is ``0.0`` for a trusted reading; for an untrusted one it is the bound of
    an anchored estimate, or ``None`` when ``wall`` is only a lower bound.
    """

    wall: datetime
    trusted: bool
    error_s: float | None = None

    @property
    def bounded(self) -> bool:
        """Whether the true time is known within ``error_s`` of ``wall`` (trusted, or anchored)."""
        return self.trusted or self.error_s is not None

    @property
    def earliest(self) -> datetime:
        """A time the true time is not before (``wall`` itself for a lower bound)."""
        if self.trusted or self.error_s is None:
            return self.wall
        return self.wall - timedelta(seconds=self.error_s)

    @property
    def latest(self) -> datetime | None:
        """A time the true time is not after, or ``None`` when nothing bounds it from above."""
        if self.trusted:
            return self.wall
        if self.error_s is None:
            return None
        return self.wall + timedelta(seconds=self.error_s)


@dataclass(frozen=True, slots=True)
class KernelSync:
    """What ``adjtimex(2)`` says: synchronised (``None``: cannot ask), and the maximum error.

    An NTP daemon sets ``maxerror`` at each update and the kernel adds 500 µs to it every
    second, so a fall in ``maxerror`` means the daemon updated the clock in between.
    """

    synchronised: bool | None
    maxerror_us: int | None = None


class _Timex(ctypes.Structure):
    """``struct timex`` from <sys/timex.h> (Linux, any word size): the fields read here, then padding."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


def kernel_sync_state() -> KernelSync:
    """The kernel's synchronisation state from ``adjtimex(2)`` with ``modes = 0`` (read only)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        buf = _Timex()
        state = libc.adjtimex(ctypes.byref(buf))
    except (OSError, AttributeError):
        return KernelSync(None)
    if state < 0:
        return KernelSync(None)
    synchronised = state != _TIME_ERROR and not buf.status & _STA_UNSYNC
    return KernelSync(synchronised, int(buf.maxerror))


def kernel_clock_synchronised() -> bool | None:
    """``True``/``False`` from ``adjtimex(2)``; ``None`` where the call is unavailable."""
    return kernel_sync_state().synchronised


def boot_clock() -> float:
    """Seconds since boot, counting suspend (``CLOCK_BOOTTIME``); the monotonic clock elsewhere."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return time.monotonic()
    return time.clock_gettime(boottime)


def current_boot_id() -> str | None:
    """The kernel's id of this boot: a saved monotonic reading means something only within it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


SyncSource = Callable[[], "KernelSync | bool | None"]
ChangeHook = Callable[[ClockReading, str], None]


class Clock:
    """Reads wall time and says whether to believe it; every source is injectable for tests.

    ``synchronised`` is the kernel (``KernelSync``, or a plain bool for a source that has
    no maximum error), ``wall`` the wall clock (seconds since the epoch), ``monotonic``
    the boot clock, ``boot_id`` names the boot.  ``anchor_path`` keeps the last trusted
    reading across restarts.  ``on_change(reading, detail)`` is told when trust is lost
    or regained (outside the clock's lock; it may read the clock again).
    """

    def __init__(
        self,
        trust: ClockTrust = ClockTrust.AUTO,
        *,
        not_before: datetime | None = None,
        synchronised: SyncSource = kernel_sync_state,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = boot_clock,
        boot_id: Callable[[], str | None] = current_boot_id,
        anchor_path: Path | None = None,
        recheck_s: float = 10.0,
        drift_ppm: float = DRIFT_PPM,
        max_error_s: float = MAX_CLOCK_ERROR_S,
        on_change: ChangeHook | None = None,
    ) -> None:
        self.trust = trust
        self._synchronised = synchronised
        self._wall = wall
        self._mono = monotonic
        self._boot_id = boot_id() if anchor_path is not None else None
        self._anchor_path = anchor_path
        self._recheck_s = recheck_s
        self._drift = drift_ppm * 1e-6
        self._max_error_s = max_error_s
        self.on_change = on_change
        self._lock = threading.Lock()

        start_mono = self._mono()
        self._floor = not_before.astimezone(UTC).timestamp() if not_before is not None else -math.inf
        """No trusted reading may be earlier than this: the newest stored event, every trusted time."""
        self._floor_why = "the newest stored event" if not_before is not None else ""
        self._low: tuple[float, float] = (self._floor, start_mono)
        """(wall, mono): at ``mono`` the true time was at least ``wall`` (the floor predates this process)."""
        self._anchor: tuple[float, float] | None = None
        """(wall, mono) of the last trusted reading in this boot."""
        self._saved_mono = -math.inf
        self._save_failed = False
        self._last: tuple[float, float] | None = None
        self._step: tuple[str, int | None, bool] | None = None
        """A backwards step not yet followed by a synchronisation: (why, maxerror then, seen unsynchronised)."""
        self._sample = KernelSync(None)
        self._sample_mono = -math.inf
        self._reason: str | None = None
        self._was_trusted: bool | None = None
        self._load_anchor(start_mono)

    # -- the anchor file ---------------------------------------------------------------

    def _load_anchor(self, start_mono: float) -> None:
        if self._anchor_path is None:
            return
        try:
            raw = json.loads(self._anchor_path.read_text(encoding="utf-8"))
            wall, mono, boot = float(raw["wall"]), float(raw["mono"]), raw.get("boot_id")
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the saved clock anchor %s: %s", self._anchor_path, exc)
            return
        if not math.isfinite(wall) or not math.isfinite(mono):
            return
        if wall > self._floor:
            self._floor, self._floor_why = wall, "the last trusted time"
        if boot is not None and boot == self._boot_id and mono <= start_mono:
            # The same boot: the monotonic clock still counts from the same origin.
            self._anchor = (wall, mono)
            self._last = (wall, mono)  # a wall clock set back while the agent was down is a step
        elif wall > self._low[0]:
            self._low = (wall, start_mono)  # another boot: that time is past, by at least our uptime

    def _save_anchor(self, wall: float, mono: float) -> None:
        if self._anchor_path is None or mono - self._saved_mono < SAVE_ANCHOR_EVERY_S:
            return
        self._saved_mono = mono
        body = json.dumps({"wall": wall, "mono": mono, "boot_id": self._boot_id})
        tmp = self._anchor_path.with_name(self._anchor_path.name + ".tmp")
        try:
            tmp.write_text(body, encoding="utf-8")
            os.replace(tmp, self._anchor_path)  # no fsync: losing it falls back to an older floor
        except OSError as exc:
            if not self._save_failed:
                log.warning("cannot save the clock anchor to %s: %s", self._anchor_path, exc)
            self._save_failed = True

    # -- the kernel --------------------------------------------------------------------

    def _kernel(self, mono: float, *, fresh: bool = False) -> KernelSync:
        if fresh or mono - self._sample_mono >= self._recheck_s:
            answer = self._synchronised()
            self._sample = answer if isinstance(answer, KernelSync) else KernelSync(answer)
            self._sample_mono = mono
            if self._step is not None:
                self._follow_step(self._sample)
        return self._sample

    def _follow_step(self, sample: KernelSync) -> None:
        """Clear a pending step when this sample shows a synchronisation after it."""
        assert self._step is not None
        why, maxerror, seen_unsynced = self._step
        if not sample.synchronised:
            self._step = (why, maxerror, True)
            return
        fell = maxerror is not None and sample.maxerror_us is not None and sample.maxerror_us < maxerror
        if seen_unsynced or fell:
            log.info("clock synchronised again after the step (%s)", why)
            self._step = None

    def _stepped(self, mono: float, why: str) -> None:
        self._step = None
        sample = self._kernel(mono, fresh=True)
        self._step = (why, sample.maxerror_us, not sample.synchronised)

    # -- reading -----------------------------------------------------------------------

    @property
    def distrust_reason(self) -> str | None:
        """Why the last reading was not trusted (``None`` if it was)."""
        return self._reason

    def _judge(self, wall: float, mono: float) -> str | None:
        """``None`` when ``wall`` may be trusted now, else why not."""
        if self.trust is ClockTrust.UNTRUSTED:
            return "configured untrusted"
        below = None
        if wall < self._floor - BACKWARDS_TOLERANCE_S:
            when = datetime.fromtimestamp(self._floor, UTC).isoformat()
            below = f"wall clock reads earlier than {self._floor_why} ({when})"
        if self.trust is ClockTrust.TRUSTED:
            if below is None:
                self._step = None  # no kernel to ask: back past the floor is all there is
            return self._step[0] if self._step is not None else below
        sample = self._kernel(mono)
        if self._step is not None:
            return f"{self._step[0]}; waiting for a synchronisation after it"
        if below is not None:
            return below
        if sample.synchronised is None:
            return "the kernel's synchronisation state is unavailable"
        if not sample.synchronised:
            return "clock not synchronised"
        return None

    def _untrusted(self, wall: float, mono: float) -> ClockReading:
        low = max(wall, self._low[0] + (mono - self._low[1]))
        if self._anchor is not None:
            anchor_wall, anchor_mono = self._anchor
            elapsed = max(0.0, mono - anchor_mono)
            error = ANCHOR_ERROR_S + self._drift * elapsed
            estimate = anchor_wall + elapsed
            if error <= self._max_error_s:
                return ClockReading(datetime.fromtimestamp(estimate, UTC), False, error)
            low = max(low, estimate - error)
        return ClockReading(datetime.fromtimestamp(low, UTC), False, None)

    def now(self) -> ClockReading:
        """The time to use for a decision and its event (see the module docstring)."""
        with self._lock:
            wall, mono = self._wall(), self._mono()
            if self._last is not None:
                expected = self._last[0] + (mono - self._last[1])
                if wall < expected - BACKWARDS_TOLERANCE_S:
                    self._stepped(mono, f"wall clock went back {expected - wall:.1f} s")
            self._last = (wall, mono)
            reason = self._judge(wall, mono)
            if reason is None:
                self._anchor = (wall, mono)
                if wall > self._floor:
                    self._floor, self._floor_why = wall, "the last trusted time"
                self._save_anchor(wall, mono)
                reading = ClockReading(datetime.fromtimestamp(wall, UTC), True, 0.0)
            else:
                reading = self._untrusted(wall, mono)
            changed = self._was_trusted is not None and self._was_trusted != reading.trusted
            if reason is not None and reason != self._reason:
                log.warning("clock not trusted: %s", reason)
            elif reason is None and self._reason is not None:
                log.info("clock trusted again")
            self._reason = reason
            self._was_trusted = reading.trusted
        if changed and self.on_change is not None:
            self.on_change(reading, reason or "synchronised")
        return reading

    def estimate(self) -> ClockReading:
        """The time with its bounds, for checking an expiry (a signed command's, a pass's).

        ``reading.earliest`` and ``reading.latest`` bound the true time; ``latest`` is
        ``None`` when nothing does (no trusted reading in this boot): then nothing that
        needs a deadline kept can be accepted.  The same reading as :meth:`now`.
        """
        return self.now()
